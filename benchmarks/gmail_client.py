"""Messages per second that GmailClient.get_messages(format="raw") fetches from the emulator.

The in-process Gmail emulator (quota off, no faults) serves a generated mailbox; the client
fetches every message in batches over HTTP, as the sync does (50 per batch, 4 batches in flight
by default). Client and emulator share one event loop and this machine's cores, so the figures
measure the client's own overhead (requests built from the discovery document, multipart
encoding and decoding, JSON and base64url) plus the emulator's, not Gmail: Gmail's quota allows
about 50 messages/s per user (legacy) or 5 (2026). The figures with 20 ms of added latency per
HTTP request show what batches in flight buy on a real network. Best of 3 runs per figure.
Prints one JSON line per figure; takes about 15 s.

    .venv/bin/python benchmarks/gmail_client.py
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import msgspec

from cluster.emulators.gmail import EmulatorConfig, GmailEmulator
from mail.gmail.client import GmailClient
from models.gmail import GmailMessage, TokenSet
from models.settings import GmailSettings

EMAIL = "bench@acme.test"
MESSAGES = 5_000
ROUNDS = 3
# (batch size, batches in flight, added latency per HTTP request in ms)
FIGURES = ((50, 4, 0.0), (100, 4, 0.0), (50, 1, 0.0), (50, 4, 20.0), (50, 1, 20.0))


async def _all_ids(client: GmailClient) -> list[str]:
    ids: list[str] = []
    page_token: str | None = None
    while True:
        page = await client.list_messages(page_token=page_token)
        ids += [ref.id for ref in page.messages]
        page_token = page.next_page_token
        if page_token is None:
            return ids


async def _figure(
    emulator: GmailEmulator, batch_size: int, concurrency: int, latency_ms: float
) -> dict[str, object]:
    base = emulator.base_url
    settings = msgspec.structs.replace(
        GmailSettings(),
        api_endpoint=base,
        oauth_token_uri=f"{base}/token",
        client_id="mailray-dev",
        client_secret="mailray-dev-secret",
        batch_size=batch_size,
        max_concurrent_batches=concurrency,
    )
    issued = emulator.issue_tokens(EMAIL)
    tokens = TokenSet(
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=datetime.now(UTC) + timedelta(seconds=issued["expires_in"]),
    )
    async with GmailClient(settings, tokens, email=EMAIL, quota=None) as client:
        ids = await _all_ids(client)
        await client.get_messages(ids[:200])  # warm: connections, the discovery service
        emulator.set_faults(latency_ms=latency_ms)
        best = 0.0
        raw_bytes = 0
        for _ in range(ROUNDS):
            began = time.perf_counter()
            results = await client.get_messages(ids, format="raw")
            elapsed = time.perf_counter() - began
            fetched = [result for result in results if isinstance(result, GmailMessage)]
            assert len(fetched) == len(ids)
            raw_bytes = sum(len(result.raw or b"") for result in fetched)
            best = max(best, len(ids) / elapsed)
        emulator.set_faults(latency_ms=0.0)
    return {
        "benchmark": "gmail.client",
        "figure": "get_messages_raw",
        "batch_size": batch_size,
        "concurrency": concurrency,
        "latency_ms": latency_ms,
        "messages": len(ids),
        "average_raw_bytes": round(raw_bytes / len(ids)),
        "messages_per_s": round(best),
        "quota": "off",
        "server": "in-process emulator",
    }


async def main() -> None:
    async with GmailEmulator(EmulatorConfig(quota="off")) as emulator:
        emulator.generate(EMAIL, MESSAGES, seed=1)
        for batch_size, concurrency, latency_ms in FIGURES:
            figure = await _figure(emulator, batch_size, concurrency, latency_ms)
            print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
