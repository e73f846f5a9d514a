"""VERP return paths: the recipient goes into the envelope sender and comes back out of the bounce."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cluster.emulators.smtp.dsn import build_dsn
from cluster.emulators.smtp.rules import Reply
from mail.bounces import parse_bounce
from mail.config import load_settings
from mail.errors import ConfigError
from mail.sending.verp import valid_return_path, verp_sender


@pytest.mark.parametrize(
    ("recipient", "sender"),
    [
        ("ann@example.org", "bounces+ann=example.org@mail.acme.test"),
        ("Ann.Lee-2@Example.ORG", "bounces+Ann.Lee-2=example.org@mail.acme.test"),
        ("ann+news@example.org", "bounces@mail.acme.test"),  # "+" would not read back
        ("a=b@example.org", "bounces@mail.acme.test"),
        ('"ann lee"@example.org', "bounces@mail.acme.test"),
        ("ann@[192.0.2.1]", "bounces@mail.acme.test"),
    ],
)
def test_the_recipient_is_encoded_where_it_reads_back(recipient: str, sender: str) -> None:
    assert verp_sender("bounces@mail.acme.test", recipient) == sender


def test_a_bounce_to_the_verp_address_names_the_recipient_it_was_sent_to() -> None:
    """Sent to ann@example.org, forwarded on to ann@forwarded.example, which bounced."""
    sender = verp_sender("bounces@mail.acme.test", "ann@example.org")
    now = time.time()
    bounce = build_dsn(
        original=b"From: news@acme.test\r\nTo: ann@example.org\r\nSubject: News\r\n\r\nHi\r\n",
        envelope_from=sender, failures=[("ann@forwarded.example", Reply(code=550, status="5.1.1", text="user unknown"))],
        reporting_mta="mx.forwarded.example", arrival=now - 5, now=now,
    )  # fmt: skip
    report = parse_bounce(bounce)
    assert report.is_bounce and [r.recipient for r in report.recipients] == ["ann@forwarded.example"]
    assert report.original_recipient_hints == ["ann@example.org"]


@pytest.mark.parametrize("address", ["bounces+x@acme.test", "a=b@acme.test", "bounces", "bounces@localhost"])
def test_a_return_path_that_cannot_carry_recipients_is_refused(address: str, tmp_path: Path) -> None:
    assert not valid_return_path(address)
    with pytest.raises(ConfigError, match=r"sending\.verp_return_path"):
        load_settings(
            environ={"MAILRAY_APP__DATA_DIR": str(tmp_path), "MAILRAY_SENDING__VERP_RETURN_PATH": address,
                     "MAILRAY_DATABASE__URL": "postgresql:///x", "MAILRAY_REDIS__URL": "redis://h"}
        )  # fmt: skip
