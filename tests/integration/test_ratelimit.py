"""The token-bucket limiter against a real Redis, from one process and from several at once."""

from __future__ import annotations

import asyncio
import bisect
import multiprocessing
import queue
import time
import uuid
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import pytest
import redis.asyncio

import mail.store.ratelimit as ratelimit
from mail.errors import QuotaExceeded
from mail.store.ratelimit import KEY_PREFIX, RateLimiter, TokenBucket
from mail.store.redis_client import create_redis

pytestmark = [pytest.mark.integration, pytest.mark.storage]


def _bucket(rate_per_s: float, capacity: float) -> TokenBucket:
    # A fresh key per bucket: tests never share state, so nothing needs flushing.
    return TokenBucket(f"test:{uuid.uuid4().hex}", rate_per_s=rate_per_s, capacity=capacity)


@pytest.fixture
def limiter(redis_client: redis.asyncio.Redis) -> RateLimiter:
    return RateLimiter(redis_client)


async def test_burst_of_capacity_then_refused(
    limiter: RateLimiter, redis_client: redis.asyncio.Redis
) -> None:
    bucket = _bucket(rate_per_s=1, capacity=5)
    grants = [await limiter.try_acquire(bucket) for _ in range(5)]
    assert all(grant.allowed for grant in grants)
    assert [round(grant.tokens_left) for grant in grants] == [4, 3, 2, 1, 0]
    assert all(grant.retry_after_s == 0 for grant in grants)
    assert abs(grants[0].server_time_s - time.time()) < 60  # the server's clock, in seconds

    refused = await limiter.try_acquire(bucket)
    assert not refused.allowed
    assert 0.5 < refused.retry_after_s <= 1.0  # one token at 1/s, less what trickled in meanwhile
    assert refused.tokens_left < 0.5

    # The state lives under the prefix and vanishes once a full refill would have happened.
    ttl_ms = await redis_client.pttl(KEY_PREFIX + bucket.key)
    assert 0 < ttl_ms <= 5 * 1000 + 1000


async def test_refills_with_time(limiter: RateLimiter) -> None:
    bucket = _bucket(rate_per_s=20, capacity=2)
    assert (await limiter.try_acquire(bucket, cost=2)).allowed
    refused = await limiter.try_acquire(bucket)
    assert not refused.allowed
    assert 0 < refused.retry_after_s <= 0.05
    await asyncio.sleep(refused.retry_after_s + 0.01)
    assert (await limiter.try_acquire(bucket)).allowed
    await asyncio.sleep(0.15)  # 3 tokens' worth of time, but the bucket holds only 2
    assert (await limiter.try_acquire(bucket, cost=2)).allowed
    assert not (await limiter.try_acquire(bucket, cost=0.5)).allowed


async def test_fractional_costs(limiter: RateLimiter) -> None:
    bucket = _bucket(rate_per_s=0.01, capacity=1)
    assert (await limiter.try_acquire(bucket, cost=0.25)).allowed
    second = await limiter.try_acquire(bucket, cost=0.5)
    assert second.allowed
    assert second.tokens_left == pytest.approx(0.25, abs=0.01)
    assert not (await limiter.try_acquire(bucket, cost=0.5)).allowed


async def test_all_or_none_across_buckets(limiter: RateLimiter, redis_client: redis.asyncio.Redis) -> None:
    global_bucket = _bucket(rate_per_s=0.01, capacity=5)
    domain = _bucket(rate_per_s=0.01, capacity=3)
    account = _bucket(rate_per_s=0.01, capacity=1)
    buckets = [global_bucket, domain, account]

    first = await limiter.try_acquire_all(buckets)
    assert first.allowed
    assert first.tokens_left == pytest.approx(0, abs=0.01)  # the lowest balance: the account's

    refused = await limiter.try_acquire_all(buckets)
    assert not refused.allowed
    assert refused.retry_after_s > 90  # the account needs ~100 s at 0.01/s; the longest wait wins

    # The refusal took nothing from the buckets that still had tokens.
    for bucket, left in ((global_bucket, 4), (domain, 2)):
        stored = await redis_client.hget(KEY_PREFIX + bucket.key, "tokens")
        assert stored is not None
        assert float(stored) == pytest.approx(left)
    assert (await limiter.try_acquire_all([global_bucket, domain], cost=2)).allowed
    grant = await limiter.try_acquire(domain)
    assert not grant.allowed  # 3 - 1 - 2 = 0 left
    assert (await limiter.try_acquire(global_bucket, cost=2)).tokens_left == pytest.approx(0, abs=0.01)


async def test_acquire_waits_then_succeeds(limiter: RateLimiter) -> None:
    bucket = _bucket(rate_per_s=10, capacity=1)
    assert (await limiter.try_acquire(bucket)).allowed
    started = time.monotonic()
    grant = await limiter.acquire(bucket, timeout_s=2)
    waited = time.monotonic() - started
    assert grant.allowed
    assert 0.08 <= waited < 1.0


async def test_acquire_raises_when_the_wait_outlasts_the_timeout(limiter: RateLimiter) -> None:
    bucket = _bucket(rate_per_s=0.1, capacity=1)
    assert (await limiter.try_acquire(bucket)).allowed
    started = time.monotonic()
    with pytest.raises(QuotaExceeded) as caught:
        await limiter.acquire(bucket, timeout_s=0.5)
    # It gives up at once rather than sleeping out a timeout it already knows is too short.
    assert time.monotonic() - started < 0.4
    assert caught.value.retry_after_s is not None
    assert 9 < caught.value.retry_after_s <= 10


async def test_script_is_loaded_when_the_server_lacks_it(
    limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A SHA the server has never seen behaves like a flushed script cache: NOSCRIPT, then EVAL.
    monkeypatch.setattr(ratelimit, "_SCRIPT_SHA", "0" * 40)
    bucket = _bucket(rate_per_s=1, capacity=2)
    assert (await limiter.try_acquire(bucket, cost=2)).allowed
    assert not (await limiter.try_acquire(bucket)).allowed


# --- Several OS processes hammering one bucket -------------------------------------------------

HAMMER_PROCESSES = 4
HAMMER_SECONDS = 2.0
HAMMER_RATE = 200.0
HAMMER_CAPACITY = 20.0


def _hammer(url: str, bucket: TokenBucket, start: Barrier, results: Queue[object]) -> None:
    """Child process: its own client, try_acquire in a loop; report the granted server times."""
    try:
        results.put(asyncio.run(_hammer_async(url, bucket, start)))
    except BaseException as exc:
        results.put(repr(exc))
        raise


async def _hammer_async(url: str, bucket: TokenBucket, start: Barrier) -> tuple[list[float], int]:
    client = create_redis(url)
    limiter = RateLimiter(client)
    try:
        await client.ping()  # connect before the start line, so every process begins at once
        start.wait(timeout=60)
        granted: list[float] = []
        calls = 0
        deadline = time.monotonic() + HAMMER_SECONDS
        while time.monotonic() < deadline:
            grant = await limiter.try_acquire(bucket)
            calls += 1
            if grant.allowed:
                granted.append(grant.server_time_s)
        return granted, calls
    finally:
        await client.aclose()


def test_processes_sharing_a_bucket_never_exceed_the_limit(redis_url: str) -> None:
    bucket = _bucket(rate_per_s=HAMMER_RATE, capacity=HAMMER_CAPACITY)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(HAMMER_PROCESSES)
    results: Queue[object] = context.Queue()
    processes = [
        context.Process(target=_hammer, args=(redis_url, bucket, start, results), daemon=True)
        for _ in range(HAMMER_PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes: list[object] = []
    try:
        for _ in processes:
            outcomes.append(results.get(timeout=90))
    except queue.Empty:
        pytest.fail(f"a hammering process did not report; got {outcomes!r}")
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    errors = [outcome for outcome in outcomes if isinstance(outcome, str)]
    assert not errors, errors

    times: list[float] = []
    calls = 0
    for outcome in outcomes:
        assert isinstance(outcome, tuple)
        granted, made = outcome
        times += granted
        calls += made
    times.sort()
    assert calls > len(times), "every call was granted: the bucket was never contended"
    span = times[-1] - times[0]
    assert span > HAMMER_SECONDS / 2

    # No window of w seconds, starting at any grant, holds more than the burst plus w's refill.
    # Grants are stamped with the server clock inside the script, so this holds exactly (+1 for
    # the float rounding of the stamps).
    for window in (0.1, 0.25, 0.5, 1.0, span):
        limit = HAMMER_CAPACITY + HAMMER_RATE * window + 1
        worst = max(bisect.bisect_right(times, t + window) - i for i, t in enumerate(times))
        assert worst <= limit, f"{worst} grants within {window} s; the limit is {limit:.1f}"

    # And the limiter does grant: close to everything the bucket could give over the span.
    achievable = HAMMER_CAPACITY + HAMMER_RATE * span
    assert len(times) >= 0.8 * achievable, f"{len(times)} grants of {achievable:.0f} achievable"
