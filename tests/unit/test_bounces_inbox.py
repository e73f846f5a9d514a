"""Which synced messages are read as bounces: every bounce of the labelled corpus passes the cheap
look, and almost no ordinary mail does (parse_bounce decides for those that pass)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mail.bounces.inbox import might_be_bounce
from mail.bounces.parse import parse_bounce
from mail.mime import parse_message, read_corpus_message

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
BOUNCES = sorted((SHARED / "bounces" / "sisimai").glob("*.eml"))
HAM = sorted((SHARED / "spamassassin").glob("*ham*/*"))

pytestmark = pytest.mark.skipif(not BOUNCES or not HAM, reason="the corpora are not on this machine")


def test_every_bounce_in_the_corpus_is_looked_at() -> None:
    missed = []
    for path in BOUNCES:
        raw = read_corpus_message(path)
        if parse_bounce(raw).is_bounce and not might_be_bounce(parse_message(raw)):
            missed.append(path.name)
    assert missed == []


def test_ordinary_mail_is_rarely_looked_at() -> None:
    looked_at = [path.name for path in HAM if might_be_bounce(parse_message(read_corpus_message(path)))]
    # A few list messages are delay notices sent to the list (MAILER-DAEMON): at most 1 in 200.
    assert len(looked_at) <= len(HAM) // 200, looked_at
