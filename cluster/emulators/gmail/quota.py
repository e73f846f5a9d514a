"""Gmail's usage limits, per user and per project, as token buckets in the emulator's process.

Costs and limits come from mail.gmail.quota_costs (the same table the client's limiter reads).
Each bucket holds one window's units (legacy: 250 per user, refilled per second; 2026: 6,000 per
user, refilled per minute; the project 1,200,000 per minute) and refills continuously. A call that
does not fit is refused and takes nothing from either bucket.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from cluster.emulators.gmail import api_errors
from cluster.emulators.gmail.api_errors import ApiError
from mail.gmail.quota_costs import REGIMES, QuotaRegime


class TokenBucket:
    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, capacity: float, rate_per_s: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate_per_s
        self.tokens = capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def wait_s(self, cost: float) -> float:
        """Seconds until `cost` fits (0 when it fits now); call refill first."""
        return 0.0 if self.tokens >= cost else (cost - self.tokens) / self.rate


def rfc3339_ms(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class QuotaGate:
    def __init__(self, regime: str, project: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.project = project
        self._clock = clock
        self.regime: QuotaRegime | None = None
        self._users: dict[str, TokenBucket] = {}
        self._project: TokenBucket | None = None
        self.set_regime(regime)

    def set_regime(self, regime: str) -> None:
        if regime != "off" and regime not in REGIMES:
            raise ValueError(f"quota must be one of legacy, 2026, off; got {regime!r}")
        self.regime = None if regime == "off" else REGIMES[regime]
        self._users.clear()
        self._project = None
        if self.regime is not None:
            units = self.regime.project_units_per_minute
            self._project = TokenBucket(units, units / 60.0, self._clock())

    @property
    def name(self) -> str:
        return "off" if self.regime is None else self.regime.name

    def cost(self, method: str) -> int:
        return 0 if self.regime is None else self.regime.cost(method)

    def charge(self, user: str, method: str) -> tuple[int, ApiError | None]:
        """(units charged, None) or (0, the 429/403 error) for one call of `method` by `user`."""
        regime = self.regime
        if regime is None or self._project is None:
            return 0, None
        cost = regime.cost(method)
        now = self._clock()
        bucket = self._users.get(user)
        if bucket is None:
            bucket = self._users[user] = TokenBucket(regime.user_units, regime.user_units_per_s, now)
        bucket.refill(now)
        wait = bucket.wait_s(cost)
        if wait > 0:
            return 0, api_errors.user_rate_limited(rfc3339_ms(time.time() + wait))
        self._project.refill(now)
        if self._project.wait_s(cost) > 0:
            return 0, api_errors.project_rate_limited(self.project)
        bucket.tokens -= cost
        self._project.tokens -= cost
        return cost, None
