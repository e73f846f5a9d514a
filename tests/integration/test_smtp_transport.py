"""SmtpTransport against a real SMTP server (aiosmtpd): acceptance, permanent and transient
refusals per recipient, 421 closing the connection, a refusal whose RSET gets no answer, and
connections reused across messages."""

from __future__ import annotations

import asyncio
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
        self.mail_options: list[list[str]] = []

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.mail_options.append(options)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("unknown"):
            return "550 5.1.1 user unknown"
        if address.startswith("full"):
            return "452 4.2.2 mailbox full"
        if address.startswith("bye"):
            return "421 4.7.0 closing"
        if address.startswith("hang"):
            session.hang_on_rset = True  # type: ignore[attr-defined]
            return "550 5.7.1 refused"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if getattr(session, "hang_on_rset", False):
            await asyncio.sleep(3)  # past the transport's deadline
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if "slow@example.com" in envelope.rcpt_tos:
            await asyncio.sleep(3)  # past the transport's deadline
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


async def test_the_size_declared_is_the_size_sent(server: tuple[Handler, int]) -> None:
    """SIZE (RFC 1870) counts the octets DATA sends, CRLF line ends included, whatever the message's
    own line ends: a message with bare LF is declared as it goes out."""
    handler, port = server
    transport = SmtpTransport("127.0.0.1", port, connections=1)
    bare_lf = MESSAGE.replace(b"\r\n", b"\n")
    try:
        for message in (MESSAGE, bare_lf):
            assert (await transport.send("a@sender.test", "b@example.com", message)).verdict == "accepted"
    finally:
        await transport.close()
    assert handler.mail_options == [[f"SIZE={len(MESSAGE)}"]] * 2
    assert [content for _, _, content in handler.received] == [MESSAGE, MESSAGE]


async def test_a_server_that_does_not_answer_in_time_leaves_the_message_uncertain(
    server: tuple[Handler, int],
) -> None:
    """Past the deadline after the message went over, it may have been delivered: unknown, and the
    connection, out of step, is not reused."""
    _, port = server
    transport = SmtpTransport("127.0.0.1", port, connections=1, timeout_s=0.5)
    try:
        slow = await transport.send("a@sender.test", "slow@example.com", MESSAGE)
        assert slow.verdict == "unknown" and slow.message == "no answer within 0.5 s"
        assert (await transport.send("a@sender.test", "b@example.com", MESSAGE)).verdict == "accepted"
        assert transport.connects == 2
    finally:
        await transport.close()


async def test_a_refusal_stays_the_verdict_when_the_rset_after_it_gets_no_answer(
    server: tuple[Handler, int],
) -> None:
    """The server said 550 for the recipient: bounced, even though the RSET that follows times out;
    the connection, its envelope not known to be clean, is not reused."""
    _, port = server
    transport = SmtpTransport("127.0.0.1", port, connections=1, timeout_s=0.5)
    try:
        refused = await transport.send("a@sender.test", "hang@example.com", MESSAGE)
        assert (refused.verdict, refused.code, refused.status) == ("bounced", 550, "5.7.1")
        assert (await transport.send("a@sender.test", "b@example.com", MESSAGE)).verdict == "accepted"
        assert transport.connects == 2
    finally:
        await transport.close()


async def test_a_server_that_is_not_there_is_a_retry() -> None:
    transport = SmtpTransport("127.0.0.1", free_port(), connections=1, timeout_s=2)
    outcome = await transport.send("a@sender.test", "b@example.com", MESSAGE)
    assert outcome.verdict == "retry" and "cannot connect" in outcome.message
    await transport.close()
