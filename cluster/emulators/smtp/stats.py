"""Counters of one sink run, so tests and benchmarks can assert on what happened."""

from __future__ import annotations

import msgspec


class SinkStats(msgspec.Struct, kw_only=True):
    accepted: int = 0  # messages accepted at DATA and stored
    accepted_recipients: int = 0  # recipients of those messages (async bounces included)
    accepted_bytes: int = 0
    rejected: dict[str, int] = msgspec.field(default_factory=dict)  # refused RCPT TOs by code: {"550": 3}
    rejected_total: int = 0
    connections: int = 0  # TCP connections accepted
    connections_open: int = 0
    sessions: int = 0  # connections that said HELO or EHLO
    transactions: int = 0  # MAIL FROM commands accepted
    resets: int = 0  # RSET commands
    closed_by_421: int = 0  # connections the sink closed after a 421 reply
    auth_successes: int = 0
    auth_failures: int = 0
    bounces_pending: int = 0  # DSNs scheduled and not yet delivered
    dsns_delivered: int = 0
    dsns_failed: int = 0  # the DSN maildir could not be written
    dsns_skipped: int = 0  # bounces of null-sender mail: no DSN is sent to <> (RFC 3464 2.1)

    def reject(self, code: int) -> None:
        key = str(code)
        self.rejected[key] = self.rejected.get(key, 0) + 1
        self.rejected_total += 1
