"""SmtpTransport against a real SMTP server (aiosmtpd), offering PIPELINING and not: acceptance,
permanent and transient refusals per recipient, 421 closing the connection, a refusal whose RSET
gets no answer, connections reused across messages, dots and line ends as sent, and addresses
that cannot be written in a command."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mail.sending.transport import SmtpTransport, Verdict
from tests.certificates import self_signed
from tests.fix_serve import free_port
from tests.sending_helpers import smtp_server

pytestmark = [pytest.mark.integration]

MESSAGE = (
    b"From: a@sender.test\r\nTo: b@example.com\r\nSubject: hi\r\nMessage-ID: <1@sender.test>\r\n\r\nHello\r\n"
)


class Handler:
    def __init__(self, *, pipelining: bool = False, smtputf8: bool = True) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.sessions: set[int] = set()
        self.mail_options: list[list[str]] = []
        self.pipelining = pipelining
        self.smtputf8 = smtputf8

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        lines = [line for line in responses if self.smtputf8 or line != "250-SMTPUTF8"]
        return [*lines[:-1], "250-PIPELINING", lines[-1]] if self.pipelining else lines

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
        if address.startswith("stall"):
            await asyncio.sleep(3)  # past the transport's deadline, before the message is sent
        if address.startswith("drop"):
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()  # the connection breaks before the message is sent
            return "250 OK"
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


@pytest.fixture(params=[False, True], ids=["one-command-at-a-time", "pipelining"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[Handler, int]]:
    handler = Handler(pipelining=request.param)
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


async def test_a_connection_lost_before_the_message_went_over_is_a_plain_retry(
    server: tuple[Handler, int],
) -> None:
    """Silent or broken at RCPT: the message was never written, so it cannot have been delivered:
    retry, not unknown (which would leave the row uncertain)."""
    handler, port = server
    transport = SmtpTransport("127.0.0.1", port, connections=1, timeout_s=0.5)
    try:
        stalled = await transport.send("a@sender.test", "stall@example.com", MESSAGE)
        assert (
            stalled.verdict == "retry"
            and stalled.message == "no answer within 0.5 s, before the message was sent"
        )
        dropped = await transport.send("a@sender.test", "drop@example.com", MESSAGE)
        assert dropped.verdict == "retry" and dropped.message.endswith("before the message was sent")
        assert (await transport.send("a@sender.test", "b@example.com", MESSAGE)).verdict == "accepted"
        assert transport.connects == 3
    finally:
        await transport.close()
    assert [recipients for _, recipients, _ in handler.received] == [["b@example.com"]]


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


async def test_dots_and_line_ends_arrive_as_written(server: tuple[Handler, int]) -> None:
    """A line that starts with a dot, a line that is a dot alone, no line end at the end: the
    server stores the message as written (dots doubled on the wire and undone by the server)."""
    handler, port = server
    message = MESSAGE + b".hidden line\r\n.\r\n..two\r\nlast line without an end"
    transport = SmtpTransport("127.0.0.1", port, connections=1)
    try:
        assert (await transport.send("a@sender.test", "b@example.com", message)).verdict == "accepted"
        assert (
            await transport.send("a@sender.test", "c@example.com", b".first" + MESSAGE)
        ).verdict == "accepted"
    finally:
        await transport.close()
    assert [content for _, _, content in handler.received] == [message + b"\r\n", b".first" + MESSAGE]


async def test_an_address_that_cannot_be_written_is_refused_before_anything_is_sent(
    server: tuple[Handler, int],
) -> None:
    """A line break in an address would write a command of its own: refused as a bad address
    (5.1.3), nothing sent, and the connection goes on."""
    handler, port = server
    transport = SmtpTransport("127.0.0.1", port, connections=1)
    try:
        injected = await transport.send("a@sender.test", "b@example.com>\r\nRCPT TO:<c@example.com", MESSAGE)
        assert (injected.verdict, injected.code, injected.status) == ("bounced", 553, "5.1.3")
        assert (await transport.send("a@sender.test", "d@example.com", MESSAGE)).verdict == "accepted"
        assert transport.connects == 1
    finally:
        await transport.close()
    assert [recipients for _, recipients, _ in handler.received] == [["d@example.com"]]


async def test_a_non_ascii_address_needs_smtputf8() -> None:
    """Offered: MAIL carries SMTPUTF8 and the message goes; not offered: refused (5.6.7, as RFC 6531
    servers answer) without sending, and not a hard bounce of the address."""
    for offered in (True, False):
        handler = Handler(smtputf8=offered)
        with smtp_server(handler) as port:
            transport = SmtpTransport("127.0.0.1", port, connections=1)
            try:
                outcome = await transport.send("a@sender.test", "jörg@example.com", MESSAGE)
            finally:
                await transport.close()
        if offered:
            assert outcome.verdict == "accepted" and handler.received[0][1] == ["jörg@example.com"]
            assert "SMTPUTF8" in handler.mail_options[0]
        else:
            assert (outcome.verdict, outcome.status) == ("bounced", "5.6.7") and handler.received == []


async def test_pipelining_sends_mail_rcpt_and_data_in_one_write() -> None:
    """Where the server offers PIPELINING the envelope goes in one write (RFC 2920), the message in
    the next: two round trips a message instead of four. Seen through a relay that records what
    the client writes, in front of aiosmtpd."""
    chunks: list[bytes] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bool) -> None:
            while data := await source.read(65536):
                if record:
                    chunks.append(data)
                sink.write(data)
                await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, upstream_writer, True), pump(upstream_reader, writer, False))

    handler = Handler(pipelining=True)
    with smtp_server(handler) as port:
        front = await asyncio.start_server(relay, "127.0.0.1", 0)
        front_port = front.sockets[0].getsockname()[1]
        transport = SmtpTransport("127.0.0.1", front_port, connections=1)
        try:
            for index in range(3):
                assert (
                    await transport.send("a@sender.test", f"r{index}@example.com", MESSAGE)
                ).verdict == "accepted"
        finally:
            await transport.close()
            front.close()
    envelopes = [chunk for chunk in chunks if chunk.startswith(b"MAIL FROM:")]
    assert len(envelopes) == 3
    assert (
        envelopes[0]
        == f"MAIL FROM:<a@sender.test> SIZE={len(MESSAGE)}\r\nRCPT TO:<r0@example.com>\r\nDATA\r\n".encode()
    )
    assert len(handler.received) == 3


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = self_signed(key, "127.0.0.1", ip="127.0.0.1")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_starttls_and_login_then_pipelined_messages(
    loop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosmtplib opens the connection (STARTTLS with a verified certificate, AUTH PLAIN) and the
    session sends over the TLS stream it hands on, on asyncio's loop and on uvloop (the sender
    actors')."""
    cert_path, key_path = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # the client trusts the test certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_path, key_path)
    logins: list[bytes] = []

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        logins.append(data.login)
        return AuthResult(success=data.login == b"mailer" and data.password == b"secret")

    handler = Handler(pipelining=True)
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls,
        require_starttls=True,
        authenticator=authenticate,
    )
    controller.start()

    async def scenario() -> list[Verdict]:
        transport = SmtpTransport(
            "127.0.0.1", port, connections=1, username="mailer", password="secret", start_tls=True
        )
        try:
            verdicts = [
                (await transport.send("a@sender.test", f"r{n}@example.com", MESSAGE)).verdict
                for n in range(3)
            ]
        finally:
            await transport.close()
        assert transport.connects == 1
        return verdicts

    try:
        verdicts = (uvloop.run if loop == "uvloop" else asyncio.run)(scenario())
    finally:
        controller.stop()
    assert verdicts == ["accepted"] * 3
    assert [recipients for _, recipients, _ in handler.received] == [[f"r{n}@example.com"] for n in range(3)]
    assert logins == [b"mailer"]
