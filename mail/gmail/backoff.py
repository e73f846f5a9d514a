"""When to try a Gmail call again: exponential backoff with full jitter, and what the server says.

Attempt n (from 0) waits a uniformly random time in [0, min(cap, base * 2**n)] ("full jitter":
clients refused at the same moment spread out instead of coming back together). When Gmail
says when to come back, in a Retry-After header or in the message "User-rate limit exceeded.
Retry after 2026-05-01T12:00:03.120Z", the wait is at least that long.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import msgspec

BASE_DELAY_S = 0.5
MAX_DELAY_S = 32.0
_RETRY_AFTER_IN_MESSAGE = re.compile(r"retry after\s+(\S+)", re.IGNORECASE)
_SECONDS = re.compile(r"^(\d+(?:\.\d+)?)\s*s?$")


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    base_s: float = BASE_DELAY_S
    cap_s: float = MAX_DELAY_S

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt `attempt` (0 for the first)."""
        return float(min(self.cap_s, self.base_s * 2.0 ** min(attempt, 62)))

    def delay(
        self,
        attempt: int,
        *,
        retry_after_s: float | None = None,
        random_fraction: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before attempt `attempt + 1`, never less than `retry_after_s`."""
        jittered = random_fraction() * self.ceiling(attempt)
        return jittered if retry_after_s is None else max(retry_after_s, jittered)


def _seconds_until(value: str, now: datetime) -> float | None:
    value = value.strip().rstrip(".,;")
    seconds = _SECONDS.match(value)
    if seconds:
        return float(seconds.group(1))
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)  # the HTTP-date form of Retry-After
        except (TypeError, ValueError, IndexError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def retry_after_s(headers: Mapping[str, str], message: str, *, now: datetime | None = None) -> float | None:
    """How long the server asked us to wait: Retry-After, else "Retry after <time>" in `message`."""
    now = now or datetime.now(UTC)
    header = headers.get("retry-after")
    if header:
        waited = _seconds_until(header, now)
        if waited is not None and math.isfinite(waited):
            return waited
    match = _RETRY_AFTER_IN_MESSAGE.search(message)
    if match:
        waited = _seconds_until(match.group(1), now)
        if waited is not None and math.isfinite(waited):
            return waited
    return None
