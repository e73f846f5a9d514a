"""mail.bounces on RFC 3464 reports built by hand: fields, notices, returned messages."""

from __future__ import annotations

import pytest

from mail.bounces import parse_bounce
from mail.bounces.dsn import address_of, field_blocks, read_report, untyped
from mail.bounces.inbox import might_be_bounce
from mail.mime import parse_message

ORIGINAL = """\
From: Campaigns <news@mailray.test>
To: kijitora@example.org
Subject: Our autumn letter
Message-ID: <autumn-42@mailray.test>
Date: Thu, 01 Oct 2026 09:00:00 +0000

Hello.
"""


def _report(
    recipient_blocks: str,
    *,
    notice: str = "Your message could not be delivered to one or more recipients.\n",
    returned: str = f"Content-Type: message/rfc822\n\n{ORIGINAL}",
    to: str = "bounces+kijitora=example.org@mailray.test",
) -> bytes:
    """A multipart/report as Postfix writes one: notice, delivery-status, returned message."""
    return f"""\
Return-Path: <>
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-ID: <20261001090100.ABC@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b0undary"

--b0undary
Content-Type: text/plain; charset=us-ascii

{notice}
--b0undary
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Thu, 01 Oct 2026 09:00:01 +0000

{recipient_blocks}
--b0undary
{returned}
--b0undary--
""".encode()


UNKNOWN_USER = """\
Final-Recipient: rfc822; kijitora@example.org
Original-Recipient: rfc822;kijitora@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx1.example.org
Diagnostic-Code: smtp; 550 5.1.1 <kijitora@example.org>: Recipient address
    rejected: User unknown in virtual mailbox table
"""


def test_a_failed_recipient_is_read_from_its_fields() -> None:
    report = parse_bounce(_report(UNKNOWN_USER))

    assert report.is_bounce
    assert report.source == "dsn"
    assert report.reporting_mta == "mx.example.net"
    assert report.original_message_id == "autumn-42@mailray.test"
    [recipient] = report.recipients
    assert recipient.recipient == "kijitora@example.org"
    assert (recipient.status, recipient.reply_code) == ("5.1.1", "550")
    assert (recipient.kind, recipient.reason) == ("hard", "userunknown")
    assert recipient.action == "failed"
    assert recipient.remote_mta == "mx1.example.org"
    # folded Diagnostic-Code lines are joined, the "smtp;" type is dropped
    assert recipient.diagnostic == (
        "550 5.1.1 <kijitora@example.org>: Recipient address rejected: User unknown in virtual mailbox table"
    )


def test_the_return_address_gives_the_original_recipient_by_verp() -> None:
    report = parse_bounce(_report(UNKNOWN_USER, to="bounces+sabatora=example.jp@mailray.test"))

    assert report.original_recipient_hints == ["sabatora@example.jp"]


def test_an_original_recipient_that_differs_is_a_hint() -> None:
    blocks = UNKNOWN_USER.replace(
        "Original-Recipient: rfc822;kijitora@example.org", "Original-Recipient: rfc822;cat@example.com"
    )

    report = parse_bounce(_report(blocks, to="news@mailray.test"))

    assert report.original_recipient_hints == ["cat@example.com"]


def test_the_code_in_the_diagnostic_beats_a_generic_status_field() -> None:
    blocks = UNKNOWN_USER.replace("Status: 5.1.1", "Status: 5.0.0").replace(
        "550 5.1.1 <kijitora@example.org>: Recipient address\n    rejected: User unknown in virtual mailbox table",
        "552 5.2.2 <kijitora@example.org>: Mailbox full",
    )

    [recipient] = parse_bounce(_report(blocks)).recipients

    assert (recipient.status, recipient.reply_code) == ("5.2.2", "552")
    assert (recipient.kind, recipient.reason) == ("soft", "mailboxfull")


def test_only_failed_recipients_are_reported() -> None:
    blocks = (
        UNKNOWN_USER
        + """
Final-Recipient: rfc822; shironeko@example.org
Action: relayed
Status: 2.0.0

Final-Recipient: rfc822; mikeneko@example.net
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.net[192.0.2.9]:25: Connection timed out
"""
    )

    report = parse_bounce(_report(blocks))

    assert [r.recipient for r in report.recipients] == ["kijitora@example.org", "mikeneko@example.net"]
    delayed = report.recipients[1]
    assert (delayed.action, delayed.status, delayed.kind, delayed.reason) == (
        "delayed",
        "4.4.1",
        "soft",
        "expired",
    )


def test_a_report_of_deliveries_only_is_not_a_bounce() -> None:
    blocks = "Final-Recipient: rfc822; kijitora@example.org\nAction: delivered\nStatus: 2.0.0\n"

    report = parse_bounce(_report(blocks, notice="Your message was delivered to the following recipients.\n"))

    assert not report.is_bounce
    assert report.recipients == []


def test_the_notice_says_when_the_report_has_no_diagnostic() -> None:
    notice = (
        "I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n"
        "<kijitora@example.org>: host mx1.example.org[192.0.2.1] said: 550 5.7.26\n"
        "    Unauthenticated email from mailray.test is not accepted due to domain's DMARC policy\n"
        "    (in reply to end of DATA command)\n"
    )
    blocks = "Final-Recipient: rfc822; kijitora@example.org\nAction: failed\nStatus: 5.0.0\n"

    [recipient] = parse_bounce(_report(blocks, notice=notice)).recipients

    assert (recipient.status, recipient.reply_code) == ("5.7.26", "550")
    assert (recipient.kind, recipient.reason) == ("blocked", "authfailure")


def test_the_notice_tells_a_refused_sender_from_a_refused_recipient() -> None:
    notice = (
        "<kijitora@example.org>: host mx1.example.org[192.0.2.1] said: 550 5.7.1 Access\n"
        "    denied (in reply to MAIL FROM command)\n"
    )
    blocks = UNKNOWN_USER.replace("Status: 5.1.1", "Status: 5.7.1").replace(
        "550 5.1.1 <kijitora@example.org>: Recipient address\n    rejected: User unknown in virtual mailbox table",
        "550 5.7.1 Access denied",
    )

    [recipient] = parse_bounce(_report(blocks, notice=notice)).recipients

    assert (recipient.kind, recipient.reason) == ("blocked", "rejected")


def test_returned_headers_give_the_original_message_id() -> None:
    returned = "Content-Type: text/rfc822-headers\n\n" + ORIGINAL.split("\n\n")[0] + "\n"

    report = parse_bounce(_report(UNKNOWN_USER, returned=returned))

    assert report.original_message_id == "autumn-42@mailray.test"


@pytest.mark.parametrize(
    ("returned", "campaign"),
    [
        # Returned headers without the Message-ID, as some MTAs cut them.
        (
            "Content-Type: text/rfc822-headers\n\nTo: kijitora@example.org\n"
            "X-Campaign-ID: 5B0C6A3E-1D2F-4E8A-9C7B-2A1F0E9D8C7B\n",
            "5b0c6a3e-1d2f-4e8a-9c7b-2a1f0e9d8c7b",
        ),
        (
            "Content-Type: message/rfc822\n\n"
            + ORIGINAL.replace("Date:", "X-Campaign-ID: 5b0c6a3e-1d2f-4e8a-9c7b-2a1f0e9d8c7b\nDate:"),
            "5b0c6a3e-1d2f-4e8a-9c7b-2a1f0e9d8c7b",
        ),
        ("Content-Type: text/rfc822-headers\n\nX-Campaign-ID: <not a campaign>\n", None),
        (f"Content-Type: message/rfc822\n\n{ORIGINAL}", None),
    ],
)
def test_the_returned_campaign_id_is_read_where_it_is_a_uuid(returned: str, campaign: str | None) -> None:
    report = parse_bounce(_report(UNKNOWN_USER, returned=returned))

    assert report.is_bounce and report.original_campaign_id == campaign


def test_a_report_without_recipients_names_the_returned_messages_addressees() -> None:
    notice = "Your message could not be delivered.\n\n\t--- Delivery report unavailable ---\n"

    report = parse_bounce(_report("", notice=notice))

    assert report.is_bounce
    assert [(r.recipient, r.kind, r.reason) for r in report.recipients] == [
        ("kijitora@example.org", "soft", "undefined")
    ]


def test_base64_status_part_and_blocks_without_blank_lines_are_read() -> None:
    import base64

    fields = (
        "Reporting-MTA: dns; mx.example.net\r\n"
        "Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Final-Recipient: rfc822; b@example.org\r\nAction: failed\r\nStatus: 5.2.2\r\n"
    )
    encoded = base64.encodebytes(fields.encode()).decode()
    raw = f"""\
From: MAILER-DAEMON@mx.example.net
To: news@mailray.test
Subject: Delivery Status Notification (Failure)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Delivery failed.
--b
Content-Type: message/delivery-status
Content-Transfer-Encoding: base64

{encoded}
--b--
""".encode()

    report = parse_bounce(raw)

    assert [(r.recipient, r.status, r.reason) for r in report.recipients] == [
        ("a@example.org", "5.1.1", "userunknown"),
        ("b@example.org", "5.2.2", "mailboxfull"),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("rfc822; kijitora@example.org", "kijitora@example.org"),
        ("rfc822;<kijitora@example.org>", "kijitora@example.org"),
        ("RFC822; kijitora@example.org (Kijitora)", "kijitora@example.org"),
        ("rfc822;|/usr/bin/procmail kijitora@example.org", "kijitora@example.org"),
        ("rfc822;/var/mail/kijitora", "/var/mail/kijitora"),
    ],
)
def test_recipient_fields(value: str, expected: str) -> None:
    assert address_of(value) == expected


def test_field_blocks_join_folded_lines_and_split_on_repeated_names() -> None:
    blocks = field_blocks("A: 1\nB: two\n  lines\nA: 3\n\nC: 4\n")

    assert blocks == [{"a": "1", "b": "two lines"}, {"a": "3"}, {"c": "4"}]
    assert untyped("smtp; 550 no") == "550 no"
    assert read_report("Reporting-MTA: dns; x\n").recipient_blocks == 0


ARF = """\
From: <staff@feedback.example.net>
To: <fbl@mailray.test>
Subject: complaint about message from 192.0.2.1
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="part1"

--part1
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from IP 192.0.2.1.

--part1
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <news@mailray.test>
{rcpt_to}Arrival-Date: Thu, 1 Oct 2026 09:00:00 +0000
Source-IP: 192.0.2.1

--part1
Content-Type: message/rfc822
Content-Disposition: inline

{original}
--part1--
"""


@pytest.mark.parametrize("rcpt_to", ["Original-Rcpt-To: <kijitora@example.org>\n", ""])  # often redacted
def test_an_arf_feedback_report_is_a_complaint_not_a_bounce(rcpt_to: str) -> None:
    original = ORIGINAL.replace("Date:", "X-Campaign-ID: 5b0c6a3e-1d2f-4e8a-9c7b-2a1f0e9d8c7b\nDate:")
    raw = ARF.format(rcpt_to=rcpt_to, original=original).encode()
    report = parse_bounce(raw)
    assert might_be_bounce(parse_message(raw))  # a synced inbox reads it too

    assert not report.is_bounce and report.recipients == []
    assert (report.complained_by, report.feedback_type, report.source) == (
        ["kijitora@example.org"],
        "abuse",
        "arf",
    )
    assert report.original_message_id == "autumn-42@mailray.test"
    assert report.original_campaign_id == "5b0c6a3e-1d2f-4e8a-9c7b-2a1f0e9d8c7b"
