"""Gmail API quota: the published per-method unit costs and per-user limits, per regime.

"legacy" is the regime of projects created before May 2026 (250 units per user per second);
"2026" the regime of projects created since (6,000 units per user per minute, and
messages.get costs 20). Both the client's limiter and the emulator read this one table.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Regime = Literal["legacy", "2026"]


class QuotaRegime(msgspec.Struct, frozen=True, kw_only=True):
    name: Regime
    user_units: int  # per user per `user_window_s`
    user_window_s: float
    project_units_per_minute: int
    costs: dict[str, int]

    def cost(self, method: str) -> int:
        """Units of one call; `method` as in the discovery document, e.g. users.messages.get."""
        return self.costs.get(method, 5)

    @property
    def user_units_per_s(self) -> float:
        return self.user_units / self.user_window_s


_LEGACY_COSTS: dict[str, int] = {
    "users.getProfile": 1,
    "users.watch": 100,
    "users.stop": 50,
    "users.history.list": 2,
    "users.labels.list": 1,
    "users.labels.get": 1,
    "users.labels.create": 5,
    "users.labels.update": 5,
    "users.labels.patch": 5,
    "users.labels.delete": 5,
    "users.messages.list": 5,
    "users.messages.get": 5,
    "users.messages.send": 100,
    "users.messages.insert": 25,
    "users.messages.import": 25,
    "users.messages.modify": 5,
    "users.messages.batchModify": 50,
    "users.messages.batchDelete": 50,
    "users.messages.trash": 5,
    "users.messages.untrash": 5,
    "users.messages.delete": 10,
    "users.messages.attachments.get": 5,
    "users.threads.list": 10,
    "users.threads.get": 10,
    "users.threads.modify": 10,
    "users.threads.trash": 10,
    "users.threads.untrash": 10,
    "users.threads.delete": 20,
}

LEGACY = QuotaRegime(
    name="legacy",
    user_units=250,
    user_window_s=1.0,
    project_units_per_minute=1_200_000,
    costs=_LEGACY_COSTS,
)

REGIME_2026 = QuotaRegime(
    name="2026",
    user_units=6_000,
    user_window_s=60.0,
    project_units_per_minute=1_200_000,
    costs={**_LEGACY_COSTS, "users.messages.get": 20},
)

REGIMES: dict[str, QuotaRegime] = {"legacy": LEGACY, "2026": REGIME_2026}
