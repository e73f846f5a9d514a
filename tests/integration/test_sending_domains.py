"""Sending domains on real Postgres and real DNS (a local server, dnspython's resolver): adding one
makes its DKIM key and the records to publish; it is verified only when DNS publishes that key;
only then may a campaign send from it; a domain belongs to one workspace. And the same through
the `mailray domains` commands, as a new user would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psycopg
import pytest

from mail import auth
from mail.campaigns.validate import check_sender
from mail.config import data_dir
from mail.dkim import dns_record, generate_private_key
from mail.errors import Conflict, NotFound, ValidationError
from mail.sending.domains import add_domain, dns_txt_lookup, list_domains, verify_domain
from mail.services import Services
from tests.dns_helpers import DnsServer
from tests.sending_helpers import sending_services

pytestmark = [pytest.mark.integration, pytest.mark.storage]

MAILRAY = str(Path(sys.executable).with_name("mailray"))


@pytest.fixture
async def services(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    async with sending_services(database_url, redis_url, tmp_path) as opened:
        yield opened


async def _workspace(services: Services) -> uuid.UUID:
    tag = uuid.uuid4().hex[:8]
    async with services.pool.connection() as conn:
        workspace, _ = await auth.create_workspace(conn, f"Domains {tag}", owner_email=f"o-{tag}@example.com")
    return workspace.id


async def test_a_domain_is_verified_only_when_dns_publishes_its_key(services: Services) -> None:
    workspace_id = await _workspace(services)
    domain = f"d{uuid.uuid4().hex[:8]}.example"
    with DnsServer() as dns:
        lookup = dns_txt_lookup(dns.address)
        async with services.pool.connection() as conn:
            await conn.set_autocommit(True)
            added = await add_domain(
                conn, services.settings, services.keyring, workspace_id, domain, selector="s1"
            )
            assert added.verified_at is None
            dkim = added.records[0]
            assert dkim.name == f"s1._domainkey.{domain}"
            assert dkim.value.startswith("v=DKIM1; k=rsa; p=")
            assert (data_dir(services.settings) / "dkim" / f"{domain}.s1.key").exists()
            with pytest.raises(ValidationError, match="neither a connected account"):
                await check_sender(conn, workspace_id, f"news@{domain}")

            # Nothing published yet: the error says what to publish.
            with pytest.raises(ValidationError, match="no TXT record yet; publish 'v=DKIM1"):
                await verify_domain(conn, services.settings, services.keyring, workspace_id, domain, lookup)
            # Someone else's key at that name does not verify it.
            dns.txt[dkim.name] = [dns_record(generate_private_key("rsa"))]
            with pytest.raises(ValidationError, match="does not publish this domain's key"):
                await verify_domain(conn, services.settings, services.keyring, workspace_id, domain, lookup)
            await check_sender_refused(conn, workspace_id, domain)

            # The record as DNS software writes it: over 255 characters, so split into strings.
            dns.txt[dkim.name] = ["v=DKIM1; t=s; k=rsa; p=other", dkim.value]
            verified = await verify_domain(
                conn, services.settings, services.keyring, workspace_id, domain, lookup
            )
            assert verified.verified_at is not None
            await check_sender(conn, workspace_id, f"news@{domain}")  # campaigns may send from it now
            again = await verify_domain(
                conn, services.settings, services.keyring, workspace_id, domain, lookup
            )
            assert again.verified_at == verified.verified_at

            # Adding it again with the same selector keeps the key and the verification;
            # another selector makes a new key and needs DNS again.
            same = await add_domain(
                conn, services.settings, services.keyring, workspace_id, domain, selector="s1"
            )
            assert same.records[0].value == dkim.value and same.verified_at == verified.verified_at
            moved = await add_domain(
                conn, services.settings, services.keyring, workspace_id, domain, selector="s2"
            )
            assert moved.verified_at is None and moved.records[0].value != dkim.value
            await check_sender_refused(conn, workspace_id, domain)
            listed = await list_domains(conn, workspace_id)
            assert [(item.domain, item.selector, item.verified_at) for item in listed] == [
                (domain, "s2", None)
            ]


async def check_sender_refused(conn: psycopg.AsyncConnection, workspace_id: uuid.UUID, domain: str) -> None:
    with pytest.raises(ValidationError):
        await check_sender(conn, workspace_id, f"news@{domain}")


async def test_a_domain_belongs_to_one_workspace_and_bad_input_is_refused(services: Services) -> None:
    first, second = await _workspace(services), await _workspace(services)
    domain = f"d{uuid.uuid4().hex[:8]}.example"
    async with services.pool.connection() as conn:
        await conn.set_autocommit(True)
        await add_domain(conn, services.settings, services.keyring, first, domain)
        with pytest.raises(Conflict, match="another workspace"):
            await add_domain(conn, services.settings, services.keyring, second, domain)
        with pytest.raises(NotFound, match="add it first"):
            await verify_domain(
                conn, services.settings, services.keyring, second, domain, dns_txt_lookup("127.0.0.1:9")
            )
        for bad in ("localhost", "exa mple.com", "-x.example"):
            with pytest.raises(ValidationError, match=r"^domain: expected a domain name"):
                await add_domain(conn, services.settings, services.keyring, first, bad)
        with pytest.raises(ValidationError, match=r"^selector: expected DNS labels"):
            await add_domain(conn, services.settings, services.keyring, first, "fine.example", selector="a b")
    # Two workspaces adding one domain at once: the unique index lets one in.
    contested = f"c{uuid.uuid4().hex[:8]}.example"
    async with services.pool.connection() as one, services.pool.connection() as other:
        await other.set_autocommit(True)
        async with one.transaction():
            await add_domain(one, services.settings, services.keyring, first, contested)
            racing = asyncio.create_task(
                add_domain(other, services.settings, services.keyring, second, contested)
            )
            await asyncio.sleep(0.3)
            assert not racing.done()  # waiting on the first one's uncommitted row
        with pytest.raises(Conflict, match="another workspace"):
            await racing
    async with services.pool.connection() as conn:
        cursor = await conn.execute("SELECT count(*) FROM sending_domains WHERE workspace_id = %s", (second,))
        assert await cursor.fetchone() == (0,)


def _mailray(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAILRAY, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_new_user_adds_and_verifies_a_domain_from_the_command_line(
    empty_database_factory: Callable[[], str], redis_url: str, tmp_path: Path
) -> None:
    env = {
        "MAILRAY_DATABASE__URL": empty_database_factory(),
        "MAILRAY_REDIS__URL": redis_url,
        "MAILRAY_APP__DATA_DIR": str(tmp_path / "data"),
    }
    assert _mailray(env, "migrate").returncode == 0
    assert _mailray(env, "workspace", "create", "Acme").returncode == 0
    with DnsServer() as dns:
        added = _mailray(env, "domains", "add", "acme.example", "--workspace", "acme", "--selector", "mr1")
        assert added.returncode == 0, added.stderr
        assert "acme.example: selector mr1, not verified yet" in added.stdout
        record = next(line for line in added.stdout.splitlines() if "mr1._domainkey.acme.example TXT" in line)
        value = record.split('"')[1]
        assert value.startswith("v=DKIM1; k=rsa; p=")
        assert '  [dkim.keys]\n  "acme.example" = { selector = "mr1" }\n' in added.stdout
        assert """MAILRAY_DKIM__KEYS='{ "acme.example" = { selector = "mr1" } }'""" in added.stdout

        refused = _mailray(
            env, "domains", "verify", "acme.example", "--workspace", "acme", "--nameserver", dns.address
        )
        assert refused.returncode == 2
        assert refused.stderr.startswith("mailray: mr1._domainkey.acme.example: no TXT record yet")

        for bad in ("ns1.example.com", "bad host", "127.0.0.1:99999"):
            wrong = _mailray(
                env, "domains", "verify", "acme.example", "--workspace", "acme", "--nameserver", bad
            )
            assert (wrong.returncode, wrong.stderr) == (
                2,
                f"mailray: nameserver: expected an IP address, IP:PORT or [IPv6]:PORT, got {bad!r}\n",
            )

        dns.txt["mr1._domainkey.acme.example"] = [value]
        verified = _mailray(
            env, "domains", "verify", "acme.example", "--workspace", "acme", "--nameserver", dns.address
        )
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.startswith("acme.example: verified (selector mr1")
    listed = _mailray(env, "domains", "list", "--workspace", "acme")
    assert listed.stdout.startswith("acme.example\tmr1\tverified ")
