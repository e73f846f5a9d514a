"""The SMTP sink, driven by aiosmtplib (and by hand over a socket where pipelining is the point):
storage byte for byte, per-recipient rules, 421, `@N`, asynchronous bounces as RFC 3464 DSNs,
AUTH, connection reuse, the admin API, and `mailray emulator smtp` as its own process.

No Postgres, Redis or Ray: each test starts its own sink on free ports.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import subprocess
import sys
import uuid
from email.message import Message
from pathlib import Path

import aiosmtplib
import pytest

from cluster.emulators.smtp import SmtpSink, SmtpSinkAdmin, start_sink
from mail.errors import NotFound, ValidationError
from tests.fix_serve import free_port

pytestmark = [pytest.mark.integration]

MAILRAY = str(Path(sys.executable).with_name("mailray"))
SENDER = "news@sender.test"
RULES = [
    "*@unknown.test=550 5.1.1 user unknown",
    "full-*@*=452 4.2.2 mailbox full",
    "*@slow.test=421 4.7.0 try later",
    "flaky-*@*=451 4.3.0 busy@2",
]
BOUNCE_RULES = [*RULES, "*@gone.test=bounce:550 5.1.1 user unknown"]


def message(to: str = "ana@example.com", *, message_id: str | None = None, body: str = "Hello") -> bytes:
    message_id = message_id or f"<{uuid.uuid4().hex}@sender.test>"
    lines = [
        f"From: News <{SENDER}>",
        f"To: {to}",
        "Subject: News",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: 8bit",
        "",
        body,
        "",
    ]
    return "\r\n".join(lines).encode()


async def client(sink: SmtpSink) -> aiosmtplib.SMTP:
    smtp = aiosmtplib.SMTP(hostname=sink.host, port=sink.port, timeout=10)
    await smtp.connect()
    return smtp


async def eventually_closed(sink: SmtpSink) -> None:
    for _ in range(200):
        if sink.stats.connections_open == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{sink.stats.connections_open} connections still open")


# ------------------------------------------------------------------------------- storage


async def test_accepted_mail_is_stored_byte_for_byte(tmp_path: Path) -> None:
    body = "Grüße aus Köln\r\n.a line that starts with a dot\r\n..and two\r\n" + "x" * 990
    raw = message("Ana <ana@example.com>", message_id="<first@sender.test>", body=body)
    async with start_sink(store=tmp_path / "store") as sink:
        smtp = await client(sink)
        assert {"pipelining", "8bitmime", "smtputf8", "size"} <= set(smtp.esmtp_extensions)
        assert "auth" not in smtp.esmtp_extensions
        errors, reply = await smtp.sendmail(SENDER, ["ana@example.com", "Bob@Example.com"], raw)
        assert errors == {} and reply.startswith("2.0.0 OK queued as 1")
        # SMTPUTF8: an address beyond ASCII.
        await smtp.sendmail(
            SENDER, ["jörg@exämple.test"], message("jörg@exämple.test"), mail_options=["SMTPUTF8"]
        )
        await smtp.quit()

        files = sorted((tmp_path / "store" / "new").iterdir())
        assert len(files) == 2 and not list((tmp_path / "store" / "tmp").iterdir())
        assert files[0].read_bytes() == raw
        assert sink.raw(1) == raw
        entry = sink.index.get(1)
        assert entry.mail_from == SENDER
        assert entry.recipients == ["ana@example.com", "Bob@Example.com"]
        assert entry.message_id == "<first@sender.test>"
        assert entry.size == len(raw) and entry.bounced == []
        assert sink.index.get(2).recipients == ["jörg@exämple.test"]
        assert sink.stats.accepted == 2 and sink.stats.accepted_recipients == 3


async def test_pipelined_commands_are_answered_in_order(tmp_path: Path) -> None:
    async with start_sink(store=tmp_path / "store", rules=RULES) as sink:
        reader, writer = await asyncio.open_connection(sink.host, sink.port)

        async def replies(count: int) -> list[bytes]:
            lines: list[bytes] = []
            while len(lines) < count:
                line = await asyncio.wait_for(reader.readline(), 10)
                assert line, f"connection closed after {lines}"
                if line[3:4] != b"-":  # the last line of a (possibly multiline) reply
                    lines.append(line.rstrip())
            return lines

        await replies(1)  # greeting
        writer.write(b"EHLO client.test\r\n")
        await replies(1)
        writer.write(
            b"MAIL FROM:<news@sender.test>\r\nRCPT TO:<a@example.com>\r\n"
            b"RCPT TO:<b@unknown.test>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n"
        )
        answers = await replies(5)
        assert [line[:3] for line in answers] == [b"250", b"250", b"550", b"250", b"354"]
        assert answers[2] == b"550 5.1.1 user unknown"
        writer.write(b"Subject: piped\r\n\r\nbody\r\n.\r\n")
        assert (await replies(1))[0].startswith(b"250 2.0.0")
        assert sink.index.get(1).recipients == ["a@example.com", "c@example.com"]

        # A 421 among pipelined commands: the reply, then the connection closes; nothing after it runs.
        writer.write(
            b"MAIL FROM:<news@sender.test>\r\nRCPT TO:<x@slow.test>\r\nRCPT TO:<d@example.com>\r\nDATA\r\n"
        )
        assert await replies(2) == [b"250 2.1.0 OK", b"421 4.7.0 try later"]
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        await eventually_closed(sink)
        assert sink.stats.closed_by_421 == 1 and sink.stats.transactions == 2
        assert len(sink.index) == 1


async def test_many_connections_at_once(tmp_path: Path) -> None:
    async with start_sink(store=tmp_path / "store") as sink:

        async def one_client(number: int) -> None:
            smtp = await client(sink)
            for index in range(4):
                await smtp.sendmail(SENDER, [f"c{number}-{index}@example.com"], message())
            await smtp.quit()

        await asyncio.gather(*(one_client(number) for number in range(25)))
        assert len(sink.index) == 100 and sink.stats.connections == 25
        assert len({sink.index.get(message).connection for message in sink.index.ids()}) == 25
        assert len(list((tmp_path / "store" / "new").iterdir())) == 100


# --------------------------------------------------------------------------------- rules


async def test_rules_refuse_recipients_with_their_codes(tmp_path: Path) -> None:
    async with start_sink(store=tmp_path / "store", rules=RULES) as sink:
        smtp = await client(sink)
        errors, _ = await smtp.sendmail(
            SENDER, ["ana@example.com", "Nobody@Unknown.Test", "full-bob@example.com"], message()
        )
        assert {address: (answer.code, answer.message) for address, answer in errors.items()} == {
            "Nobody@Unknown.Test": (550, "5.1.1 user unknown"),
            "full-bob@example.com": (452, "4.2.2 mailbox full"),
        }
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await smtp.sendmail(SENDER, ["x@unknown.test"], message())
        assert (refused.value.recipients[0].code, refused.value.recipients[0].message) == (
            550,
            "5.1.1 user unknown",
        )
        assert smtp.is_connected  # a 550 keeps the session
        await smtp.quit()
        assert sink.index.get(1).recipients == ["ana@example.com"] and len(sink.index) == 1
        assert sink.stats.rejected == {"550": 2, "452": 1} and sink.stats.rejected_total == 3


async def test_421_replies_then_closes_the_connection(tmp_path: Path) -> None:
    async with start_sink(store=tmp_path / "store", rules=RULES) as sink:
        smtp = await client(sink)
        await smtp.sendmail(SENDER, ["ana@example.com"], message())
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await smtp.sendmail(SENDER, ["someone@slow.test"], message())
        assert (refused.value.recipients[0].code, refused.value.recipients[0].message) == (
            421,
            "4.7.0 try later",
        )
        await eventually_closed(sink)
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await smtp.noop()
        assert sink.stats.closed_by_421 == 1 and sink.stats.rejected == {"421": 1}
        assert len(sink.index) == 1


async def test_n_transient_failures_then_acceptance(tmp_path: Path) -> None:
    async with start_sink(store=tmp_path / "store", rules=RULES) as sink:
        smtp = await client(sink)
        codes = []
        for _ in range(4):
            try:
                await smtp.sendmail(SENDER, ["Flaky-1@example.com"], message())
                codes.append(250)
            except aiosmtplib.SMTPRecipientsRefused as error:
                assert error.recipients[0].message == "4.3.0 busy"
                codes.append(error.recipients[0].code)
        assert codes == [451, 451, 250, 250]
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):  # counted per address
            await smtp.sendmail(SENDER, ["flaky-2@example.com"], message())
        await smtp.quit()
        assert sink.stats.rejected == {"451": 3} and len(sink.index) == 2


async def test_async_bounce_delivers_an_rfc_3464_dsn(tmp_path: Path) -> None:
    dsn_dir = tmp_path / "bounces"
    async with start_sink(store=tmp_path / "store", dsn_maildir=dsn_dir, rules=BOUNCE_RULES) as sink:
        smtp = await client(sink)
        original = message("gone@gone.test", message_id="<campaign-7.42@sender.test>")
        errors, _ = await smtp.sendmail(
            "bounces+42@sender.test", ["ana@example.com", "Gone@gone.test"], original
        )
        assert errors == {}  # accepted now; the failure comes later, as mail
        # A bounce of null-sender mail is never sent (RFC 3464 2.1).
        await smtp.sendmail("", ["other@gone.test"], message("other@gone.test"))
        await smtp.quit()
        await sink.flush_bounces()

        entry = sink.index.get(1)
        assert entry.recipients == ["ana@example.com", "Gone@gone.test"] and entry.bounced == [
            "Gone@gone.test"
        ]
        assert sink.index.get(2).mail_from == ""
        assert (sink.stats.dsns_delivered, sink.stats.dsns_skipped, sink.stats.bounces_pending) == (1, 1, 0)
        files = list((dsn_dir / "new").iterdir())
        assert len(files) == 1

    dsn = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["To"] == "bounces+42@sender.test" and dsn["Return-Path"] == "<>"
    assert dsn["Auto-Submitted"] == "auto-replied" and dsn["Message-ID"]
    notice, status, returned = dsn.iter_parts()
    assert notice.get_content_type() == "text/plain"
    assert "Gone@gone.test" in notice.get_content()
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    assert isinstance(blocks, list) and len(blocks) == 2
    per_message, per_recipient = blocks
    assert isinstance(per_message, Message) and isinstance(per_recipient, Message)
    assert per_message["Reporting-MTA"] == "dns; sink.mailray.test" and per_message["Arrival-Date"]
    assert per_recipient["Final-Recipient"] == "rfc822; Gone@gone.test"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 user unknown"
    assert returned.get_content_type() == "text/rfc822-headers"
    headers = email.message_from_string(returned.get_content(), policy=email.policy.default)
    assert headers["Message-ID"] == "<campaign-7.42@sender.test>"


async def test_a_delayed_bounce_is_still_delivered_when_the_sink_stops(tmp_path: Path) -> None:
    dsn_dir = tmp_path / "bounces"
    async with start_sink(
        store=tmp_path / "store", dsn_maildir=dsn_dir, rules=BOUNCE_RULES, bounce_delay_s=3600
    ) as sink:
        smtp = await client(sink)
        await smtp.sendmail(SENDER, ["a@gone.test"], message())
        await smtp.quit()
        await asyncio.sleep(0.05)
        assert sink.stats.bounces_pending == 1 and not list((dsn_dir / "new").iterdir())
    assert len(list((dsn_dir / "new").iterdir())) == 1


# ------------------------------------------------------------------ sessions and AUTH


async def test_one_connection_carries_many_messages(tmp_path: Path) -> None:
    async with start_sink(store=tmp_path / "store") as sink:
        smtp = await client(sink)
        for index in range(3):
            await smtp.sendmail(SENDER, [f"r{index}@example.com"], message())
        await smtp.rset()
        await smtp.noop()
        await smtp.sendmail(SENDER, ["r3@example.com"], message())
        await smtp.quit()
        other = await client(sink)
        await other.sendmail(SENDER, ["r4@example.com"], message())
        await other.quit()
        await eventually_closed(sink)

        connections = [sink.index.get(message).connection for message in sink.index.ids()]
        assert connections[:4] == [connections[0]] * 4 and connections[4] != connections[0]
        stats = sink.stats
        assert (stats.accepted, stats.connections, stats.sessions, stats.transactions) == (5, 2, 2, 5)
        assert stats.resets >= 1 and stats.connections_open == 0


async def test_auth_is_required_when_credentials_are_set(tmp_path: Path) -> None:
    async with start_sink(store=tmp_path / "store", credentials="sender:s3cret") as sink:
        smtp = await client(sink)
        assert set(smtp.supported_auth_methods) >= {"plain", "login"}
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await smtp.sendmail(SENDER, ["ana@example.com"], message())
        assert refused.value.code == 530
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as wrong:
            await smtp.auth_plain("sender", "guess")
        assert wrong.value.code == 535
        await smtp.auth_login("sender", "s3cret")
        await smtp.sendmail(SENDER, ["ana@example.com"], message())
        await smtp.quit()

        plain = await client(sink)
        await plain.auth_plain("sender", "s3cret")
        await plain.sendmail(SENDER, ["bob@example.com"], message())
        await plain.quit()
        assert len(sink.index) == 2
        assert (sink.stats.auth_successes, sink.stats.auth_failures) == (2, 1)


# ---------------------------------------------------------------------------- admin API


async def test_admin_api(tmp_path: Path) -> None:
    async with (
        start_sink(store=tmp_path / "store", rules=["*@unknown.test=550 5.1.1 user unknown"]) as sink,
        SmtpSinkAdmin(sink.admin_url) as admin,
    ):
        smtp = await client(sink)
        raws = [message(message_id=f"<m{index}@sender.test>") for index in range(5)]
        for index, raw in enumerate(raws):
            recipients = ["ana@example.com"] if index % 2 == 0 else ["bob@example.com", "Ana@Example.com"]
            await smtp.sendmail(SENDER, recipients, raw)
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await smtp.sendmail(SENDER, ["x@unknown.test"], message())

        assert await admin.count() == 5
        first = await admin.messages(limit=2)
        assert [entry.id for entry in first.messages] == [1, 2] and first.next_after == 2 and first.total == 5
        rest = await admin.messages(after=2, limit=10)
        assert [entry.id for entry in rest.messages] == [3, 4, 5] and rest.next_after is None
        bob = await admin.messages(recipient="BOB@example.com")
        assert [entry.id for entry in bob.messages] == [2, 4]
        assert (
            len([entry async for entry in admin.all_messages(recipient="ana@example.com", page_size=2)]) == 5
        )
        assert [entry.id for entry in (await admin.messages(message_id="<m3@sender.test>")).messages] == [4]
        assert await admin.raw(3) == raws[2]
        envelope = await admin.envelope(2)
        assert envelope.recipients == ["bob@example.com", "Ana@Example.com"] and envelope.mail_from == SENDER
        with pytest.raises(NotFound):
            await admin.raw(99)
        assert await admin.delivered("<m0@sender.test>") and await admin.delivered("m4@sender.test")
        assert not await admin.delivered("<never@sender.test>")

        stats = await admin.stats()
        assert (stats.accepted, stats.connections, stats.sessions) == (5, 1, 1)
        assert stats.rejected == {"550": 1}

        assert await admin.rules() == ["*@unknown.test=550 5.1.1 user unknown"]
        assert await admin.set_rules(["*@example.com=554 5.7.1 no thanks"]) == [
            "*@example.com=554 5.7.1 no thanks"
        ]
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await smtp.sendmail(SENDER, ["ana@example.com"], message())
        assert refused.value.recipients[0].code == 554
        await smtp.sendmail(SENDER, ["x@unknown.test"], message())  # the old rule is gone
        with pytest.raises(ValidationError):
            await admin.set_rules(["nonsense"])
        with pytest.raises(ValidationError, match="dsn"):
            await admin.set_rules(["*@gone.test=bounce:550 5.1.1 user unknown"])  # no DSN maildir
        await smtp.quit()

        assert await admin.reset() == 6
        assert await admin.count() == 0 and (await admin.stats()).accepted == 0
        assert not list((tmp_path / "store" / "new").iterdir())
        smtp = await client(sink)
        await smtp.sendmail(SENDER, ["x@unknown.test"], message())
        await smtp.quit()
        assert [entry.id for entry in (await admin.messages()).messages] == [7]  # ids are never reused


# ----------------------------------------------------------------------------- the CLI


async def test_the_cli_runs_a_sink_until_terminated(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            MAILRAY,
            "emulator",
            "smtp",
            "--port",
            str(port),
            "--admin-port",
            str(admin_port),
            "--store",
            str(tmp_path / "store"),
            "--rule",
            "*@unknown.test=550 5.1.1 user unknown",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert process.stdout is not None
        first_line = await asyncio.to_thread(process.stdout.readline)
        assert first_line.startswith(f"SMTP sink: smtp://127.0.0.1:{port}"), first_line
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
        await smtp.connect()
        raw = message()
        await smtp.sendmail(SENDER, ["ana@example.com"], raw)
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await smtp.sendmail(SENDER, ["x@unknown.test"], raw)
        await smtp.quit()
        async with SmtpSinkAdmin(f"http://127.0.0.1:{admin_port}") as admin:
            assert await admin.count() == 1
            assert await admin.raw(1) == raw
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(lambda: process.wait(timeout=20))
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    assert [path.read_bytes() for path in (tmp_path / "store" / "new").iterdir()] == [raw]


async def test_the_cli_refuses_a_bad_rule_in_one_line(tmp_path: Path) -> None:
    done = await asyncio.to_thread(
        lambda: subprocess.run(
            [MAILRAY, "emulator", "smtp", "--store", str(tmp_path), "--rule", "*@x.test=250 fine"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    )
    assert done.returncode == 2 and done.stderr.startswith("mailray: rule '*@x.test=250 fine'")
