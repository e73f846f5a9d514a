"""mail.bounces.parse_bounce on what is not a bounce, and on input that is not mail at all."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mail.bounces import parse_bounce
from mail.errors import ValidationError
from mail.mime import read_corpus_message
from models.bounces import BounceReport

EASY_HAM = Path("/work/shared/corpora/spamassassin/easy-ham-1")


@pytest.mark.skipif(not EASY_HAM.is_dir(), reason="the SpamAssassin corpus is not on this machine")
def test_ordinary_mail_is_not_a_bounce() -> None:
    # Mailing-list mail and newsletters: full of addresses, quotes and "-----Original Message-----".
    for path in sorted(EASY_HAM.iterdir())[:40]:
        report = parse_bounce(read_corpus_message(path))

        assert not report.is_bounce, path.name
        assert report.recipients == []
        assert report.source is None


def test_an_empty_message_is_not_a_bounce() -> None:
    assert parse_bounce(b"") == BounceReport(is_bounce=False)
    assert parse_bounce(b"Subject: hi\n\nhello\n").is_bounce is False


@pytest.mark.parametrize("raw", ["Subject: text, not bytes\n\n", None, 42])
def test_input_that_is_not_bytes_is_a_validation_error(raw: object) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_bounce(raw)  # type: ignore[arg-type]

    assert raised.value.field == "raw"


def test_mime_nested_thousands_deep_is_a_validation_error() -> None:
    raw = b"From: MAILER-DAEMON@example.net\nSubject: Undelivered Mail\nMIME-Version: 1.0\n"
    for depth in range(3000):
        raw += b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (depth, depth)
    raw += b"Content-Type: text/plain\n\nhello\n"

    with pytest.raises(ValidationError, match="nested too deep"):
        parse_bounce(raw)


def test_a_huge_bounce_is_cut_not_choked_on() -> None:
    lines = b"".join(b"<user%d@example.org>:\n550 5.1.1 User unknown\n" % n for n in range(20_000))
    raw = (
        b"From: MAILER-DAEMON@example.net\nSubject: failure notice\n\nI was not able to deliver your message.\n"
        + lines
    )

    report = parse_bounce(raw)

    assert 100 < len(report.recipients) <= 1000
    assert all(
        r.recipient.startswith("user") and r.recipient.endswith("@example.org") for r in report.recipients
    )


@pytest.mark.timeout(60)  # a hang guard: each of these took minutes with a backtracking pattern
@pytest.mark.parametrize(
    "raw",
    [
        b"From: MAILER-DAEMON@x\nTo: "
        + b"a" * 200_000
        + b"\nSubject: failure notice\n\nnot delivered\n<a@b.org>:\n",
        b"From: MAILER-DAEMON@x\nSubject: failure notice\nContent-Type: text/html\n\n" + b"<script" * 100_000,
        b"From: MAILER-DAEMON@x\nSubject: failure notice\nContent-Type: text/html\n\nundeliverable"
        + b"<" * 500_000,
        b"From: MAILER-DAEMON@x\nSubject: failure notice\n\nundeliverable\n" + (b"a@" * 999 + b"\n") * 200,
        b"Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\n"
        + b"Final-Recipient: rfc822; "
        + b"a" * 500_000
        + b"\nAction: failed\n"
        + b" x\n" * 100_000,
    ],
)
def test_pathological_input_is_read_in_one_pass(raw: bytes) -> None:
    parse_bounce(raw)


_PIECES = st.sampled_from(
    [
        b"From: MAILER-DAEMON@example.net\n",
        b"Subject: Undelivered Mail Returned to Sender\n",
        b"Return-Path: <>\n",
        b"X-Failed-Recipients: a@example.org\n",
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n',
        b"Content-Type: message/delivery-status\n",
        b"Content-Type: message/rfc822\n",
        b"Content-Transfer-Encoding: base64\n",
        b"--b\n",
        b"--b--\n",
        b"\n",
        b"Final-Recipient: rfc822; a@example.org\n",
        b"Action: failed\n",
        b"Status: 5.1.1\n",
        b"Diagnostic-Code: smtp; 550 5.1.1 user unknown\n",
        b"<a@example.org>:\n",
        b"could not be delivered to one or more recipients\n",
        b'{"notificationType":"Bounce","bounce":{',
        b"\xff\xfe\x00",
        b">>> DATA\n<<< 550 no\n",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_PIECES, st.binary(max_size=8)), max_size=60).map(b"".join))
def test_any_bytes_give_a_report_or_a_validation_error(raw: bytes) -> None:
    try:
        report = parse_bounce(raw)
    except ValidationError:
        return
    msgspec.json.encode(report)  # storable: no lone surrogates
    assert report.is_bounce == bool(report.recipients)
