"""mail.bounces on text bounces (no delivery-status part), written the way each MTA writes them."""

from __future__ import annotations

from mail.bounces import parse_bounce
from models.bounces import BounceReport


def _mail(headers: str, body: str) -> bytes:
    return (headers.strip("\n") + "\n\n" + body).encode()


def _summary(report: BounceReport) -> list[tuple[str, str, str, str, str]]:
    return [(r.recipient, r.status, r.reply_code, r.kind, r.reason) for r in report.recipients]


QMAIL = _mail(
    """
Return-Path: <>
From: MAILER-DAEMON@mx4.example.jp
To: news@mailray.test
Subject: failure notice
""",
    """\
Hi. This is the qmail-send program at mx4.example.jp.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<kijitora@example.org>:
192.0.2.153 does not like recipient.
Remote host said: 550 5.1.1 <kijitora@example.org>... User Unknown
Giving up on 192.0.2.153.

<mikeneko@example.org>:
192.0.2.153 does not like recipient.
Remote host said: 552 5.2.2 <mikeneko@example.org>... Mailbox Full
Giving up on 192.0.2.153.

--- Below this line is a copy of the message.

Return-Path: <news@mailray.test>
Message-ID: <autumn-42@mailray.test>
From: news@mailray.test
To: kijitora@example.org, mikeneko@example.org
Subject: Our autumn letter

Hello.
""",
)


def test_qmail_names_each_recipient_with_its_reply() -> None:
    report = parse_bounce(QMAIL)

    assert report.is_bounce and report.source == "heuristic"
    assert _summary(report) == [
        ("kijitora@example.org", "5.1.1", "550", "hard", "userunknown"),
        ("mikeneko@example.org", "5.2.2", "552", "soft", "mailboxfull"),
    ]
    assert report.original_message_id == "autumn-42@mailray.test"
    assert report.reporting_mta == "mx4.example.jp"


def test_exim_failed_recipients_header_decides_who_failed() -> None:
    raw = _mail(
        """
From: Mail Delivery System <Mailer-Daemon@e1.example.org>
To: news@mailray.test
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: kijitora@example.ed.jp
""",
        """\
This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  kijitora@example.ed.jp
    host mx.example.ed.jp [192.0.2.20]
    SMTP error from remote mail server after MAIL FROM:<news@mailray.test> SIZE=1543:
    550 5.7.0 <news@mailray.test>... Please use the smtp server of your ISP.

------ This is a copy of the message, including all the headers. ------

From: news@mailray.test
""",
    )

    assert _summary(parse_bounce(raw)) == [("kijitora@example.ed.jp", "5.7.0", "550", "blocked", "blocked")]


def test_gmail_writes_the_address_alone_on_a_line() -> None:
    raw = _mail(
        """
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: news@mailray.test
Subject: Delivery Status Notification (Failure)
""",
        """\
Delivery to the following recipient failed permanently:

     kijitora@example.jp

Technical details of permanent failure:
Google tried to deliver your message, but it was rejected by the server for the recipient domain example.jp by mx.example.jp. [192.0.2.153].

The error that the other server returned was:
550 5.1.1 <kijitora@example.jp>... User Unknown

----- Original message -----
""",
    )

    assert _summary(parse_bounce(raw)) == [("kijitora@example.jp", "5.1.1", "550", "hard", "userunknown")]


def test_a_delay_warning_is_a_soft_bounce() -> None:
    raw = _mail(
        """
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: news@mailray.test
Subject: Delivery Status Notification (Delay)
""",
        """\
This is an automatically generated Delivery Status Notification

THIS IS A WARNING MESSAGE ONLY.

YOU DO NOT NEED TO RESEND YOUR MESSAGE.

Delivery to the following recipient has been delayed:

     kijitora@example.com

Message will be retried for 2 more day(s)
""",
    )

    [recipient] = parse_bounce(raw).recipients

    assert (recipient.action, recipient.kind, recipient.reason) == ("delayed", "soft", "expired")


def test_lotus_notes_writes_the_reason_above_the_address() -> None:
    raw = _mail(
        """
From: postmaster@n.example.co.jp
To: news@mailray.test
Subject: Undeliverable message
""",
        """\
------- Failure Reasons  --------

User  not listed in public Name & Address Book
kijitora@example.com
""",
    )

    assert _summary(parse_bounce(raw)) == [("kijitora@example.com", "", "", "hard", "userunknown")]


def test_a_bounce_returned_inside_another_message_is_read() -> None:
    inner = QMAIL.decode()
    raw = _mail(
        """
From: MAILER-DAEMON@relay.example.net (Mail Delivery System)
To: postmaster@mailray.test
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"
""",
        f"""\
--outer
Content-Type: text/plain

The message below could not be delivered to postmaster.

--outer
Content-Type: message/rfc822

{inner}
--outer--
""",
    )

    report = parse_bounce(raw)

    assert [r.recipient for r in report.recipients] == ["kijitora@example.org", "mikeneko@example.org"]


def test_mail_from_a_postmaster_that_reports_no_failure_is_not_a_bounce() -> None:
    raw = _mail(
        """
From: postmaster@example.org
To: news@mailray.test
Subject: Our new mail server
""",
        """\
Hello,

from Monday our mail server moves. Write to

  help@example.org

with any question.
""",
    )

    assert parse_bounce(raw) == BounceReport(is_bounce=False)


def test_talking_about_undeliverable_mail_is_not_a_bounce() -> None:
    raw = _mail(
        """
From: Kijitora <kijitora@example.org>
To: news@mailray.test
Subject: Re: your letter
""",
        """\
My last reply could not be delivered to one or more recipients, so again:

kijitora@example.org: yes, please keep me on the list.
""",
    )

    assert not parse_bounce(raw).is_bounce
