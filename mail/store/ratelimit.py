"""Token-bucket rate limits shared by every process and node, kept in Redis.

A bucket holds up to `capacity` tokens and refills at `rate_per_s`; a request takes `cost`
tokens or waits. All the arithmetic happens in one Lua script (`lua/token_bucket.lua`) that
Redis runs atomically against its own clock, so concurrent callers anywhere can never take
more than `capacity + rate_per_s * t` tokens in any window of `t` seconds.

    limiter = RateLimiter(redis)
    gmail = TokenBucket("gmail:send", rate_per_s=2.0, capacity=20)
    account = TokenBucket(f"account:{account_id}:send", rate_per_s=0.5, capacity=5)
    grant = await limiter.try_acquire_all([gmail, account])   # both or neither
    await limiter.acquire(gmail, timeout_s=30)                 # waits, or raises QuotaExceeded
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import Sequence
from importlib import resources

import msgspec
import redis.asyncio
from redis.exceptions import NoScriptError, RedisError

from mail.errors import QuotaExceeded, StorageError, ValidationError

KEY_PREFIX = "mailray:rl:"

# Read once at import; the SHA lets every call go out as EVALSHA (no script text on the wire).
_SCRIPT = resources.files("mail.store").joinpath("lua/token_bucket.lua").read_text(encoding="utf-8")
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode("utf-8"), usedforsecurity=False).hexdigest()

# Sleeps in acquire() are stretched by up to this fraction, at random, so callers refused at
# the same moment do not all come back at the same moment and refuse each other again.
DEFAULT_JITTER = 0.1
# Never sleep less than this between tries: a retry_after of a few microseconds (float rounding)
# would otherwise turn acquire() into a busy loop against Redis.
_MIN_SLEEP_S = 0.001


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class TokenBucket(msgspec.Struct, frozen=True):
    """The spec of one bucket: its name and its limits (the state lives in Redis).

    `key` names the bucket (stored as `mailray:rl:<key>`); every caller using the same key
    shares the same tokens, so callers must agree on rate and capacity for a key.
    """

    key: str
    rate_per_s: float
    capacity: float

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValidationError("a token bucket needs a non-empty key", field="key")
        if not _is_number(self.rate_per_s) or self.rate_per_s <= 0:
            raise ValidationError(
                f"rate_per_s of bucket {self.key!r} must be a positive number, got {self.rate_per_s!r}",
                field="rate_per_s",
            )
        if not _is_number(self.capacity) or self.capacity < 1:
            raise ValidationError(
                f"capacity of bucket {self.key!r} must be a number >= 1, got {self.capacity!r}",
                field="capacity",
            )

    def check_cost(self, cost: float) -> None:
        """Raise ValidationError unless `cost` tokens could ever be granted by this bucket."""
        if not _is_number(cost) or cost <= 0:
            raise ValidationError(f"cost must be a positive number, got {cost!r}", field="cost")
        if cost > self.capacity:
            # Without this check the caller would wait forever: the bucket never holds that many.
            raise ValidationError(
                f"cost {cost} exceeds the capacity {self.capacity} of bucket {self.key!r}, "
                "so it could never be granted",
                field="cost",
            )


class Grant(msgspec.Struct, frozen=True):
    """The answer to one request for tokens.

    `retry_after_s` is 0 when allowed, else the time until the tokens would be there (if nobody
    else takes them first). `tokens_left` is the lowest balance among the buckets asked, after
    this request. `server_time_s` is Redis's clock when the request was decided.
    """

    allowed: bool
    retry_after_s: float
    tokens_left: float
    server_time_s: float


class RateLimiter:
    """Takes tokens from buckets in Redis, one atomic script call per request."""

    def __init__(
        self, client: redis.asyncio.Redis, *, prefix: str = KEY_PREFIX, jitter: float = DEFAULT_JITTER
    ) -> None:
        if not _is_number(jitter) or jitter < 0:
            raise ValidationError(f"jitter must be a number >= 0, got {jitter!r}", field="jitter")
        self._client = client
        self._prefix = prefix
        self._jitter = jitter

    async def try_acquire(self, bucket: TokenBucket, cost: float = 1) -> Grant:
        """Take `cost` tokens from `bucket` if it has them now; never waits."""
        return await self.try_acquire_all((bucket,), cost)

    async def try_acquire_all(self, buckets: Sequence[TokenBucket], cost: float = 1) -> Grant:
        """Take `cost` tokens from every bucket, or from none when any one of them is short.

        Typical: a global, a per-domain and a per-account bucket for one outgoing message.
        One script call covers them all. (On a Redis Cluster the keys of one call must share a
        hash slot: give them a common `{tag}`.)
        """
        if not buckets:
            raise ValidationError("try_acquire_all needs at least one bucket", field="buckets")
        keys: list[str] = []
        args: list[str] = []
        for bucket in buckets:
            bucket.check_cost(cost)
            keys.append(self._prefix + bucket.key)
            # repr() of a float round-trips exactly and Lua's tonumber reads it.
            args += (repr(float(bucket.rate_per_s)), repr(float(bucket.capacity)), repr(float(cost)))
        if len(set(keys)) != len(keys):
            # The script would read the same state twice and take only one cost from it.
            raise ValidationError("the same bucket is listed twice", field="buckets")
        return _parse_reply(await self._run(keys, args))

    async def acquire(self, bucket: TokenBucket, cost: float = 1, *, timeout_s: float | None = None) -> Grant:
        """Take `cost` tokens from `bucket`, sleeping until they are there.

        Raises QuotaExceeded (with `retry_after_s`) as soon as the wait would outlast
        `timeout_s`, instead of sleeping until the deadline first. None waits as long as it takes.
        """
        return await self.acquire_all((bucket,), cost, timeout_s=timeout_s)

    async def acquire_all(
        self, buckets: Sequence[TokenBucket], cost: float = 1, *, timeout_s: float | None = None
    ) -> Grant:
        """`acquire` over several buckets at once, all or none, like `try_acquire_all`."""
        if timeout_s is not None and (not _is_number(timeout_s) or timeout_s < 0):
            raise ValidationError(f"timeout_s must be None or >= 0, got {timeout_s!r}", field="timeout_s")
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            grant = await self.try_acquire_all(buckets, cost)
            if grant.allowed:
                return grant
            # Jitter spreads retries, it guards nothing: a non-cryptographic generator is right.
            stretch = 1 + random.uniform(0, self._jitter)  # noqa: S311
            sleep_s = max(_MIN_SLEEP_S, grant.retry_after_s * stretch)
            if deadline is not None and loop.time() + sleep_s > deadline:
                names = ", ".join(bucket.key for bucket in buckets)
                raise QuotaExceeded(
                    f"rate limit of {names}: {cost} token(s) not available within {timeout_s} s",
                    retry_after_s=grant.retry_after_s,
                )
            await asyncio.sleep(sleep_s)

    async def _run(self, keys: list[str], args: list[str]) -> object:
        """EVALSHA the script, loading it with EVAL when this server has not seen it yet."""
        # redis-py retries a command on a dropped connection; should a retried script have run
        # the first time too, its tokens are spent twice. That errs towards refusing, never
        # towards granting more than the limit.
        try:
            try:
                reply: object = await self._client.evalsha(_SCRIPT_SHA, len(keys), *keys, *args)
            except NoScriptError:
                # First use on this server, or its script cache was emptied (restart, failover).
                # EVAL runs the script and caches it, so later calls are EVALSHA hits again.
                reply = await self._client.eval(_SCRIPT, len(keys), *keys, *args)
        except RedisError as exc:
            raise StorageError(f"rate limiter: Redis failed: {exc}") from exc
        return reply


def _parse_reply(reply: object) -> Grant:
    """The script's {allowed, tokens_left, retry_after_us, now_us} as a Grant."""
    if isinstance(reply, list | tuple) and len(reply) == 4:
        allowed, tokens_left, retry_after_us, now_us = reply
        if (
            isinstance(allowed, int)
            and isinstance(retry_after_us, int)
            and isinstance(now_us, int)
            and isinstance(tokens_left, bytes | str)
        ):
            try:
                left = float(tokens_left)
            except ValueError:
                pass
            else:
                return Grant(
                    allowed=allowed == 1,
                    retry_after_s=retry_after_us / 1_000_000,
                    tokens_left=left,
                    server_time_s=now_us / 1_000_000,
                )
    raise StorageError(f"rate limiter: unexpected reply from Redis: {reply!r}")
