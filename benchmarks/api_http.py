"""Requests per second of the running API (start it with `make run`), through its ingress.

MAILRAY_API_URL (default http://127.0.0.1:8000) and MAILRAY_API_KEY (for /v1/me; skipped when
unset). Bounded: 8 s per route, 32 concurrent connections. Prints one JSON line per route.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time

import aiohttp

API_URL = os.environ.get("MAILRAY_API_URL", "http://127.0.0.1:8000")
API_KEY = os.environ.get("MAILRAY_API_KEY")
DURATION_S = 8.0
CONCURRENCY = 32


async def _worker(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    deadline: float,
    latencies: list[float],
    statuses: dict[int, int],
) -> None:
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            await response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1
        latencies.append(time.perf_counter() - started)


async def measure(route: str, headers: dict[str, str]) -> None:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + DURATION_S
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _worker(session, API_URL + route, headers, deadline, latencies, statuses)
                for _ in range(CONCURRENCY)
            )
        )
        elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    print(json.dumps({
        "benchmark": "api.http", "route": route, "concurrency": CONCURRENCY, "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed), "p50_ms": round(quantiles[49] * 1000, 2),
        "p99_ms": round(quantiles[98] * 1000, 2), "statuses": statuses,
    }))  # fmt: skip


async def main() -> None:
    try:
        async with aiohttp.ClientSession() as session, session.get(API_URL + "/healthz") as response:
            await response.read()
    except aiohttp.ClientError as error:
        print(
            json.dumps(
                {
                    "benchmark": "api.http",
                    "skipped": f"no API at {API_URL} ({error}); start it with `make run`",
                }
            )
        )
        return
    await measure("/healthz", {})
    if API_KEY:
        await measure("/v1/me", {"Authorization": f"Bearer {API_KEY}"})


if __name__ == "__main__":
    asyncio.run(main())
