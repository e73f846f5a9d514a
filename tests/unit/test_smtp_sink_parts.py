"""The SMTP sink's parts without a server: rule syntax and decisions, the compact index, DSNs
beyond ASCII, maildir names and delivery."""

from __future__ import annotations

import email
import email.policy
import tracemalloc
from pathlib import Path

import pytest

from cluster.emulators.smtp.dsn import build_dsn
from cluster.emulators.smtp.index import MessageIndex
from cluster.emulators.smtp.maildir import Maildir, unique_name
from cluster.emulators.smtp.rules import Reply, RuleSet, parse_reply, parse_rule, parse_rules
from cluster.emulators.smtp.server import message_id_of
from mail.errors import NotFound, ValidationError


def test_rule_syntax() -> None:
    rule = parse_rule("Full-*@*=452 4.2.2 mailbox full")
    assert (rule.pattern, rule.reply, rule.bounce, rule.fail_attempts) == (
        "full-*@*",
        Reply(code=452, status="4.2.2", text="mailbox full"),
        False,
        None,
    )
    flaky = parse_rule("flaky-*@*=451 4.3.0 busy@2")
    assert (flaky.reply.line, flaky.fail_attempts) == ("451 4.3.0 busy", 2)
    bounce = parse_rule("*@gone.test=bounce:550 5.1.1 user unknown")
    assert bounce.bounce and bounce.reply.line == "550 5.1.1 user unknown"
    assert parse_rule("*@x.test=554").reply == Reply(code=554, status="5.0.0", text="refused by rule")
    # The pattern ends at the first "=" a reply follows: VERP-style patterns keep theirs.
    assert parse_rule("b+a=x.test@*=550 5.1.1 no").pattern == "b+a=x.test@*"


@pytest.mark.parametrize(
    "text",
    [
        "*@x.test",
        "*@x.test=250 ok",
        "=550 no",
        "*@x.test=550 4.1.1 mixed",
        "*@x.test=bounce:451 later",
        "a=550 x@0",
    ],
)
def test_bad_rules_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_rule(text)


def test_the_first_matching_rule_decides_and_at_n_counts_per_address() -> None:
    rules = RuleSet(
        parse_rules(
            [
                "*@slow.test=421 4.7.0 later",
                "bob@slow.test=550 5.1.1 never reached",
                "flaky-*@*=451 4.3.0 busy@1",
            ]
        )
    )
    assert rules.decide("ana@example.com") is None
    slow = rules.decide("Bob@Slow.Test")
    assert slow is not None and slow.reply.code == 421 and not slow.bounce
    first = rules.decide("flaky-a@x.test")
    assert first is not None and first.reply.code == 451
    assert rules.decide("FLAKY-A@x.test") is None and rules.decide("flaky-a@x.test") is None
    assert rules.decide("flaky-b@x.test") is not None


def test_parse_reply_keeps_text_after_the_status() -> None:
    assert parse_reply("550 5.7.1 see https://x.test/5.7.1").text == "see https://x.test/5.7.1"


def _fill(index: MessageIndex, count: int) -> None:
    for number in range(count):
        index.add(
            received=1_767_225_600.0 + number,
            connection=number // 100,
            size=4000,
            mail_from="news@sender.test",
            recipients=[f"user{number:07d}@example.com"],
            message_id=f"<{number:032x}@sender.test>",
            bounced=[],
        )


def test_index_pages_filters_and_forgets() -> None:
    index = MessageIndex()
    _fill(index, 10)
    index.add(
        received=0.0,
        connection=7,
        size=1,
        mail_from="",
        recipients=["a@x.test", "B@x.test"],
        message_id="",
        bounced=["B@x.test"],
    )
    page = index.page(limit=4)
    assert [entry.id for entry in page.messages] == [1, 2, 3, 4] and page.next_after == 4 and page.total == 11
    assert index.page(after=8).next_after is None
    assert [entry.id for entry in index.page(recipient="b@X.test").messages] == [11]
    assert index.get(11).bounced == ["B@x.test"] and index.get(11).recipients == ["a@x.test", "B@x.test"]
    assert index.has_message_id(f"<{3:032x}@sender.test>")
    with pytest.raises(NotFound):
        index.get(12)
    index.clear()
    assert len(index) == 0 and index.next_id == 12
    with pytest.raises(NotFound):
        index.get(1)


def test_the_index_stays_compact() -> None:
    """100,000 messages with 23-character recipients and 46-character Message-IDs: the index keeps
    their envelopes in about 22 MB, of which those two strings are 167 bytes a message."""
    index = MessageIndex()
    tracemalloc.start()
    try:
        _fill(index, 100_000)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held / 100_000 < 300, f"{held / 100_000:.0f} bytes per message"


def test_a_dsn_for_smtputf8_mail_uses_the_global_types() -> None:
    raw = build_dsn(
        original="From: jörg@exämple.test\r\nMessage-ID: <ü@x.test>\r\n\r\nbody".encode(),
        envelope_from="jörg@exämple.test",
        failures=[("öla@gone.test", Reply(code=550, status="5.1.1", text="user unknown"))],
        reporting_mta="sink.mailray.test",
        arrival=0.0,
        now=0.0,
    )
    dsn = email.message_from_bytes(raw, policy=email.policy.default)
    assert dsn["To"] == "jörg@exämple.test"
    types = [part.get_content_type() for part in dsn.iter_parts()]
    assert types == ["text/plain", "message/global-delivery-status", "message/global-headers"]
    assert "Final-Recipient: utf-8; öla@gone.test" in raw.decode()
    assert "Message-ID: <ü@x.test>" in raw.decode()


def test_message_id_of_unfolds_and_tolerates_absence() -> None:
    assert (
        message_id_of(b"Subject: x\r\nMessage-Id:\r\n <a@b.test>\r\n\r\nMessage-ID: <body@x>\r\n")
        == "<a@b.test>"
    )
    assert message_id_of(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n") == ""


def test_maildir_delivery_is_a_rename_out_of_tmp(tmp_path: Path) -> None:
    maildir = Maildir(tmp_path / "box")
    name = unique_name(1_767_225_600, 1, "abc123", "sink/mailray:test")
    assert name.endswith(".sink\\057mailray\\072test")
    maildir.deliver(name, b"hello")
    assert maildir.read(name) == b"hello" and not list((tmp_path / "box" / "tmp").iterdir())
    (tmp_path / "box" / "new" / name).rename(tmp_path / "box" / "cur" / f"{name}:2,S")
    assert maildir.read(name) == b"hello" and maildir.remove(name)
    assert maildir.find(name) is None and maildir.names() == []
