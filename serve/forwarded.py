"""The client's address behind HAProxy: the last hop the proxy appended to X-Forwarded-For."""

from __future__ import annotations


def client_ip(forwarded_for: str | None, peer: str | None) -> str | None:
    if forwarded_for:
        return forwarded_for.rsplit(",", 1)[-1].strip() or None
    return peer
