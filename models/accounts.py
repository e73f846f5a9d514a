"""Connected mailboxes as the API shows them (the design document's EmailAccount / ConnectGmailAccount)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

SyncStatus = Literal["pending", "syncing", "synced", "error", "reauth_required", "disabled"]
SyncPhase = Literal["pending", "full_sync", "incremental", "paused", "error", "reauth_required"]


class EmailAccount(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: UUID
    workspace_id: UUID
    user_id: UUID
    email: str
    display_name: str | None
    provider: str
    sync_enabled: bool
    last_sync_at: datetime | None
    status: SyncStatus
    error_message: str | None = None


class ConnectGmailAccount(
    msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, rename="camel"
):
    code: str
    workspace_id: UUID | None = None  # the caller's workspace; accepted for the design document's shape


class SyncState(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    account_id: UUID
    phase: SyncPhase
    generation: int
    history_cursor: int | None
    full_sync_page_token: str | None
    full_sync_history_id: int | None
    full_sync_started_at: datetime | None
    full_sync_completed_at: datetime | None
    messages_listed: int
    messages_stored: int
    messages_failed: int
    last_incremental_at: datetime | None
    last_push_at: datetime | None
    watch_expires_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    sync_enabled: bool
    last_reconciled_at: datetime | None
    last_reconcile_report: dict[str, Any] | None
    recent_errors: list[dict[str, Any]]
