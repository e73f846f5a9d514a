"""Gmail quota as shared Redis token buckets: one per user, one per project.

Every Gmail call is charged before it leaves (a batch costs the sum of its parts, priced by
`mail.gmail.quota_costs`), against `gmail:user:<email>` and `gmail:project:<project>` together,
all or none (`RateLimiter.acquire_all`), so every actor on every node draws from the same
tokens and an account runs at its quota, not over it.

Sizing. A bucket of capacity c refilling at r lets through at most c + r*t units in any t
seconds. Gmail counts a user's units per window of W seconds (legacy: 250 per second; 2026:
6,000 per minute); the emulator enforces that as a token bucket holding one window's units.
Requests can reach the server closer together than their tokens were granted here (network,
event loops), by up to `ARRIVAL_JITTER_S`, so both sizings keep that much in reserve:

- a short window (legacy: 250 units in 1 s, while one batch of 50 messages.get alone costs
  250): capacity = one window's units less what the jitter may bring early (250 - 125 = 125),
  rate = 97% of the quota's rate. The server's bucket then always holds at least 125 units more
  than ours, and a batch holds at most 25 messages.get;
- a long window (2026: 6,000 units per 60 s): capacity = one second's units (100), rate =
  what the rest of the window allows, c + r * (W + jitter) <= units per window, so even a strict
  per-minute count never overflows; a batch then holds at most 5 messages.get (20 units each),
  which at 5 messages/s is a batch a second anyway.

Either way the account runs at 97-98% of its quota (`BucketSize.utilisation`); `max_parts`
tells the client how many calls of a method fit in one batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import msgspec
import redis.asyncio
from redis.exceptions import RedisError

from mail.errors import ConfigError, StorageError, ValidationError
from mail.gmail.api_request import ApiRequest
from mail.gmail.quota_costs import REGIMES, QuotaRegime
from mail.store.ratelimit import KEY_PREFIX, Grant, RateLimiter, TokenBucket
from models.settings import GmailSettings

# Requests can reach the server this much closer together than their tokens were granted. On a
# busy 2-core machine (Ray, Postgres and the server on the same cores) 0.1 s was not enough:
# a sync actor killed and restarted under load drew thousands of 429s; 0.5 s drew none.
ARRIVAL_JITTER_S = 0.5
# Short windows: the sustained rate, as a fraction of the quota's rate.
SHORT_WINDOW_RATE_FRACTION = 0.97
# A window this short is spent by one batch: size for the server's bucket, not for the window.
SHORT_WINDOW_S = 1.0
PROJECT_WINDOW_S = 60.0


class BucketSize(msgspec.Struct, frozen=True, kw_only=True):
    rate_per_s: float
    capacity: float

    def utilisation(self, units_per_window: float, window_s: float) -> float:
        """The sustained rate as a fraction of the quota's average rate."""
        return self.rate_per_s / (units_per_window / window_s)


def bucket_size(
    units_per_window: float, window_s: float, *, jitter_s: float = ARRIVAL_JITTER_S
) -> BucketSize:
    """A bucket that keeps the account within `units_per_window` per `window_s` (see above)."""
    if units_per_window <= 0 or window_s <= 0:
        raise ValidationError("a quota needs positive units and window", field="quota")
    per_second = units_per_window / window_s
    if window_s <= SHORT_WINDOW_S:
        return BucketSize(
            rate_per_s=per_second * SHORT_WINDOW_RATE_FRACTION,
            capacity=max(1.0, units_per_window - per_second * jitter_s),
        )
    burst = max(1.0, min(per_second, units_per_window / 2))
    return BucketSize(rate_per_s=(units_per_window - burst) / (window_s + jitter_s), capacity=burst)


class _Counters(msgspec.Struct, kw_only=True):
    units: int = 0
    charges: int = 0
    wait_s: float = 0.0


class GmailQuota:
    """Charges Gmail calls to the per-user and per-project buckets, waiting for tokens."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        settings: GmailSettings,
        *,
        project: str = "default",
        timeout_s: float | None = None,
    ) -> None:
        if settings.quota_regime not in REGIMES:
            raise ConfigError(
                f"settings: gmail.quota_regime (MAILRAY_GMAIL__QUOTA_REGIME): no quota to keep for {settings.quota_regime!r}"
            )
        self.regime: QuotaRegime = REGIMES[settings.quota_regime]
        self.project = project
        self._client = client
        self._limiter = RateLimiter(client)
        self._timeout_s = timeout_s
        self.user_size = bucket_size(self.regime.user_units, self.regime.user_window_s)
        self.project_size = bucket_size(settings.project_units_per_minute, PROJECT_WINDOW_S)
        self.project_bucket = TokenBucket(
            f"gmail:project:{project}",
            rate_per_s=self.project_size.rate_per_s,
            capacity=self.project_size.capacity,
        )
        self._counters: dict[str, _Counters] = {}

    def user_bucket(self, email: str) -> TokenBucket:
        return TokenBucket(
            f"gmail:user:{email.lower()}",
            rate_per_s=self.user_size.rate_per_s,
            capacity=self.user_size.capacity,
        )

    def cost(self, requests: Sequence[ApiRequest]) -> int:
        """Units of `requests` sent together (a batch costs the sum of its parts)."""
        return sum(self.regime.cost(request.method_id) for request in requests)

    def max_parts(self, method_id: str) -> int:
        """How many calls of `method_id` one batch may hold: half a bucket, so the next batch's
        tokens refill while this one is in flight (a whole-bucket batch waits for an empty
        bucket to fill every time: measured 94.7% of the quota rate, against 97% at half)."""
        capacity = min(self.user_size.capacity, self.project_size.capacity) / 2
        return max(1, math.floor(capacity / self.regime.cost(method_id)))

    def _counter(self, email: str) -> _Counters:
        return self._counters.setdefault(email.lower(), _Counters())

    async def charge(self, email: str, requests: Sequence[ApiRequest]) -> Grant:
        """Take the units of `requests` from the user's and the project's buckets, waiting as needed."""
        units = self.cost(requests)
        began = time.monotonic()
        grant = await self._limiter.acquire_all(
            (self.user_bucket(email), self.project_bucket), units, timeout_s=self._timeout_s
        )
        counter = self._counter(email)
        counter.units += units
        counter.charges += 1
        counter.wait_s += time.monotonic() - began
        return grant

    async def _levels(self, buckets: Sequence[TokenBucket]) -> list[float]:
        """Current balances, computed as the token bucket script would (read-only)."""
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for bucket in buckets:
                    pipe.hmget(KEY_PREFIX + bucket.key, "tokens", "updated_us")
                pipe.time()
                replies = await pipe.execute()
        except RedisError as exc:
            raise StorageError(f"Gmail quota: Redis failed: {exc}") from exc
        seconds, micros = replies[-1]
        now_us = int(seconds) * 1_000_000 + int(micros)
        levels: list[float] = []
        for bucket, (tokens, updated_us) in zip(buckets, replies[:-1], strict=True):
            if tokens is None or updated_us is None:
                levels.append(bucket.capacity)
                continue
            elapsed_us = max(0, now_us - int(updated_us))
            levels.append(min(bucket.capacity, float(tokens) + elapsed_us * bucket.rate_per_s / 1e6))
        return levels

    async def usage(self, email: str) -> dict[str, float | int | str]:
        """Buckets and counters of `email` for sync diagnostics (tokens from Redis, counts local)."""
        user = self.user_bucket(email)
        user_tokens, project_tokens = await self._levels((user, self.project_bucket))
        counter = self._counter(email)
        return {
            "regime": self.regime.name,
            "user_bucket": user.key,
            "user_tokens": round(user_tokens, 3),
            "user_capacity": user.capacity,
            "user_rate_per_s": round(user.rate_per_s, 3),
            "project_bucket": self.project_bucket.key,
            "project_tokens": round(project_tokens, 3),
            "project_capacity": self.project_bucket.capacity,
            "project_rate_per_s": round(self.project_bucket.rate_per_s, 3),
            "units_charged": counter.units,
            "charges": counter.charges,
            "wait_s": round(counter.wait_s, 3),
        }
