"""DKIM signing: signatures per second, mail.dkim (OpenSSL through `cryptography`) against dkimpy's
own signer, rsa-sha256 (2048-bit) and ed25519-sha256, relaxed/relaxed, on the same messages.

Messages: rendered campaign messages (the corpus' ham HTML bodies as templates, tracked and
personalized) and raw corpus ham, alternating. One JSON line per figure; every signature of ours
that the run makes first is checked with dkimpy's verifier.

.venv/bin/python benchmarks/dkim_sign.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mail.campaigns.personalize import Recipient
from mail.campaigns.render import MessageContent, RenderOptions, TokenTrackingPlan, render_message
from mail.dkim import DEFAULT_SIGNED_HEADERS, DkimSigner, dns_record, generate_private_key, private_key_pem
from mail.mime import parse_message, read_corpus_message
from mail.tracking.tokens import TokenSigner

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "spamassassin"
HAM = ("easy-ham-1", "hard-ham-1")
DOMAIN, SELECTOR = "acme.test", "bench"
MESSAGES = 200
CAMPAIGN = uuid.UUID("5b0c6a3e-1d2f-4e8a-9c7b-2a1f0e9d8c7b")


def _emit(figure: str, value: float, **detail: object) -> None:
    print(json.dumps({"benchmark": "dkim_sign", "figure": figure, **detail, "value": value}), flush=True)


def _rate(sign: Callable[[bytes], bytes], messages: list[bytes], seconds: float) -> float:
    """Signatures per second over `messages` in turn, for at least `seconds` (after a warm-up)."""
    for message in messages[:5]:
        sign(message)
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        sign(messages[done % len(messages)])
        done += 1
    return done / elapsed


def _messages() -> list[bytes]:
    paths = [path for folder in HAM for path in sorted((CORPUS / folder).iterdir())]
    raw = [read_corpus_message(path) for path in paths[:MESSAGES]]
    bodies = [html for path in paths if (html := parse_message(read_corpus_message(path)).html_body)]
    signer = TokenSigner({1: os.urandom(32)})
    rendered = []
    for number in range(MESSAGES):
        content = MessageContent(
            subject="News for {{firstName|you}}",
            from_name="Acme",
            from_email=f"news@{DOMAIN}",
            body_html="<p>Hi {{firstName}}</p>" + bodies[number % len(bodies)],
        )
        recipient = Recipient(email=f"user{number}@example.com", first_name=f"Ann{number}")
        plan = TokenTrackingPlan(signer, "https://t.acme.test", number + 1, number + 1)
        rendered.append(
            render_message(content, recipient, RenderOptions(), plan, campaign_id=CAMPAIGN).message
        )
    # dkimpy reads either line end; both signers get the CRLF form SMTP sends.
    return [message for pair in zip(rendered, raw, strict=True) for message in pair]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per figure")
    arguments = parser.parse_args()
    if not all((CORPUS / folder).is_dir() for folder in HAM):
        sys.exit(f"dkim_sign: no SpamAssassin ham under {CORPUS}")
    messages = [message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for message in _messages()]
    average = sum(map(len, messages)) / len(messages)
    include = [name.encode("ascii") for name in DEFAULT_SIGNED_HEADERS] + [b"from"]

    for name, key_type in (("rsa-2048", "rsa"), ("ed25519", "ed25519")):
        key = generate_private_key(key_type)  # type: ignore[arg-type]
        ours = DkimSigner(DOMAIN, SELECTOR, key)
        record = dns_record(key).encode("ascii")

        def lookup(_name: bytes, timeout: float = 5, record: bytes = record) -> bytes:
            return record

        for message in messages[:20]:
            if not dkim.verify(ours.sign(message), dnsfunc=lookup):
                sys.exit(f"dkim_sign: a {name} signature of ours did not verify")
        if isinstance(key, ed25519.Ed25519PrivateKey):
            seed = key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            dkimpy_key, algorithm = base64.b64encode(seed), b"ed25519-sha256"
        else:
            dkimpy_key, algorithm = private_key_pem(key), b"rsa-sha256"

        def theirs(message: bytes, dkimpy_key: bytes = dkimpy_key, algorithm: bytes = algorithm) -> bytes:
            field: bytes = dkim.sign(
                message,
                SELECTOR.encode("ascii"),
                DOMAIN.encode("ascii"),
                dkimpy_key,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=algorithm,
                include_headers=include,
            )
            return field + message

        if not dkim.verify(theirs(messages[0]), dnsfunc=lookup):
            sys.exit(f"dkim_sign: dkimpy's {name} signature did not verify")
        mine = _rate(ours.sign, messages, arguments.seconds)
        reference = _rate(theirs, messages, arguments.seconds)
        _emit("signatures_per_s", round(mine), signer="mail.dkim", key=name, message_bytes=round(average))
        _emit("signatures_per_s", round(reference), signer="dkimpy", key=name, message_bytes=round(average))
        _emit("speedup", round(mine / reference, 1), key=name)


if __name__ == "__main__":
    main()
