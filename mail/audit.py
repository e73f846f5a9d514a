"""The audit log writer. Every state-changing API call records a row in the same transaction as
its change, so the log and the data cannot disagree."""

from __future__ import annotations

import ipaddress
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from models.tenancy import Principal, RequestContext

Conn = psycopg.AsyncConnection[Any]


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    action: str  # e.g. email.read, api_key.create (the design document's EmailActionType names)
    resource_type: str
    resource_id: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


def _valid_ip(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None  # an unparseable client address is dropped, not allowed to fail the call
    # Postgres' inet has no IPv6 zone ("fe80::1%eth0" would fail the insert): keep the address.
    return str(address).partition("%")[0]


async def record(
    conn: Conn,
    entry: AuditEntry,
    *,
    principal: Principal | None,
    request: RequestContext | None = None,
) -> None:
    request = request or RequestContext()
    await conn.execute(
        "INSERT INTO audit_log (workspace_id, user_id, api_key_id, action, resource_type, resource_id, "
        "ip, user_agent, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            principal.workspace_id if principal else None,
            principal.user_id if principal else None,
            principal.api_key_id if principal else None,
            entry.action,
            entry.resource_type,
            entry.resource_id,
            _valid_ip(request.ip),
            # Postgres text cannot hold NUL; a client's header must not fail the call either.
            (request.user_agent or "").replace("\x00", "")[:1000] or None,
            # msgspec also encodes the UUIDs and datetimes metadata tends to carry (json cannot).
            Jsonb(entry.metadata, dumps=msgspec.json.encode),
        ),
    )
