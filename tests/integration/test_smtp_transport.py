"""SmtpTransport against a real SMTP server (aiosmtpd): acceptance, permanent and transient
refusals per recipient, 421 closing the connection, and connections reused across messages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mail.sending.transport import SmtpTransport
from tests.fix_serve import free_port
from tests.sending_helpers import smtp_server

pytestmark = [pytest.mark.integration]

MESSAGE = (
    b"From: a@sender.test\r\nTo: b@example.com\r\nSubject: hi\r\nMessage-ID: <1@sender.test>\r\n\r\nHello\r\n"
)


class Handler:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.sessions: set[int] = set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("unknown"):
            return "550 5.1.1 user unknown"
        if address.startswith("full"):
            return "452 4.2.2 mailbox full"
        if address.startswith("bye"):
            return "421 4.7.0 closing"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.sessions.add(id(session))
        content: Any = envelope.original_content
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content)))
        return "250 2.0.0 queued as abc"


@pytest.fixture
def server() -> Iterator[tuple[Handler, int]]:
    handler = Handler()
    with smtp_server(handler) as port:
        yield handler, port


async def test_outcomes_per_recipient_and_connection_reuse(server: tuple[Handler, int]) -> None:
    handler, port = server
    transport = SmtpTransport("127.0.0.1", port, connections=1)
    try:
        for index in range(5):
            outcome = await transport.send("bounces@sender.test", f"r{index}@example.com", MESSAGE)
            assert (outcome.verdict, outcome.code, outcome.status) == ("accepted", 250, "2.0.0")
        assert transport.connects == 1 and len(handler.sessions) == 1  # one connection, reused
        assert handler.received[0] == ("bounces@sender.test", ["r0@example.com"], MESSAGE)

        unknown = await transport.send("bounces@sender.test", "unknown@example.com", MESSAGE)
        assert (unknown.verdict, unknown.code, unknown.status) == ("bounced", 550, "5.1.1")
        full = await transport.send("bounces@sender.test", "full@example.com", MESSAGE)
        assert (full.verdict, full.code, full.status) == ("retry", 452, "4.2.2")
        closing = await transport.send("bounces@sender.test", "bye@example.com", MESSAGE)
        assert (closing.verdict, closing.code) == ("retry", 421)
        after = await transport.send("bounces@sender.test", "r9@example.com", MESSAGE)
        assert after.verdict == "accepted"
        assert transport.connects >= 2  # a fresh connection after the 421
        assert await transport.delivered("<1@sender.test>") is None  # SMTP cannot tell
    finally:
        await transport.close()


async def test_a_server_that_is_not_there_is_a_retry() -> None:
    transport = SmtpTransport("127.0.0.1", free_port(), connections=1, timeout_s=2)
    outcome = await transport.send("a@sender.test", "b@example.com", MESSAGE)
    assert outcome.verdict == "retry" and "cannot connect" in outcome.message
    await transport.close()
