"""Sending domains: a workspace's own domains, which its campaigns may send from once verified.

`add_domain` registers a domain (unverified) with a DKIM selector and makes the domain's DKIM key
for that selector (mail.dkim.create_key: encrypted with the keyring, never over an existing file)
unless the key exists; it returns the DNS records to publish. `verify_domain` looks up
`<selector>._domainkey.<domain>` and marks the domain verified when that TXT record publishes this
key. Only whoever controls the zone can publish it, so it proves the workspace may send as the
domain, and it is the record receivers check the signatures against.

- A domain belongs to one workspace (a unique index): a second workspace adding it gets a
  Conflict. The key is the domain's, so a second workspace could otherwise "verify" against the
  first one's record.
- Adding a domain again with another selector makes that selector's key and unverifies the
  domain until the new record is found.
- Signing also needs the domain in `[dkim] keys` (the signers are read from settings at start);
  `settings_lines` gives what to add.
- The DMARC record is advice for a domain that publishes none (`p=none`, reports to the domain's
  postmaster). SPF belongs to the relay that sends (its IP addresses), so it is not guessed here.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import psycopg

from mail.config import parse_nameserver
from mail.crypto import Keyring
from mail.dkim import (
    KeyType,
    check_domain,
    check_selector,
    create_key,
    decrypt_key,
    dns_name,
    dns_record,
    key_path,
)
from mail.errors import ConfigError, Conflict, NotFound, ProviderError, ValidationError
from models.settings import Settings

DEFAULT_SELECTOR = "mailray"
DNS_TIMEOUT_S = 5.0

# A TXT lookup: the record's texts (each a record's strings joined), [] when there is none.
TxtLookup = Callable[[str], Awaitable[list[str]]]

_WHITESPACE = re.compile(r"\s+")


class DnsRecord(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    name: str
    type: str
    value: str
    purpose: str


class SendingDomain(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    domain: str
    selector: str | None
    verified_at: datetime | None
    records: list[DnsRecord] = []


def records_for(domain: str, selector: str, dkim_value: str) -> list[DnsRecord]:
    return [
        DnsRecord(name=dns_name(domain, selector), type="TXT", value=dkim_value, purpose="DKIM, required"),
        DnsRecord(
            name=f"_dmarc.{domain}",
            type="TXT",
            value=f"v=DMARC1; p=none; rua=mailto:postmaster@{domain}",
            purpose="DMARC, advice where the domain publishes none",
        ),
    ]


def settings_lines(domain: str, selector: str) -> list[str]:
    """What `[dkim] keys` needs for the senders to sign as `domain`: the settings file's lines, and
    the environment variable (which replaces the whole table: list every signing domain)."""
    entry = f'"{domain}" = {{ selector = "{selector}" }}'
    return ["[dkim.keys]", entry, f"MAILRAY_DKIM__KEYS='{{ {entry} }}'"]


async def add_domain(
    conn: Any,
    settings: Settings,
    keyring: Keyring,
    workspace_id: UUID,
    domain: str,
    *,
    selector: str = DEFAULT_SELECTOR,
    key_type: KeyType = "rsa",
) -> SendingDomain:
    domain = _checked("domain", check_domain, domain)
    selector = _checked("selector", check_selector, selector)
    cursor = await conn.execute(
        "SELECT 1 FROM sending_domains WHERE domain = %s AND workspace_id <> %s", (domain, workspace_id)
    )
    if await cursor.fetchone() is not None:
        raise Conflict(f"{domain} is a sending domain of another workspace")
    path = key_path(settings, domain, selector)
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # made meanwhile by a concurrent add: use it
            create_key(settings, keyring, domain, selector, key_type)
    value = dns_record(decrypt_key(keyring, path.read_bytes(), domain, selector))
    try:
        cursor = await conn.execute(
            "INSERT INTO sending_domains (workspace_id, domain, dkim_selector) VALUES (%s, %s, %s) "
            "ON CONFLICT (workspace_id, domain) DO UPDATE SET dkim_selector = EXCLUDED.dkim_selector, "
            "verified_at = CASE WHEN sending_domains.dkim_selector = EXCLUDED.dkim_selector "
            "THEN sending_domains.verified_at END "
            "RETURNING verified_at",
            (workspace_id, domain, selector),
        )
    except psycopg.errors.UniqueViolation:  # another workspace added it since the check above
        raise Conflict(f"{domain} is a sending domain of another workspace") from None
    row = await cursor.fetchone()
    return SendingDomain(
        domain=domain, selector=selector, verified_at=row[0], records=records_for(domain, selector, value)
    )


async def verify_domain(
    conn: Any, settings: Settings, keyring: Keyring, workspace_id: UUID, domain: str, lookup: TxtLookup
) -> SendingDomain:
    """Mark the domain verified if DNS publishes its DKIM key; ValidationError saying what DNS
    has instead."""
    domain = _checked("domain", check_domain, domain)
    cursor = await conn.execute(
        "SELECT dkim_selector FROM sending_domains WHERE workspace_id = %s AND domain = %s",
        (workspace_id, domain),
    )
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"{domain} is not a sending domain of this workspace: add it first")
    selector = row[0]
    if selector is None:
        raise ValidationError(f"{domain} has no DKIM selector: add it again to make its key", field="domain")
    path = key_path(settings, domain, selector)
    try:
        blob = path.read_bytes()
    except OSError as error:
        raise ValidationError(
            f"{domain}: cannot read its DKIM key {path}: {error.strerror}; add the domain again",
            field="domain",
        ) from None
    expected = dns_record(decrypt_key(keyring, blob, domain, selector))
    name = dns_name(domain, selector)
    published = await lookup(name)
    if not published:
        raise ValidationError(f"{name}: no TXT record yet; publish {expected!r}", field="domain")
    want = _tag(expected, "p")
    if not any(_tag(text, "p") == want for text in published):
        raise ValidationError(
            f"{name}: the TXT record does not publish this domain's key (found {published[0][:80]!r}...)",
            field="domain",
        )
    cursor = await conn.execute(
        "UPDATE sending_domains SET verified_at = coalesce(verified_at, now()) "
        "WHERE workspace_id = %s AND domain = %s RETURNING verified_at",
        (workspace_id, domain),
    )
    verified = await cursor.fetchone()
    return SendingDomain(
        domain=domain,
        selector=selector,
        verified_at=verified[0],
        records=records_for(domain, selector, expected),
    )


async def list_domains(conn: Any, workspace_id: UUID) -> list[SendingDomain]:
    cursor = await conn.execute(
        "SELECT domain, dkim_selector, verified_at FROM sending_domains WHERE workspace_id = %s ORDER BY domain",
        (workspace_id,),
    )
    return [SendingDomain(domain=d, selector=s, verified_at=v) for d, s, v in await cursor.fetchall()]


def _checked(field: str, check: Callable[[str], str], value: str) -> str:
    """`check(value)`, its ConfigError as a ValidationError: here the value is a user's input."""
    try:
        return check(value)
    except ConfigError as error:
        raise ValidationError(error.message.removeprefix("dkim: "), field=field) from None


def _tag(record: str, name: str) -> str | None:
    """A tag's value in a DKIM key record (`v=DKIM1; k=rsa; p=...`), whitespace removed."""
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            return _WHITESPACE.sub("", value)
    return None


def dns_txt_lookup(nameserver: str | None = None) -> TxtLookup:
    """TXT lookups through dnspython: the system's resolver, or the server at `nameserver`."""
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    try:
        resolver = dns.asyncresolver.Resolver(configure=nameserver is None)
    except dns.resolver.NoResolverConfiguration:
        raise ProviderError("DNS: no resolver configured on this machine; give a nameserver") from None
    if nameserver is not None:
        parsed = parse_nameserver(nameserver)
        if parsed is None:
            raise ValidationError(
                f"nameserver: expected an IP address, IP:PORT or [IPv6]:PORT, got {nameserver!r}",
                field="nameserver",
            )
        resolver.nameservers = [parsed[0]]
        resolver.port = parsed[1]

    async def lookup(name: str) -> list[str]:
        try:
            answer = await resolver.resolve(name, "TXT", lifetime=DNS_TIMEOUT_S)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as error:
            raise ProviderError(f"DNS: cannot look up {name}: {error}") from None
        return [b"".join(rdata.strings).decode("ascii", "replace") for rdata in answer]

    return lookup
