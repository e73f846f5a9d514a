"""Gmail emulator throughput: one JSON line per figure. The emulator runs in this process (quota
off) and one aiohttp client sends hand-built multipart batches, as a sync engine would; client
and server share this process, so the figures are a floor for an emulator in its own process.

.venv/bin/python benchmarks/gmail_emulator.py        (about 15 s)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from cluster.emulators.gmail import EmulatorConfig, GmailEmulator

USER = "bench@mailray.test"
MESSAGES = 6_000
BATCH = 50
CONCURRENCY = 4
SECONDS_PER_FIGURE = 3.0
CORPUS = Path("/work/shared/corpora/spamassassin")


def _emit(figure: str, value: float, **detail: object) -> None:
    line = {"benchmark": "gmail_emulator", "figure": figure, **detail, "value": round(value, 1)}
    print(json.dumps(line), flush=True)


def batch_body(ids: list[str], fmt: str) -> tuple[str, bytes]:
    boundary = "batch_" + uuid.uuid4().hex
    chunks = []
    for index, message_id in enumerate(ids):
        chunks.append(
            f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <item{index}>\r\n\r\n"
            f"GET /gmail/v1/users/me/messages/{message_id}?format={fmt} HTTP/1.1\r\n\r\n"
        )
    chunks.append(f"--{boundary}--\r\n")
    return f"multipart/mixed; boundary={boundary}", "".join(chunks).encode()


def split_batch_response(content_type: str, body: bytes) -> list[tuple[int, bytes]]:
    """(status, JSON body) of each part: what a client has to do at the least."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    parts = []
    for piece in body.split(b"--" + boundary)[1:]:
        if piece.startswith(b"--"):
            break
        _, _, inner = piece.partition(b"\r\n\r\n")
        status_line, _, rest = inner.partition(b"\r\n")
        _, _, content = rest.partition(b"\r\n\r\n")
        parts.append((int(status_line.split()[1]), content.rstrip(b"\r\n")))
    return parts


async def list_all(session: aiohttp.ClientSession, base: str) -> tuple[list[str], float]:
    ids: list[str] = []
    token: str | None = None
    started = time.perf_counter()
    pages = 0
    while True:
        params = {"maxResults": "500", "includeSpamTrash": "true", **({"pageToken": token} if token else {})}
        async with session.get(f"{base}/gmail/v1/users/me/messages", params=params) as response:
            page: dict[str, Any] = msgspec.json.decode(await response.read())
        pages += 1
        ids += [item["id"] for item in page.get("messages", [])]
        token = page.get("nextPageToken")
        if token is None:
            return ids, pages / (time.perf_counter() - started)


async def batched_gets(
    session: aiohttp.ClientSession, base: str, ids: list[str], fmt: str
) -> tuple[float, int]:
    """Messages per second over SECONDS_PER_FIGURE, CONCURRENCY batches in flight; and failures."""
    batches = [ids[start : start + BATCH] for start in range(0, len(ids), BATCH)]
    done = failures = 0
    deadline = time.perf_counter() + SECONDS_PER_FIGURE
    position = 0

    async def worker() -> None:
        nonlocal done, failures, position
        while time.perf_counter() < deadline:
            chunk = batches[position % len(batches)]
            position += 1
            content_type, body = batch_body(chunk, fmt)
            async with session.post(
                f"{base}/batch", data=body, headers={"Content-Type": content_type}
            ) as response:
                payload = await response.read()
                parts = split_batch_response(response.headers["Content-Type"], payload)
            for status, content in parts:
                if status == 200:
                    msgspec.json.decode(content)
                    done += 1
                else:
                    failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - started), failures


async def main(with_corpus: bool) -> None:
    async with GmailEmulator(EmulatorConfig(quota="off")) as gmail:
        started = time.perf_counter()
        gmail.generate(USER, MESSAGES, seed=7)
        _emit("generate_messages_per_s", MESSAGES / (time.perf_counter() - started), messages=MESSAGES)
        token = gmail.issue_tokens(USER)["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(gmail.base_url, headers=headers, connector=connector) as session:
            ids, pages_per_s = await list_all(session, "")
            _emit("list_pages_per_s", pages_per_s, max_results=500, messages=len(ids))
            for fmt in ("raw", "raw", "minimal", "full"):  # the first raw pass also encodes base64 once
                rate, failures = await batched_gets(session, "", ids, fmt)
                _emit(
                    "batched_get_messages_per_s",
                    rate,
                    format=fmt,
                    batch=BATCH,
                    concurrency=CONCURRENCY,
                    failures=failures,
                )
        average = sum(len(gmail.raw(USER, message_id)) for message_id in ids) / len(ids)
        _emit("average_message_bytes", average)
        if with_corpus:
            await corpus_pass(gmail)


async def corpus_pass(gmail: GmailEmulator) -> None:
    """The SpamAssassin corpus (real mail, 5 KB on average): loading, and one cold pass of raw
    gets (each message parsed once for its snippet and base64-encoded once)."""
    user = "corpus@mailray.test"
    started = time.perf_counter()
    count = gmail.load_mailbox(user, CORPUS)
    _emit(
        "load_messages_per_s", count / (time.perf_counter() - started), messages=count, source="spamassassin"
    )
    token = gmail.issue_tokens(user)["access_token"]
    ids = list(gmail.state(user))
    batches = [ids[start : start + BATCH] for start in range(0, len(ids), BATCH)]
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(gmail.base_url, headers=headers) as session:
        queue = list(reversed(batches))
        done = 0

        async def worker() -> None:
            nonlocal done
            while queue:
                content_type, body = batch_body(queue.pop(), "raw")
                async with session.post(
                    "/batch", data=body, headers={"Content-Type": content_type}
                ) as response:
                    parts = split_batch_response(response.headers["Content-Type"], await response.read())
                done += sum(1 for status, content in parts if status == 200 and msgspec.json.decode(content))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        rate = done / (time.perf_counter() - started)
    _emit("batched_get_messages_per_s", rate, format="raw", source="spamassassin", cold=True, messages=done)


if __name__ == "__main__":
    asyncio.run(main(CORPUS.is_dir()))
