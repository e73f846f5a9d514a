"""Transitions of an account's sync state machine, kept in `sync_state`.

    pending --start_full_sync--> full_sync --finish_full_sync--> incremental
    incremental --(history expired)--> full_sync   (a new generation; what is stored is reused)
    any --(revoked grant)--> reauth_required --(reconnect)--> pending
    any --pause--> paused --resume--> full_sync or incremental, as it was

Every function runs in the caller's transaction, next to the writes it accounts for.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.AsyncConnection[Any]

RECENT_ERRORS_KEPT = 20


async def start_full_sync(conn: Conn, account_id: UUID, history_id: int) -> int:
    """Begin a full listing as a new generation; return the generation."""
    cursor = await conn.execute(
        "UPDATE sync_state SET phase = 'full_sync', generation = generation + 1, full_sync_page_token = NULL, "
        "full_sync_history_id = %s, full_sync_started_at = now(), full_sync_completed_at = NULL, "
        "messages_listed = 0, updated_at = now() WHERE account_id = %s RETURNING generation",
        (history_id, account_id),
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def checkpoint_page(
    conn: Conn, account_id: UUID, next_page_token: str | None, listed: int, stored: int
) -> None:
    await conn.execute(
        "UPDATE sync_state SET full_sync_page_token = %s, messages_listed = messages_listed + %s, "
        "messages_stored = messages_stored + %s, updated_at = now() WHERE account_id = %s",
        (next_page_token, listed, stored, account_id),
    )


async def count_stored(conn: Conn, account_id: UUID, stored: int, failed: int = 0) -> None:
    await conn.execute(
        "UPDATE sync_state SET messages_stored = messages_stored + %s, messages_failed = messages_failed + %s, "
        "updated_at = now() WHERE account_id = %s",
        (stored, failed, account_id),
    )


async def finish_full_sync(conn: Conn, account_id: UUID) -> None:
    """The listing is complete: incremental sync continues from the history id taken before it."""
    await conn.execute(
        "UPDATE sync_state SET phase = 'incremental', history_cursor = full_sync_history_id, "
        "full_sync_page_token = NULL, full_sync_completed_at = now(), updated_at = now() WHERE account_id = %s",
        (account_id,),
    )


async def advance_cursor(conn: Conn, account_id: UUID, history_id: int) -> None:
    """Move the cursor forward (never back) and note the incremental sync."""
    await conn.execute(
        "UPDATE sync_state SET history_cursor = greatest(coalesce(history_cursor, 0), %s), "
        "last_incremental_at = now(), updated_at = now() WHERE account_id = %s",
        (history_id, account_id),
    )


async def set_phase(conn: Conn, account_id: UUID, phase: str) -> None:
    await conn.execute(
        "UPDATE sync_state SET phase = %s, updated_at = now() WHERE account_id = %s", (phase, account_id)
    )


async def set_enabled(conn: Conn, account_id: UUID, enabled: bool) -> None:
    await conn.execute(
        "UPDATE sync_state SET sync_enabled = %s, updated_at = now() WHERE account_id = %s",
        (enabled, account_id),
    )
    await conn.execute(
        "UPDATE email_accounts SET sync_enabled = %s, updated_at = now() WHERE id = %s", (enabled, account_id)
    )


async def record_error(conn: Conn, account_id: UUID, kind: str, message: str) -> None:
    entry = {"kind": kind, "message": message[:500]}
    await conn.execute(
        "UPDATE sync_state SET last_error = %s, last_error_at = now(), consecutive_failures = consecutive_failures + 1, "
        "recent_errors = (SELECT coalesce(jsonb_agg(e), '[]'::jsonb) FROM (SELECT e FROM jsonb_array_elements("
        "jsonb_build_array(jsonb_set(%s::jsonb, '{at}', to_jsonb(now()))) || recent_errors) AS e LIMIT %s) AS kept), "
        "updated_at = now() WHERE account_id = %s",
        (f"{kind}: {message}"[:1000], Jsonb(entry), RECENT_ERRORS_KEPT, account_id),
    )


async def record_success(conn: Conn, account_id: UUID) -> None:
    await conn.execute(
        "UPDATE sync_state SET consecutive_failures = 0, updated_at = now() WHERE account_id = %s AND consecutive_failures > 0",
        (account_id,),
    )


async def record_push(conn: Conn, account_id: UUID) -> None:
    await conn.execute("UPDATE sync_state SET last_push_at = now() WHERE account_id = %s", (account_id,))


async def record_watch(conn: Conn, account_id: UUID, expiration_ms: int) -> None:
    await conn.execute(
        "UPDATE sync_state SET watch_expires_at = to_timestamp(%s / 1000.0), updated_at = now() WHERE account_id = %s",
        (expiration_ms, account_id),
    )
    await conn.execute(
        "UPDATE email_accounts SET watch_expires_at = to_timestamp(%s / 1000.0) WHERE id = %s",
        (expiration_ms, account_id),
    )


async def record_reconcile(conn: Conn, account_id: UUID, report: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE sync_state SET last_reconciled_at = now(), last_reconcile_report = %s, updated_at = now() "
        "WHERE account_id = %s",
        (Jsonb(report), account_id),
    )
