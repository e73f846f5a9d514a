"""Throughput and latency of the Redis token-bucket limiter, from 1 and 4 OS processes.

Every process has its own client and calls the limiter in a loop, one call in flight at a time,
against one shared bucket large enough to grant every call (the granting path writes, so it is
the slower one). Prints one JSON line per figure. Redis comes from MAILRAY_REDIS__URL (default
redis://127.0.0.1:6379/0); the whole run takes about 10 s.

    .venv/bin/python benchmarks/ratelimit.py
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import statistics
import time
import uuid
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from mail.store.ratelimit import KEY_PREFIX, RateLimiter, TokenBucket
from mail.store.redis_client import create_redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"
SECONDS_PER_FIGURE = 2.5
WARMUP_S = 0.3
# Large enough that no call is refused within a figure: this measures the limiter, not the limit.
HUGE = 1e12


async def _loop(url: str, buckets: list[TokenBucket], start: Barrier) -> tuple[list[float], int]:
    client = create_redis(url)
    limiter = RateLimiter(client)
    try:
        await client.ping()
        start.wait(timeout=30)
        warm_until = time.perf_counter() + WARMUP_S
        while time.perf_counter() < warm_until:  # script cached, connection warm
            await limiter.try_acquire_all(buckets)
        latencies: list[float] = []
        granted = 0
        deadline = time.perf_counter() + SECONDS_PER_FIGURE
        while (began := time.perf_counter()) < deadline:
            grant = await limiter.try_acquire_all(buckets)
            latencies.append(time.perf_counter() - began)
            granted += grant.allowed
        return latencies, granted
    finally:
        await client.aclose()


def _worker(url: str, buckets: list[TokenBucket], start: Barrier, results: Queue[object]) -> None:
    try:
        results.put(asyncio.run(_loop(url, buckets, start)))
    except BaseException as exc:
        results.put(repr(exc))
        raise


def _figure(url: str, name: str, processes: int, bucket_count: int) -> dict[str, object]:
    buckets = [
        TokenBucket(f"bench:{uuid.uuid4().hex}", rate_per_s=HUGE, capacity=HUGE) for _ in range(bucket_count)
    ]
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    results: Queue[object] = context.Queue()
    workers = [
        context.Process(target=_worker, args=(url, buckets, start, results), daemon=True)
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=30) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
        asyncio.run(_delete(url, buckets))
    latencies: list[float] = []
    granted = 0
    for outcome in outcomes:
        if not isinstance(outcome, tuple):
            raise SystemExit(f"{name}: a worker failed: {outcome}")
        latencies += outcome[0]
        granted += outcome[1]
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "benchmark": name,
        "processes": processes,
        "buckets": bucket_count,
        "calls": len(latencies),
        "granted": granted,
        "calls_per_s": round(len(latencies) / SECONDS_PER_FIGURE),
        "p50_ms": round(cuts[49] * 1000, 3),
        "p99_ms": round(cuts[98] * 1000, 3),
        "cpu_count": os.cpu_count(),
    }


async def _delete(url: str, buckets: list[TokenBucket]) -> None:
    client = create_redis(url)
    try:
        await client.delete(*(KEY_PREFIX + bucket.key for bucket in buckets))
    finally:
        await client.aclose()


def main() -> None:
    url = os.environ.get("MAILRAY_REDIS__URL") or DEFAULT_URL
    for name, processes, bucket_count in (
        ("ratelimit.try_acquire", 1, 1),
        ("ratelimit.try_acquire", 4, 1),
        ("ratelimit.try_acquire_all", 1, 3),
    ):
        print(json.dumps(_figure(url, name, processes, bucket_count)), flush=True)


if __name__ == "__main__":
    main()
