"""MIME parsing throughput on the real corpus: one JSON line per figure (messages per second, one core).

mail.mime.parse_message against the bare compat32 parse it is built on (and, for scale, the
policy.default parse alone), over every message of the SpamAssassin corpus and the sisimai
bounces, read as the mailbox stores them (without the mbox `From ` line).

.venv/bin/python benchmarks/mime_parse.py
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from pathlib import Path

from mail.mime import parse_message, read_corpus_message

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
ROUNDS = 3  # best of


def _emit(figure: str, value: float, **detail: object) -> None:
    print(json.dumps({"benchmark": "mime_parse", "figure": figure, **detail, "value": value}), flush=True)


def _rate(parse: Callable[[bytes], object], messages: list[bytes], rounds: int = ROUNDS) -> float:
    """Messages per second of `parse` over all of `messages`, the best of `rounds` passes."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for raw in messages:
            parse(raw)
        best = min(best, time.perf_counter() - started)
    return len(messages) / best


def _default_fields(raw: bytes) -> None:
    """What parse_message reads, read through policy.default (its header classes, get_body)."""
    message = _DEFAULT.parsebytes(raw)
    try:
        for name in ("message-id", "in-reply-to", "references", "subject", "from", "to", "cc", "date"):
            str(message[name])
        for body in (message.get_body(("plain",)), message.get_body(("html",))):
            if body is not None:
                body.get_content()
        for attachment in message.iter_attachments():
            attachment.get_content()
    except Exception:  # policy.default raises on some of this corpus; the time still counts
        pass


_DEFAULT = BytesParser(policy=policy.default)


def main() -> None:
    files = sorted((CORPORA / "spamassassin").glob("*/*")) + sorted((CORPORA / "bounces").glob("*/*.eml"))
    if not files:
        sys.exit(f"mime_parse: no corpus under {CORPORA}")
    messages = [read_corpus_message(path) for path in files]
    detail = {"messages": len(messages), "corpus": "spamassassin+sisimai"}
    _emit("average_message_bytes", round(sum(map(len, messages)) / len(messages)), **detail)

    compat32 = BytesParser(policy=policy.compat32)
    _emit("parse_message_per_s", round(_rate(parse_message, messages)), **detail)
    _emit("compat32_parsebytes_per_s", round(_rate(compat32.parsebytes, messages)), **detail)
    _emit("default_parsebytes_per_s", round(_rate(_DEFAULT.parsebytes, messages, rounds=1)), **detail)
    _emit("default_same_fields_per_s", round(_rate(_default_fields, messages, rounds=1)), **detail)

    errors = sum(bool(parse_message(raw).parse_errors) for raw in messages)
    _emit("messages_with_parse_errors", errors, **detail)


if __name__ == "__main__":
    main()
