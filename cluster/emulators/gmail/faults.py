"""Injected failures: server errors on API calls, latency and dropped connections.

Decisions come from one seeded random generator, so a run with the same seed and the same
sequence of requests fails the same calls.
"""

from __future__ import annotations

import random

from cluster.emulators.gmail import api_errors
from cluster.emulators.gmail.api_errors import ApiError


class FaultInjector:
    def __init__(self, *, fault_rate: float, latency_ms: float, drop_rate: float, seed: int) -> None:
        self._random = random.Random(seed)  # noqa: S311 - reproducible faults, not security
        self.fault_rate = 0.0
        self.latency_ms = 0.0
        self.drop_rate = 0.0
        self.set(fault_rate=fault_rate, latency_ms=latency_ms, drop_rate=drop_rate)

    def set(
        self,
        *,
        fault_rate: float | None = None,
        latency_ms: float | None = None,
        drop_rate: float | None = None,
    ) -> None:
        if fault_rate is not None:
            if not 0.0 <= fault_rate <= 1.0:
                raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate}")
            self.fault_rate = fault_rate
        if latency_ms is not None:
            if latency_ms < 0:
                raise ValueError(f"latency_ms must not be negative, got {latency_ms}")
            self.latency_ms = latency_ms
        if drop_rate is not None:
            if not 0.0 <= drop_rate <= 1.0:
                raise ValueError(f"drop_rate must be between 0 and 1, got {drop_rate}")
            self.drop_rate = drop_rate

    def fault(self) -> ApiError | None:
        """A 500 backendError or a 503 for `fault_rate` of the calls, else None."""
        if self.fault_rate <= 0.0 or self._random.random() >= self.fault_rate:
            return None
        return api_errors.backend_error() if self._random.random() < 0.5 else api_errors.unavailable()

    def drop(self) -> bool:
        return self.drop_rate > 0.0 and self._random.random() < self.drop_rate

    def chance(self, rate: float) -> bool:
        return rate > 0.0 and self._random.random() < rate
