"""The sender pool's campaign mail on real Postgres, Redis and an SMTP server: each contact's
message is personalized, tracked (a tracked email per outbox row, its links stored for the
click redirect), carries RFC 8058 List-Unsubscribe, and is DKIM-signed so that dkimpy verifies
it; composing a row again signs the same tokens."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import psycopg
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mail import auth
from mail.campaigns import repository
from mail.dkim import create_key
from mail.sending.campaign_compose import CampaignComposer
from mail.sending.outbox import claim
from mail.sending.sender import Composed, Sender
from mail.sending.transport import SmtpTransport
from mail.services import Services
from mail.tracking.tokens import TokenKind, TokenSigner
from models.campaigns import CampaignInput
from models.tenancy import Principal
from tests.sending_helpers import quiet_outbox, sending_services, smtp_server

pytestmark = [pytest.mark.integration, pytest.mark.storage]

DOMAIN, SELECTOR = "sender.test", "mr1"


class Relay:
    def __init__(self) -> None:
        self.messages: dict[str, bytes] = {}

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: Any = envelope.original_content
        for recipient in envelope.rcpt_tos:
            self.messages[recipient] = bytes(content)
        return "250 2.0.0 queued"


@pytest.fixture
async def services(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    environ = {"MAILRAY_DKIM__KEYS": f'{{ "{DOMAIN}" = {{ selector = "{SELECTOR}" }} }}'}
    async with sending_services(database_url, redis_url, tmp_path) as plain:
        _, record = create_key(plain.settings, plain.keyring, DOMAIN, SELECTOR, "rsa")
    (tmp_path / "dkim.txt").write_text(record)
    async with sending_services(database_url, redis_url, tmp_path, **environ) as opened:
        yield opened


async def _campaign(services: Services) -> tuple[uuid.UUID, list[str]]:
    tag = uuid.uuid4().hex[:6]
    ann, nameless = f"ann-{tag}@example.com", f"someone-{tag}@example.com"
    async with services.pool.connection() as conn:
        await conn.set_autocommit(True)
        workspace, user = await auth.create_workspace(
            conn, f"Compose {tag}", owner_email=f"o-{tag}@example.com"
        )
        await conn.execute(
            "INSERT INTO email_accounts (workspace_id, user_id, email, provider, sync_status) "
            "VALUES (%s, %s, 'news@sender.test', 'smtp', 'synced')",
            (workspace.id, user.id),
        )
        await conn.execute(
            "INSERT INTO contacts (workspace_id, email, first_name, company) VALUES (%s, %s, 'Ann', 'Acme'), "
            "(%s, %s, NULL, NULL)",
            (workspace.id, ann, workspace.id, nameless),
        )
        owner = Principal(workspace_id=workspace.id, user_id=user.id, role="owner")
        campaign = await repository.create_campaign(conn, owner, CampaignInput(
            name="Launch", subject="Hello {{firstName|there}}", from_name="Acme News", from_email="news@sender.test",
            body_html='<p>Hi {{firstName|there}} from {{company|us}}</p><a href="https://acme.test/offer">Offer</a>'
                      '<a href="mailto:help@acme.test">Mail us</a>',
            body_text="Hi {{firstName|there}}", preview_text="Our launch"))  # fmt: skip
        await quiet_outbox(conn)
        await repository.send_now(conn, owner, campaign.id)
    return campaign.id, [ann, nameless]


async def test_campaign_mail_is_personalized_tracked_unsubscribable_and_signed(
    services: Services, database_url: str, tmp_path: Path
) -> None:
    campaign_id, (ann, nameless) = await _campaign(services)
    relay = Relay()
    with smtp_server(relay) as port:
        transport = SmtpTransport("127.0.0.1", port, connections=1)
        sender = Sender(
            services,
            f"sender-{uuid.uuid4().hex[:6]}",
            transport,
            CampaignComposer(services.settings, services.keyring),
        )
        try:
            while (await sender.step()).claimed:
                pass
        finally:
            await transport.close()
    assert set(relay.messages) == {ann, nameless}
    record = (tmp_path / "dkim.txt").read_text().encode()
    for address, first_name in ((ann, "Ann"), (nameless, "there")):
        raw = relay.messages[address]
        assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        assert parsed["Subject"] == f"Hello {first_name}"
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "/u/" in parsed["List-Unsubscribe"]
        html = parsed.get_body(("html",))
        assert html is not None
        content = html.get_content()
        assert f"Hi {first_name} from {'Acme' if first_name == 'Ann' else 'us'}" in content
        assert (
            "/t/o/" in content
            and "mailto:help@acme.test" in content
            and "https://acme.test/offer" not in content
        )
        click = re.search(r'href="[^"]*/t/c/([^"]+)"', content)
        assert click is not None
        token = TokenSigner.from_keyring(services.keyring).verify(click.group(1))
        assert token is not None and token.kind == TokenKind.CLICK
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cursor = await conn.execute(
                "SELECT t.status, t.campaign_id, l.urls[array_position(l.positions, %s)] FROM tracked_emails t "
                "JOIN tracked_email_links l ON l.email_id = t.id WHERE t.id = %s",
                (token.link, token.email_id),
            )
            assert await cursor.fetchone() == ("sent", campaign_id, "https://acme.test/offer")

    # Composed again (a retry), a row carries the same tracked email: the same tokens.
    async with services.pool.connection() as conn:
        await conn.execute("UPDATE campaign_recipients SET state = 'queued', send_after = now() WHERE campaign_id = %s",
                           (campaign_id,))  # fmt: skip
        await conn.execute("UPDATE campaigns SET status = 'sending' WHERE id = %s", (campaign_id,))
        rows = [row for row in await claim(conn, "again", 10) if row.campaign_id == campaign_id]
        assert len(rows) == 2
        composed = await CampaignComposer(services.settings, services.keyring)(conn, rows)
        cursor = await conn.execute(
            "SELECT count(*) FROM tracked_emails WHERE campaign_id = %s", (campaign_id,)
        )
        assert await cursor.fetchone() == (2,)
    first_pixel = re.search(rb"/t/o/[^\"]+", relay.messages[ann].replace(b"=\r\n", b""))
    again = next(c for c in composed if isinstance(c, Composed) and c.row.email == ann)
    assert first_pixel is not None and first_pixel.group(0) in again.message.replace(b"=\r\n", b"")
