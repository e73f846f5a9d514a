"""Settings of one Gmail emulator (all changeable at run time through the admin API)."""

from __future__ import annotations

from typing import Literal

import msgspec

QuotaSetting = Literal["legacy", "2026", "off"]


class EmulatorConfig(msgspec.Struct, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, see GmailEmulator.base_url after start()
    # Gmail's quota regime (mail.gmail.quota_costs), or "off" for no limit.
    quota: QuotaSetting = "off"
    # Fraction of API calls (and of batch parts) answered 500 backendError or 503.
    fault_rate: float = 0.0
    # Added to every HTTP request.
    latency_ms: float = 0.0
    # Fraction of HTTP requests whose connection is closed without an answer.
    drop_rate: float = 0.0
    # Where Pub/Sub push envelopes go after users.watch (None: nowhere).
    push_url: str | None = None
    # The `aud` claim of the push requests' OIDC token.
    push_audience: str = "mailray"
    # Fraction of push notifications dropped (Pub/Sub gives no delivery guarantee to rely on).
    push_drop_rate: float = 0.0
    token_ttl_s: int = 3600
    # History records kept per user; a startHistoryId older than the oldest kept answers 404.
    history_retention: int = 100_000
    # OAuth client checked by /token when both are non-empty.
    client_id: str = "mailray-dev"
    client_secret: str = "mailray-dev-secret"  # noqa: S105 - the emulator's well-known dev secret
    # The Google Cloud project: push subscription names and the push service account.
    project: str = "mailray-dev"
    # Seeds fault injection and push drops, so a run can be repeated.
    seed: int = 0

    def __post_init__(self) -> None:
        if self.quota not in {"legacy", "2026", "off"}:
            raise ValueError(f"quota must be legacy, 2026 or off, got {self.quota!r}")
        for name in ("fault_rate", "drop_rate", "push_drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must not be negative, got {self.latency_ms}")
        if self.token_ttl_s <= 0:
            raise ValueError(f"token_ttl_s must be positive, got {self.token_ttl_s}")
        if self.history_retention <= 0:
            raise ValueError(f"history_retention must be positive, got {self.history_retention}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
