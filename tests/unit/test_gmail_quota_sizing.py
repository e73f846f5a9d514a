"""Quota bucket sizing: at the quota, never over it, whatever the mix of calls and jitter."""

from __future__ import annotations

import random
from collections import deque
from typing import Any, cast

import msgspec
import pytest
import redis.asyncio

from mail.errors import ValidationError
from mail.gmail.discovery import GmailRequests
from mail.gmail.quota import ARRIVAL_JITTER_S, BucketSize, GmailQuota, bucket_size
from mail.gmail.quota_costs import LEGACY, REGIME_2026, QuotaRegime
from models.settings import GmailSettings


class _NoRedis:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Redis was called ({name})")


def _quota(regime: str = "legacy", **settings: Any) -> GmailQuota:
    gmail = msgspec.structs.replace(GmailSettings(), quota_regime=regime, **settings)
    return GmailQuota(cast(redis.asyncio.Redis, _NoRedis()), gmail, project="acme")


def _grant_times(size: BucketSize, costs: list[int]) -> list[float]:
    """When a bucket of `size` (starting full) grants `costs` one after another, as soon as it can."""
    level, now, times = size.capacity, 0.0, []
    for cost in costs:
        if level < cost:
            now += (cost - level) / size.rate_per_s
            level = cost
        level -= cost
        times.append(now)
        # Whatever comes next is granted no sooner than now; the bucket refills meanwhile.
    return times


def _server_refusals(regime: QuotaRegime, arrivals: list[tuple[float, int]]) -> int:
    """The emulator's bucket: one window's units, refilled at the quota's rate."""
    capacity, rate = float(regime.user_units), regime.user_units_per_s
    level, last, refused = capacity, 0.0, 0
    for when, cost in sorted(arrivals):
        level = min(capacity, level + (when - last) * rate)
        last = when
        if level + 1e-9 < cost:
            refused += 1
        else:
            level -= cost
    return refused


def _max_in_window(arrivals: list[tuple[float, int]], window_s: float) -> int:
    """The most units any closed window of `window_s` seconds holds."""
    ordered = sorted(arrivals)
    inside: deque[tuple[float, int]] = deque()
    total = most = 0
    for when, cost in ordered:
        inside.append((when, cost))
        total += cost
        while inside[0][0] < when - window_s:
            total -= inside.popleft()[1]
        most = max(most, total)
    return most


@pytest.mark.parametrize("regime", [LEGACY, REGIME_2026])
def test_sizing_runs_the_account_at_its_quota(regime: QuotaRegime) -> None:
    size = bucket_size(regime.user_units, regime.user_window_s)
    assert 0.95 <= size.utilisation(regime.user_units, regime.user_window_s) < 1
    assert size.capacity <= regime.user_units


def test_legacy_numbers() -> None:
    size = bucket_size(250, 1.0)
    assert size.capacity == 250 - 250 * ARRIVAL_JITTER_S == 125
    assert size.rate_per_s == pytest.approx(242.5)
    quota = _quota("legacy")
    assert quota.max_parts("users.messages.get") == 12  # half the bucket
    assert quota.max_parts("users.history.list") == 31  # more than a batch may hold: the client caps it
    assert quota.max_parts("users.messages.send") == 1


def test_2026_numbers() -> None:
    size = bucket_size(6000, 60.0)
    assert size.capacity == 100
    # Even a strict count per minute (plus the jitter) stays within 6,000.
    assert size.capacity + size.rate_per_s * (60 + ARRIVAL_JITTER_S) == pytest.approx(6000)
    assert size.rate_per_s > 97.5
    quota = _quota("2026")
    assert quota.max_parts("users.messages.get") == 2  # half a 100-unit bucket
    assert quota.max_parts("users.watch") == 1


@pytest.mark.parametrize("regime", [LEGACY, REGIME_2026])
@pytest.mark.parametrize("seed", range(5))
def test_jittered_arrivals_never_exceed_the_servers_bucket(regime: QuotaRegime, seed: int) -> None:
    rng = random.Random(seed)
    size = bucket_size(regime.user_units, regime.user_window_s)
    get = regime.cost("users.messages.get")
    biggest = int(size.capacity // get) * get
    # Full batches of messages.get with a list or history call now and then.
    costs = [rng.choice([biggest, biggest, biggest, 5, 2, get]) for _ in range(400)]
    granted = _grant_times(size, costs)
    arrivals = [
        (when + rng.uniform(0, ARRIVAL_JITTER_S), cost) for when, cost in zip(granted, costs, strict=True)
    ]
    assert _server_refusals(regime, arrivals) == 0
    if regime.user_window_s > 1:
        assert _max_in_window(arrivals, regime.user_window_s) <= regime.user_units
    # ... and close to the quota: units per second over the run.
    assert sum(costs[1:]) / granted[-1] > 0.95 * regime.user_units_per_s


def test_the_full_burst_of_250_would_not_survive_jitter() -> None:
    """Why the legacy capacity is not 250: back-to-back full batches meet a drained server bucket."""
    naive = BucketSize(rate_per_s=250 * 0.99, capacity=250)
    costs = [250] * 50
    rng = random.Random(1)
    arrivals = [(when + rng.uniform(0, ARRIVAL_JITTER_S), 250) for when in _grant_times(naive, costs)]
    assert _server_refusals(LEGACY, arrivals) > 0


def test_buckets_and_costs() -> None:
    quota = _quota("legacy", project_units_per_minute=600_000)
    user = quota.user_bucket("Ana@Acme.test")
    assert user.key == "gmail:user:ana@acme.test"
    assert (user.capacity, user.rate_per_s) == (125, 242.5)
    assert quota.project_bucket.key == "gmail:project:acme"
    assert quota.project_bucket.capacity == 10_000
    requests = GmailRequests("http://h")
    batch = [requests.get_message(f"m{i}") for i in range(25)]
    assert quota.cost(batch) == 125
    assert quota.cost([requests.list_history(1), requests.send_message("x")]) == 102
    assert _quota("2026").cost(batch) == 500


def test_bad_quota() -> None:
    with pytest.raises(ValidationError):
        bucket_size(0, 1)
    with pytest.raises(ValidationError):
        bucket_size(10, 0)
