"""mail.audit.record against a real Postgres: what a row holds, and that it commits or rolls back
with the change it describes."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from mail.audit import AuditEntry, record
from mail.store.pool import Pool
from models.tenancy import Principal, RequestContext

pytestmark = [pytest.mark.integration, pytest.mark.storage]


def _principal() -> Principal:
    return Principal(workspace_id=uuid.uuid4(), user_id=uuid.uuid4(), role="admin", api_key_id=uuid.uuid4())


async def _rows(conn: psycopg.AsyncConnection[Any], resource_id: str) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT workspace_id, user_id, api_key_id, action, resource_type, resource_id, ip, user_agent, "
            "metadata, occurred_at, occurred_at = now() AS at_transaction_start "
            "FROM audit_log WHERE resource_id = %s",
            (resource_id,),
        )
        return await cursor.fetchall()


async def test_record_writes_every_field(db_pool: Pool) -> None:
    principal = _principal()
    resource_id = str(uuid.uuid4())
    async with db_pool.connection() as conn, conn.transaction():
        await record(
            conn,
            AuditEntry(
                action="api_key.create",
                resource_type="api_key",
                resource_id=resource_id,
                metadata={"name": "laptop", "scopes": ["read", "send"], "nested": {"n": 1, "ok": True}},
            ),
            principal=principal,
            request=RequestContext(ip="203.0.113.7", user_agent="curl/8.5.0"),
        )
        rows = await _rows(conn, resource_id)
    assert rows == [
        {
            "workspace_id": principal.workspace_id,
            "user_id": principal.user_id,
            "api_key_id": principal.api_key_id,
            "action": "api_key.create",
            "resource_type": "api_key",
            "resource_id": resource_id,
            "ip": ipaddress.ip_address("203.0.113.7"),
            "user_agent": "curl/8.5.0",
            "metadata": {"name": "laptop", "scopes": ["read", "send"], "nested": {"n": 1, "ok": True}},
            "occurred_at": rows[0]["occurred_at"],
            "at_transaction_start": True,  # occurred_at is the transaction's time: stamped by Postgres
        }
    ]
    assert isinstance(rows[0]["occurred_at"], datetime)


async def test_ip_is_stored_as_inet(db_pool: Pool) -> None:
    resource_id = str(uuid.uuid4())
    async with db_pool.connection() as conn:
        await record(
            conn,
            AuditEntry(action="email.read", resource_type="email", resource_id=resource_id),
            principal=_principal(),
            request=RequestContext(ip="2001:db8::1"),
        )
        cursor = await conn.execute(
            "SELECT pg_typeof(ip)::text, family(ip), host(ip) FROM audit_log WHERE resource_id = %s",
            (resource_id,),
        )
        assert await cursor.fetchone() == ("inet", 6, "2001:db8::1")


@pytest.mark.parametrize(
    ("ip", "stored"),
    [
        ("198.51.100.23", "198.51.100.23"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ("fe80::1%eth0", "fe80::1"),  # a zone Postgres' inet cannot hold is dropped, the address kept
        ("not-an-ip", None),
        ("999.1.1.1", None),
        ("203.0.113.7:443", None),
        ("203.0.113.0/24", None),
        ("", None),
        (None, None),
    ],
)
async def test_an_invalid_ip_is_stored_as_null_not_an_error(
    db_pool: Pool, ip: str | None, stored: str | None
) -> None:
    resource_id = str(uuid.uuid4())
    async with db_pool.connection() as conn:
        await record(
            conn,
            AuditEntry(action="email.read", resource_type="email", resource_id=resource_id),
            principal=_principal(),
            request=RequestContext(ip=ip, user_agent="ua"),
        )
        rows = await _rows(conn, resource_id)
    assert len(rows) == 1
    assert rows[0]["ip"] == (ipaddress.ip_address(stored) if stored else None)
    assert rows[0]["user_agent"] == "ua"


async def test_without_principal_or_request_the_optional_columns_are_null(db_pool: Pool) -> None:
    resource_id = str(uuid.uuid4())
    async with db_pool.connection() as conn:
        await record(
            conn,
            AuditEntry(action="system.start", resource_type="system", resource_id=resource_id),
            principal=None,
        )
        rows = await _rows(conn, resource_id)
    assert len(rows) == 1
    row = rows[0]
    assert (row["workspace_id"], row["user_id"], row["api_key_id"], row["ip"], row["user_agent"]) == (
        None,
    ) * 5
    assert row["metadata"] == {}


async def test_user_agent_is_cut_to_1000_characters_and_loses_nul(db_pool: Pool) -> None:
    resource_id = str(uuid.uuid4())
    async with db_pool.connection() as conn:
        await record(
            conn,
            AuditEntry(action="email.read", resource_type="email", resource_id=resource_id),
            principal=_principal(),
            request=RequestContext(ip="192.0.2.9", user_agent="evil\x00agent/" + "x" * 2000),
        )
        rows = await _rows(conn, resource_id)
    assert rows[0]["user_agent"] == ("evilagent/" + "x" * 2000)[:1000]


async def test_metadata_may_hold_uuids_and_datetimes(db_pool: Pool) -> None:
    resource_id = str(uuid.uuid4())
    key_id = uuid.uuid4()
    when = datetime(2026, 4, 5, 6, 7, 8, tzinfo=UTC)
    async with db_pool.connection() as conn:
        await record(
            conn,
            AuditEntry(
                action="api_key.revoke",
                resource_type="api_key",
                resource_id=resource_id,
                metadata={"key_id": key_id, "expires_at": when},
            ),
            principal=_principal(),
        )
        rows = await _rows(conn, resource_id)
    assert rows[0]["metadata"] == {"key_id": str(key_id), "expires_at": "2026-04-05T06:07:08Z"}


async def test_a_rolled_back_change_leaves_no_audit_row(db_pool: Pool) -> None:
    resource_id = str(uuid.uuid4())
    slug = f"audit-{uuid.uuid4().hex[:12]}"

    class Boom(Exception):
        pass

    async with db_pool.connection() as conn:
        with pytest.raises(Boom):
            async with conn.transaction():
                await conn.execute("INSERT INTO workspaces (name, slug) VALUES ('audited', %s)", (slug,))
                await record(
                    conn,
                    AuditEntry(action="workspace.create", resource_type="workspace", resource_id=resource_id),
                    principal=_principal(),
                )
                assert len(await _rows(conn, resource_id)) == 1  # visible inside the transaction
                raise Boom
        assert await _rows(conn, resource_id) == []
        cursor = await conn.execute("SELECT count(*) FROM workspaces WHERE slug = %s", (slug,))
        assert await cursor.fetchone() == (0,)


async def test_a_committed_change_and_its_audit_row_commit_together(db_pool: Pool, database_url: str) -> None:
    resource_id = str(uuid.uuid4())
    slug = f"audit-{uuid.uuid4().hex[:12]}"
    async with db_pool.connection() as conn, conn.transaction():
        await conn.execute("INSERT INTO workspaces (name, slug) VALUES ('audited', %s)", (slug,))
        await record(
            conn,
            AuditEntry(action="workspace.create", resource_type="workspace", resource_id=resource_id),
            principal=_principal(),
        )
        # Not visible to anyone else before the commit.
        async with await psycopg.AsyncConnection.connect(database_url) as other:
            assert await _rows(other, resource_id) == []
    async with await psycopg.AsyncConnection.connect(database_url) as other:
        assert len(await _rows(other, resource_id)) == 1
        cursor = await other.execute("SELECT count(*) FROM workspaces WHERE slug = %s", (slug,))
        assert await cursor.fetchone() == (1,)
        await other.execute("DELETE FROM workspaces WHERE slug = %s", (slug,))
        await other.commit()
