"""A campaign's messages: render and DKIM-sign N (20,000) personalized, tracked messages.

Templates: every HTML body of the SpamAssassin ham (easy-ham-1, hard-ham-1) with a personalized
greeting, subject and preview text; recipients take them in turn, every tenth with a non-ASCII
name. Tracking is on (a `TokenTrackingPlan` signs each message's open, click and unsubscribe
tokens), so is unsubscribing. Figures, one JSON line each, messages per second on one core:
render alone, sign alone (rsa-2048, ed25519), render and sign together; and, for scale, the same
personalized bodies built as `email.message.EmailMessage` (no tracking) on a sample.

.venv/bin/python benchmarks/render_campaign.py [--count 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from mail.campaigns.personalize import Recipient
from mail.campaigns.render import (
    CompiledMessage,
    MessageContent,
    RenderOptions,
    TokenTrackingPlan,
    compile_message,
)
from mail.dkim import DkimSigner, generate_private_key
from mail.mime import parse_message, read_corpus_message
from mail.tracking.tokens import TokenSigner

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "spamassassin"
HAM = ("easy-ham-1", "hard-ham-1")
BASE_URL = "https://t.acme.test"
BASELINE_SAMPLE = 2000
CAMPAIGN = uuid.UUID("5b0c6a3e-1d2f-4e8a-9c7b-2a1f0e9d8c7b")


def _emit(figure: str, value: float, **detail: object) -> None:
    print(
        json.dumps({"benchmark": "render_campaign", "figure": figure, **detail, "value": value}), flush=True
    )


def _timed(operation: Callable[[int], object], count: int) -> float:
    """Calls per second of `operation(i)` for i in range(count)."""
    started = time.perf_counter()
    for number in range(count):
        operation(number)
    return count / (time.perf_counter() - started)


def _recipients(count: int) -> list[Recipient]:
    return [
        Recipient(
            email=f"user{number}@example.com",
            first_name="José" if number % 10 == 0 else f"Ann{number}",
            last_name="Lee",
            company=f"Company {number % 97}",
            attributes={"plan": ("free", "pro", "team")[number % 3]},
        )
        for number in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    count = parser.parse_args().count
    if not all((CORPUS / folder).is_dir() for folder in HAM):
        sys.exit(f"render_campaign: no SpamAssassin ham under {CORPUS}")
    bodies = [
        html
        for folder in HAM
        for path in sorted((CORPUS / folder).iterdir())
        if (html := parse_message(read_corpus_message(path)).html_body) is not None
    ]
    contents = [
        MessageContent(
            subject="{{firstName|Hello}}, news for {{company|you}}",
            from_name="Acme News",
            from_email="news@acme.test",
            reply_to="help@acme.test",
            preview_text="Your {{attr.plan|new}} plan, {{firstName|friend}}",
            body_html="<p>Hi {{firstName|there}}, about your {{attr.plan}} plan:</p>" + html,
            body_text="",
        )
        for html in bodies
    ]
    options = RenderOptions()
    started = time.perf_counter()
    compiled: list[CompiledMessage] = [compile_message(content, options) for content in contents]
    compile_ms = (time.perf_counter() - started) * 1000 / len(compiled)
    _emit("compile_ms_per_template", round(compile_ms, 2), templates=len(compiled))

    recipients = _recipients(count)
    token_signer = TokenSigner({1: os.urandom(32)})
    rendered: list[bytes] = []

    def render(number: int) -> bytes:
        plan = TokenTrackingPlan(token_signer, BASE_URL, number + 1, number + 1)
        message = compiled[number % len(compiled)].render(recipients[number], plan, campaign_id=CAMPAIGN)
        return message.message

    rate = _timed(lambda number: rendered.append(render(number)), count)
    average = sum(map(len, rendered)) / len(rendered)
    _emit("render_per_s", round(rate), messages=count, message_bytes=round(average))

    for name, key_type in (("rsa-2048", "rsa"), ("ed25519", "ed25519")):
        signer = DkimSigner("acme.test", "bench", generate_private_key(key_type))  # type: ignore[arg-type]
        rate = _timed(lambda number, signer=signer: signer.sign(rendered[number]), count)  # type: ignore[misc]
        _emit("sign_per_s", round(rate), key=name, messages=count)
        rate = _timed(lambda number, signer=signer: signer.sign(render(number)), count)  # type: ignore[misc]
        _emit("render_and_sign_per_s", round(rate), key=name, messages=count)

    # For scale: the email package building the same personalized bodies (no tracking, no
    # preheader), as mail.sending.compose does.
    sample = min(count, BASELINE_SAMPLE)

    def email_message(number: int) -> bytes:
        recipient = recipients[number]
        message = EmailMessage(policy=SMTP)
        message["From"] = "Acme News <news@acme.test>"
        message["To"] = f"{recipient.first_name} {recipient.last_name} <{recipient.email}>"
        message["Subject"] = f"{recipient.first_name}, news for {recipient.company}"
        message.set_content(f"Hi {recipient.first_name}")
        message.add_alternative(
            f"<p>Hi {recipient.first_name}</p>" + bodies[number % len(bodies)], subtype="html"
        )
        return message.as_bytes()

    _emit("email_message_baseline_per_s", round(_timed(email_message, sample)), messages=sample)


if __name__ == "__main__":
    main()
