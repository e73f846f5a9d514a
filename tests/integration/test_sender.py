"""The sender loop on real Postgres, Redis and SMTP (aiosmtpd): every eligible recipient gets one
message, a 5xx bounces and suppresses, a 4xx is retried, an uncertain row the provider confirms
is not sent again, and the campaign ends sent."""

from __future__ import annotations

import asyncio
import email
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mail.sending import outbox
from mail.sending.compose import compose_plain
from mail.sending.sender import Sender
from mail.sending.transport import SmtpTransport
from mail.services import Services
from tests.sending_helpers import sending_campaign, sending_services, smtp_server

pytestmark = [pytest.mark.integration, pytest.mark.storage]


class Sink:
    """Accepts mail; `unknown*` is 550 5.1.1; `busy*` is 451 the first time, then accepted."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.busy_seen: set[str] = set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("unknown"):
            return "550 5.1.1 user unknown"
        if address.startswith("busy") and address not in self.busy_seen:
            self.busy_seen.add(address)
            return "451 4.3.0 try again"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: Any = envelope.original_content
        self.received.append(bytes(content))
        return "250 2.0.0 queued"

    def recipients(self) -> list[str]:
        return sorted(str(email.message_from_bytes(raw)["To"]) for raw in self.received)


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    with smtp_server(handler) as port:
        yield handler, port


@pytest.fixture
async def services(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    async with sending_services(
        database_url, redis_url, tmp_path, MAILRAY_SENDING__RETRY_BASE_S="0"
    ) as opened:
        yield opened


async def _campaign(services: Services, addresses: list[str]) -> uuid.UUID:
    async with services.pool.connection() as conn:
        await conn.set_autocommit(True)
        _, campaign_id = await sending_campaign(conn, addresses)
    return campaign_id


async def _drain(sender: Sender, campaign_id: uuid.UUID, database_url: str) -> dict[str, int]:
    for _ in range(50):
        await sender.step()
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cursor = await conn.execute(
                "SELECT state, count(*) FROM campaign_recipients WHERE campaign_id = %s GROUP BY state",
                (campaign_id,),
            )
            states = {state: count for state, count in await cursor.fetchall()}
        if not {"queued", "sending", "held"} & set(states):
            return states
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT claimed_by, state, count(*) FROM campaign_recipients WHERE campaign_id = %s "
            "AND state IN ('queued', 'sending', 'held') GROUP BY 1, 2",
            (campaign_id,),
        )
        holders = await cursor.fetchall()
    raise AssertionError(f"the outbox did not drain: {states}; unfinished rows by holder: {holders}")


async def test_every_recipient_gets_one_message_and_bounces_suppress(
    services: Services, sink: tuple[Sink, int], database_url: str
) -> None:
    handler, port = sink
    good = [f"r{index:03}@example.com" for index in range(40)]
    addresses = [*good, "unknown1@example.com", "busy1@example.com"]
    campaign_id = await _campaign(services, addresses)
    transport = SmtpTransport("127.0.0.1", port, connections=4)
    sender = Sender(services, f"sender-{uuid.uuid4().hex[:6]}", transport, compose_plain)
    try:
        states = await _drain(sender, campaign_id, database_url)
    finally:
        await transport.close()
    assert states == {"sent": 41, "bounced": 1}
    assert handler.recipients() == sorted([*good, "busy1@example.com"])
    assert transport.connects <= 4
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT status, sent_count FROM campaigns WHERE id = %s", (campaign_id,))
        assert await cursor.fetchone() == ("sent", 41)
        cursor = await conn.execute(
            "SELECT s.reason, b.bounce_type, b.status_code FROM suppressions s JOIN bounces b "
            "ON b.recipient_email = s.email AND b.campaign_id = s.campaign_id WHERE s.campaign_id = %s",
            (campaign_id,),
        )
        assert await cursor.fetchall() == [("hard_bounce", "hard", "5.1.1")]
        # The same recipient's Message-ID does not change between compositions.
        cursor = await conn.execute(
            "SELECT count(DISTINCT message_id) FROM campaign_recipients WHERE campaign_id = %s AND state = 'sent'",
            (campaign_id,),
        )
        assert (await cursor.fetchone()) == (41,)


class ConfirmingTransport(SmtpTransport):
    """A provider that can say what it delivered (as the Gmail API can)."""

    def __init__(self, port: int, delivered: set[str]) -> None:
        super().__init__("127.0.0.1", port, connections=1)
        self.known = delivered

    async def delivered(self, message_id: str) -> bool | None:
        return message_id in self.known


async def test_an_uncertain_row_the_provider_confirms_is_not_sent_again(
    services: Services, sink: tuple[Sink, int], database_url: str
) -> None:
    handler, port = sink
    campaign_id = await _campaign(services, ["one@example.com", "two@example.com"])
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        rows = [row for row in await outbox.claim(conn, "crashed", 10) if row.campaign_id == campaign_id]
        await conn.execute(
            "UPDATE campaign_recipients SET claimed_at = now() - interval '1 hour' WHERE campaign_id = %s",
            (campaign_id,),
        )
        await outbox.take_back(conn, lease_s=60)
    from mail.campaigns.render import message_id

    first = next(row for row in rows if row.email == "one@example.com")
    transport = ConfirmingTransport(port, {message_id(campaign_id, first.email, "news@sender.test")})
    sender = Sender(services, "survivor", transport, compose_plain)
    try:
        states = await _drain(sender, campaign_id, database_url)
    finally:
        await transport.close()
    assert states == {"sent": 2}
    assert handler.recipients() == ["two@example.com"]  # "one" had gone out before the crash


async def test_acceptances_survive_a_flush_that_is_cut_off(
    services: Services, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush cancelled between taking the acceptances and committing them keeps them for the
    next flush: otherwise rows whose messages went out would stay 'sending'."""
    campaign_id = await _campaign(services, ["kept@example.com"])
    name = f"sender-{uuid.uuid4().hex[:6]}"
    async with services.pool.connection() as conn:
        await conn.set_autocommit(True)
        (row,) = [r for r in await outbox.claim(conn, name, 10) if r.campaign_id == campaign_id]
    sender = Sender(services, name, SmtpTransport("127.0.0.1", 1), compose_plain)
    real = outbox.mark_sent_many

    async def cut_off(*args: Any) -> int:
        raise asyncio.CancelledError

    async with services.pool.connection() as conn:
        sender._recorder = conn
        sender._accepted = [(row.id, "<kept@x>", None)]
        monkeypatch.setattr(outbox, "mark_sent_many", cut_off)
        with pytest.raises(asyncio.CancelledError):
            await sender._flush()
        assert sender._accepted == [(row.id, "<kept@x>", None)]
        monkeypatch.setattr(outbox, "mark_sent_many", real)
        await sender._flush()
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT state, message_id FROM campaign_recipients WHERE id = %s", (row.id,)
        )
        assert await cursor.fetchone() == ("sent", "<kept@x>")
