"""Counters of one emulator run, so tests and benchmarks can assert on what happened."""

from __future__ import annotations

import msgspec


class EmulatorStats(msgspec.Struct, kw_only=True):
    http_requests: int = 0  # every HTTP request but the admin API's
    api_calls: int = 0  # Gmail API calls, each batch part counted
    requests_per_method: dict[str, int] = msgspec.field(default_factory=dict)  # users.messages.get: 12
    units_charged: int = 0
    batch_requests: int = 0
    batch_parts: int = 0
    quota_errors: int = 0  # user and project
    quota_errors_user: int = 0  # 429 rateLimitExceeded
    quota_errors_project: int = 0  # 403 rateLimitExceeded
    auth_failures: int = 0  # 401 on API calls
    faults_injected: int = 0  # 500/503 from fault_rate
    connections_dropped: int = 0  # from drop_rate
    tokens_issued: int = 0  # access tokens from /token (code or refresh) and issue_tokens
    tokens_refreshed: int = 0
    pushes_sent: int = 0  # delivered with a 2xx
    pushes_dropped: int = 0  # from push_drop_rate
    push_failures: int = 0  # the push endpoint failed or did not answer 2xx

    def count_method(self, method: str) -> None:
        self.api_calls += 1
        self.requests_per_method[method] = self.requests_per_method.get(method, 0) + 1
