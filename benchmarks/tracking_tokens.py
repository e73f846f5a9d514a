"""Tracking tokens and HTML instrumentation: one JSON line per figure (per second, one core).

Tokens: sign and verify (what every pixel hit and click pays), and refusing a forged token.
Instrumentation: `instrument_html` over every HTML body of the SpamAssassin ham
(easy-ham-1, hard-ham-1), clicks and the open pixel on.

.venv/bin/python benchmarks/tracking_tokens.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from mail.errors import InvalidToken
from mail.mime import parse_message, read_corpus_message
from mail.tracking.instrument import instrument_html
from mail.tracking.tokens import TokenKind, TokenSigner, TrackingToken

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "spamassassin"
HAM = ("easy-ham-1", "hard-ham-1")
SECONDS_PER_FIGURE = 1.0
ROUNDS = 3  # best of, for the corpus pass


def _emit(figure: str, value: float, **detail: object) -> None:
    print(
        json.dumps({"benchmark": "tracking_tokens", "figure": figure, **detail, "value": value}), flush=True
    )


def _rate(operation: Callable[[], object]) -> float:
    """Calls per second of `operation`, timed in rounds until SECONDS_PER_FIGURE have passed."""
    for _ in range(200):  # warm-up
        operation()
    calls, started = 0, time.perf_counter()
    rounds = 1000
    while (elapsed := time.perf_counter() - started) < SECONDS_PER_FIGURE:
        for _ in range(rounds):
            operation()
        calls += rounds
    return calls / elapsed


def _refused(signer: TokenSigner, text: str) -> None:
    try:
        signer.verify(text)
    except InvalidToken:
        return
    raise AssertionError("a forged token verified")


def main() -> None:
    signer = TokenSigner({1: os.urandom(32), 2: os.urandom(32)})
    forger = TokenSigner({2: os.urandom(32)})
    click = TrackingToken(kind=TokenKind.CLICK, email_id=123_456_789, recipient_id=987_654, link=3)
    pixel = TrackingToken(kind=TokenKind.OPEN, email_id=123_456_789, recipient_id=987_654)
    for name, token in (("click", click), ("open", pixel)):
        text = signer.sign(token)
        _emit("sign_per_s", round(_rate(partial(signer.sign, token))), kind=name)
        _emit("verify_per_s", round(_rate(partial(signer.verify, text))), kind=name, chars=len(text))
    forged = forger.sign(click)
    _emit("verify_forged_per_s", round(_rate(partial(_refused, signer, forged))), kind="click")

    if not all((CORPUS / folder).is_dir() for folder in HAM):
        sys.exit(f"tracking_tokens: no SpamAssassin ham under {CORPUS}")
    bodies = [
        html
        for folder in HAM
        for path in sorted((CORPUS / folder).iterdir())
        if (html := parse_message(read_corpus_message(path)).html_body) is not None
    ]
    links = sum(
        len(instrument_html(html, email_id=1, recipient_id=2, signer=signer, base_url="https://t.test").links)
        for html in bodies
    )
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for email_id, html in enumerate(bodies, 1):
            instrument_html(html, email_id=email_id, recipient_id=2, signer=signer, base_url="https://t.test")
        best = min(best, time.perf_counter() - started)
    detail = {
        "messages": len(bodies),
        "rewritten_links": links,
        "average_html_chars": round(sum(map(len, bodies)) / len(bodies)),
        "corpus": "spamassassin ham",
    }
    _emit("instrument_html_per_s", round(len(bodies) / best), **detail)
    _emit("instrumented_links_per_s", round(links / best), **detail)


if __name__ == "__main__":
    main()
