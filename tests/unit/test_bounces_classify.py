"""mail.bounces.classify: the receiver's words, then the status code, then the reply code."""

from __future__ import annotations

import pytest

from mail.bounces.classify import classify, kind_of, reason_from_status
from mail.bounces.diagnostics import codes, smtp_stage
from models.bounces import BounceKind, BounceReason


@pytest.mark.parametrize(
    ("status", "reply", "text", "kind", "reason"),
    [
        # The address is dead: hard.
        ("5.1.1", "550", "550 5.1.1 <a@example.org>... User Unknown", "hard", "userunknown"),
        ("", "550", "550 sorry, no mailbox here by that name (#5.1.1 - chkusr)", "hard", "userunknown"),
        ("5.2.1", "550", "550 5.2.1 <a@example.org>... User Unknown", "hard", "userunknown"),
        ("5.1.10", "550", "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", "hard", "userunknown"),
        ("5.4.4", "", "Host or domain name not found. Name service error for name=example.jp type=AAAA", "hard", "hostunknown"),
        ("5.1.6", "550", "550 5.1.6 recipient no longer on server: a@example.org", "hard", "hasmoved"),
        ("", "", "an MX or SRV record indicated no SMTP service", "hard", "notaccept"),
        # The mailbox is full: soft even when the code is permanent (5.2.2 is "persistent transient").
        ("5.2.2", "552", "552 5.2.2 Mailbox full", "soft", "mailboxfull"),
        ("5.1.1", "552", "552 sorry, mailbox a@example.org is over quota temporarily (#5.1.1)", "soft", "mailboxfull"),
        ("4.4.7", "421", "554 4.4.7 Message expired: unable to deliver in 840 minutes.<421 4.4.2 Connection timed out>", "soft", "expired"),
        ("5.2.1", "550", "550-5.2.1 The email account that you tried to reach is disabled.", "soft", "suspend"),
        ("5.3.4", "552", "552 5.3.4 Message too large", "soft", "mesgtoobig"),
        ("4.3.2", "452", "452 4.3.2 Connection rate limit exceeded.", "soft", "toomanyconn"),
        # The receiver refused us: blocked.
        ("5.7.1", "554", "554 5.7.1 Client host rejected: blocked using zen.spamhaus.org", "blocked", "blocked"),
        ("5.7.606", "550", "550 5.7.606 Access denied, banned sending IP [192.0.2.1].", "blocked", "blocked"),
        ("5.7.26", "550", "550-5.7.26 Unauthenticated email from example.jp is not accepted due to domain's DMARC policy", "blocked", "authfailure"),
        ("5.7.1", "550", "550 5.7.1 Connections not accepted from servers without a valid sender domain. Fix reverse DNS", "blocked", "requireptr"),
        ("5.7.0", "554", "554 5.7.0 Reject, id=20025-09 - SPAM", "blocked", "spamdetected"),
        ("5.7.1", "554", "554 5.7.1 <a@example.org>: Relay access denied", "blocked", "norelaying"),
        ("5.1.8", "501", "501 5.1.8 Sender address rejected", "blocked", "rejected"),
        ("5.7.9", "554", "554 5.7.9 Message not accepted for policy reasons.", "blocked", "policyviolation"),
        ("4.7.650", "451", "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP reputation.", "blocked", "badreputation"),
        # Deferrals are not dead addresses, whatever words follow "Recipient address rejected".
        ("4.2.0", "450", "450 4.2.0 <a@example.org>: Recipient address rejected: Greylisted, see http://postgrey", "soft", "onhold"),
        ("4.3.5", "451", "451 4.3.5 <a@example.org>: Recipient address rejected: Server configuration problem", "soft", "systemerror"),
        ("5.0.0", "550", "550 <a@example.org>: Recipient address rejected.", "hard", "userunknown"),
        ("5.7.1", "550", "550 5.7.1 Recipient not listed in our directory", "hard", "userunknown"),
        ("", "", "Amazon SES has suppressed sending to this address because it has a recent history of bouncing", "hard", "suppressed"),
        # Codes alone.
        ("5.1.1", "", "", "hard", "userunknown"),
        ("4.2.2", "", "", "soft", "mailboxfull"),
        ("5.7.1", "", "", "blocked", "blocked"),
        ("5.0.0", "", "", "soft", "undefined"),
        ("", "550", "", "soft", "onhold"),
    ],
)  # fmt: skip
def test_classify(status: str, reply: str, text: str, kind: BounceKind, reason: BounceReason) -> None:
    verdict = classify(status, reply, text, stage=smtp_stage(text))

    assert (verdict.kind, verdict.reason) == (kind, reason)


def test_where_in_the_conversation_the_refusal_came_refines_the_reason() -> None:
    # after MAIL FROM the refusal is about our sender address
    assert classify("5.1.7", "550", "550 5.1.7 No such domain", stage="mail").reason == "rejected"
    # at the greeting or HELO it is about our host
    assert classify("5.0.0", "501", "501 5.0.0 Invalid domain name", stage="helo").reason == "blocked"
    # an "unknown user" after DATA is the recipient's filter: the address was accepted at RCPT TO
    assert classify("", "550", "550 Unknown user a@example.org", stage="data").reason == "filtered"
    assert classify("", "550", "550 Unknown user a@example.org", stage="rcpt").reason == "userunknown"


def test_a_delay_without_a_reason_is_an_expiry() -> None:
    assert classify("4.0.0", "", "", action="delayed") == classify("", "", "", action="delayed")
    assert classify("", "", "", action="delayed").reason == "expired"


def test_the_context_speaks_when_the_reply_does_not() -> None:
    verdict = classify(
        "", "", "Routing: could not find a gateway", context="Delivery was aborted after 5.0 hour(s)"
    )

    assert verdict.reason == "expired"


@pytest.mark.parametrize(
    ("text", "stage"),
    [
        ("SMTP error from remote mail server after RCPT TO:<a@example.org>:", "rcpt"),
        ("host mx[192.0.2.1] said: 550 Access denied (in reply to MAIL FROM command)", "mail"),
        ("SMTP error from remote mail server after end of data:", "data"),
        ("host mx[192.0.2.1] refused to talk to me: 421 Service not available", "connect"),
        ("Connected to 192.0.2.112 but my name was rejected.", "helo"),
        (">>> DATA\n<<< 550 Unknown user a@example.org", "data"),
        # PIPELINING: the RCPT refusal arrives after DATA is sent; DATA's own reply follows it
        (
            ">>> DATA\n<<< 550 5.1.1 <a@example.org>: User unknown\n<<< 554 5.5.1 Error: no valid recipients",
            "rcpt",
        ),
        ("550 5.1.1 User unknown", ""),
    ],
)
def test_smtp_stage(text: str, stage: str) -> None:
    assert smtp_stage(text) == stage


@pytest.mark.parametrize(
    ("text", "status_field", "expected"),
    [
        ("550 5.1.1 <a@example.org>... User Unknown", "", ("5.1.1", "550")),
        (
            "5.1.0 - Unknown address error 550-'5.7.1 <a@example.org>... Access denied'",
            "5.0.0",
            ("5.7.1", "550"),
        ),
        ("554 4.4.7 Message expired.<421 4.4.2 Connection timed out>", "4.4.7", ("4.4.2", "421")),
        ("Sorry, I couldn't find any host named cx.example.com. (#5.1.2)", "", ("5.1.2", "")),
        ("554 Blocked - see https://example.com/dnsbl-lookup.cgi?ip=192.0.2.225", "4.0.0", ("4.0.0", "")),
        ("host mx.example.jp [192.0.2.153]: connection refused", "5.4.4", ("5.4.4", "")),
        ("Out: 451 4.3.0 Error: queue file write error\nIn: QUIT\nOut: 221 2.0.0 Bye", "", ("4.3.0", "451")),
        ("SIZE=1543 id=22222-22 port 25 version 4.72 from 10.4.4.1", "", ("", "")),
    ],
)
def test_codes_take_the_innermost_failure(text: str, status_field: str, expected: tuple[str, str]) -> None:
    assert codes(text, status_field) == expected


def test_kinds_follow_reasons() -> None:
    assert kind_of("userunknown") == "hard"
    assert kind_of("suppressed") == "hard"
    assert kind_of("authfailure") == "blocked"
    assert kind_of("mailboxfull") == "soft"
    assert reason_from_status("2.0.0") is None
    assert reason_from_status("5.7.777") == "blocked"
    assert reason_from_status("nonsense") is None
