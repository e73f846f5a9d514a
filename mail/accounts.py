"""Connected mailboxes: connect from OAuth tokens, keep their tokens encrypted, report status.

Tokens are stored as envelope ciphertext bound to the account row and column, so a copied
ciphertext does not decrypt elsewhere (mail.crypto, mail.key_rotation.column_context).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from mail.crypto import Keyring
from mail.errors import NotFound
from mail.key_rotation import column_context
from models.accounts import EmailAccount, SyncState
from models.gmail import Profile, TokenSet
from models.tenancy import Principal

Conn = psycopg.AsyncConnection[Any]

_ACCOUNT_COLUMNS = (
    "id, workspace_id, user_id, email, display_name, provider, sync_enabled, last_sync_at, "
    "sync_status AS status, error_message"
)


def _encrypt(keyring: Keyring, account_id: UUID, column: str, value: str | None) -> bytes | None:
    if value is None:
        return None
    return keyring.encrypt_text(value, context=column_context("email_accounts", column, [account_id]))


def _decrypt(keyring: Keyring, account_id: UUID, column: str, blob: bytes | None) -> str | None:
    if blob is None:
        return None
    return keyring.decrypt_text(bytes(blob), context=column_context("email_accounts", column, [account_id]))


async def connect_gmail_account(
    conn: Conn, keyring: Keyring, principal: Principal, profile: Profile, tokens: TokenSet
) -> EmailAccount:
    """Create the caller's account for this mailbox, or reconnect it (new tokens, status pending)."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "INSERT INTO email_accounts (workspace_id, user_id, email, display_name, provider, granted_scopes) "
            "VALUES (%s, %s, %s, %s, 'gmail', %s) "
            "ON CONFLICT (workspace_id, lower(email)) DO UPDATE SET sync_status = 'pending', "
            "error_message = NULL, granted_scopes = EXCLUDED.granted_scopes, updated_at = now() "
            "RETURNING id",
            (
                principal.workspace_id,
                principal.user_id,
                profile.email_address,
                profile.email_address,
                tokens.scopes,
            ),
        )
        row = await cursor.fetchone()
        assert row is not None
        account_id: UUID = row["id"]
        await save_tokens(conn, keyring, account_id, tokens)
        await cursor.execute(
            "INSERT INTO sync_state (account_id, workspace_id) VALUES (%s, %s) ON CONFLICT (account_id) DO UPDATE "
            "SET phase = CASE WHEN sync_state.phase = 'reauth_required' THEN 'pending' ELSE sync_state.phase END, "
            "updated_at = now()",
            (account_id, principal.workspace_id),
        )
    return await get_account(conn, principal.workspace_id, account_id)


async def save_tokens(conn: Conn, keyring: Keyring, account_id: UUID, tokens: TokenSet) -> None:
    await conn.execute(
        "UPDATE email_accounts SET access_token_enc = %s, refresh_token_enc = coalesce(%s, refresh_token_enc), "
        "token_expires_at = %s, updated_at = now() WHERE id = %s",
        (
            _encrypt(keyring, account_id, "access_token_enc", tokens.access_token),
            _encrypt(keyring, account_id, "refresh_token_enc", tokens.refresh_token),
            tokens.expires_at,
            account_id,
        ),
    )


async def load_tokens(conn: Conn, keyring: Keyring, account_id: UUID) -> TokenSet:
    cursor = await conn.execute(
        "SELECT access_token_enc, refresh_token_enc, token_expires_at, granted_scopes FROM email_accounts WHERE id = %s",
        (account_id,),
    )
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no email account {account_id}")
    access = _decrypt(keyring, account_id, "access_token_enc", row[0]) or ""
    refresh = _decrypt(keyring, account_id, "refresh_token_enc", row[1])
    expires_at: datetime = row[2] or datetime.fromtimestamp(0).astimezone()
    return TokenSet(
        access_token=access, refresh_token=refresh, expires_at=expires_at, scopes=list(row[3] or [])
    )


async def get_account(conn: Conn, workspace_id: UUID, account_id: UUID) -> EmailAccount:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_ACCOUNT_COLUMNS} FROM email_accounts WHERE id = %s AND workspace_id = %s",
            (account_id, workspace_id),
        )
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no email account {account_id}")
    return EmailAccount(**row)


async def list_accounts(conn: Conn, principal: Principal) -> list[EmailAccount]:
    """Admins see every account of the workspace; members their own."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_ACCOUNT_COLUMNS} FROM email_accounts WHERE workspace_id = %s AND (%s OR user_id = %s) "
            "ORDER BY created_at",
            (principal.workspace_id, principal.is_admin, principal.user_id),
        )
        return [EmailAccount(**row) for row in await cursor.fetchall()]


async def account_identity(conn: Conn, account_id: UUID) -> tuple[UUID, str]:
    """(workspace id, mailbox address) of an account."""
    cursor = await conn.execute("SELECT workspace_id, email FROM email_accounts WHERE id = %s", (account_id,))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no email account {account_id}")
    return row[0], row[1]


async def find_account_by_email(conn: Conn, email: str) -> list[UUID]:
    """Every account (in any workspace) syncing this mailbox: a push names only the address."""
    cursor = await conn.execute(
        "SELECT id FROM email_accounts WHERE lower(email) = lower(%s) AND sync_enabled", (email,)
    )
    return [row[0] for row in await cursor.fetchall()]


async def set_status(conn: Conn, account_id: UUID, status: str, error: str | None = None) -> None:
    await conn.execute(
        "UPDATE email_accounts SET sync_status = %s, error_message = %s, updated_at = now(), "
        "last_sync_at = CASE WHEN %s = 'synced' THEN now() ELSE last_sync_at END WHERE id = %s",
        (status, error, status, account_id),
    )


_SYNC_STATE_COLUMNS = (
    "account_id, phase, generation, history_cursor, full_sync_page_token, full_sync_history_id, "
    "full_sync_started_at, full_sync_completed_at, messages_listed, messages_stored, messages_failed, "
    "last_incremental_at, last_push_at, watch_expires_at, last_error, consecutive_failures, sync_enabled, "
    "last_reconciled_at, last_reconcile_report, recent_errors"
)


async def get_sync_state(conn: Conn, account_id: UUID) -> SyncState:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_SYNC_STATE_COLUMNS} FROM sync_state WHERE account_id = %s", (account_id,)
        )
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no sync state for account {account_id}")
    for key in ("history_cursor", "full_sync_history_id"):
        row[key] = int(row[key]) if row[key] is not None else None
    return SyncState(**row)
