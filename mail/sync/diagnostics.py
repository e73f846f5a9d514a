"""Sync diagnostics, the design document's diagnoseGmailSync: account, tokens, permissions, quota
usage, last sync, recent errors, and recommendations.

`healthy` is true only when every check says ok, and one check asks the provider itself: the
mailbox's message count against what the store holds, so a sync that silently lost mail cannot
report itself healthy.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from mail import accounts
from mail.errors import MailrayError
from mail.services import Services
from models.api import Diagnostics

READ_SCOPES = {
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/gmail.modify",
    "https://mail.google.com/",
}
PROVIDER_CHECK_TIMEOUT_S = 10.0


def _check(ok: bool, **details: Any) -> dict[str, Any]:
    return {"status": "ok" if ok else "error", **details}


async def diagnose(services: Services, account_id: UUID, *, now: datetime | None = None) -> Diagnostics:
    now = now or datetime.now(UTC)
    async with services.pool.connection() as conn:
        state = await accounts.get_sync_state(conn, account_id)
        cursor = await conn.execute(
            "SELECT email, sync_status, error_message, sync_enabled, last_sync_at, token_expires_at, "
            "refresh_token_enc IS NOT NULL, granted_scopes FROM email_accounts WHERE id = %s",
            (account_id,),
        )
        row = await cursor.fetchone()
        assert row is not None
        email, status, error_message, enabled, last_sync_at, expires_at, has_refresh, scopes = row
        cursor = await conn.execute(
            "SELECT count(*) FROM emails WHERE account_id = %s AND deleted_at IS NULL", (account_id,)
        )
        stored_row = await cursor.fetchone()
    stored = int(stored_row[0]) if stored_row else 0
    stale_after = timedelta(seconds=3 * services.settings.sync.poll_interval_s + 60)
    checks: dict[str, dict[str, Any]] = {
        "account": _check(
            bool(enabled) and status not in ("error", "reauth_required", "disabled"),
            email=email, syncStatus=status, syncEnabled=enabled, phase=state.phase, errorMessage=error_message,
        ),
        "tokens": _check(
            bool(has_refresh) and status != "reauth_required",
            hasRefreshToken=bool(has_refresh), accessTokenExpiresAt=expires_at,
        ),
        "permissions": _check(bool(READ_SCOPES & set(scopes or [])), granted=list(scopes or []), needsOneOf=sorted(READ_SCOPES)),
        "lastSync": _check(
            state.phase == "full_sync" or (last_sync_at is not None and now - last_sync_at <= stale_after),
            lastSyncAt=last_sync_at, historyCursor=state.history_cursor, messagesStored=stored,
            fullSyncCompletedAt=state.full_sync_completed_at, lastReconciledAt=state.last_reconciled_at,
            lastReconcileReport=state.last_reconcile_report,
        ),
        "errors": _check(state.consecutive_failures == 0, consecutiveFailures=state.consecutive_failures, recent=state.recent_errors),
    }  # fmt: skip
    checks["quotaUsage"] = await _quota_usage(services, email)
    checks["mailbox"] = await _mailbox_check(services, account_id, stored, state.phase)
    recommendations = _recommendations(checks)
    return Diagnostics(
        healthy=all(c["status"] == "ok" for c in checks.values()),
        diagnostics=checks,
        recommendations=recommendations,
    )


async def _quota_usage(services: Services, email: str) -> dict[str, Any]:
    from mail.gmail.quota import GmailQuota

    if services.settings.gmail.quota_regime == "off":
        return {"status": "ok", "regime": "off"}
    try:
        usage = await GmailQuota(services.redis, services.settings.gmail).usage(email)
    except MailrayError as error:
        return {"status": "unknown", "error": str(error)}
    return {"status": "ok", "regime": services.settings.gmail.quota_regime, **usage}


async def _mailbox_check(services: Services, account_id: UUID, stored: int, phase: str) -> dict[str, Any]:
    """Ask the provider how many messages the mailbox holds and compare with the store."""
    from mail.gmail.account_client import open_account_client

    try:
        client = await open_account_client(services, account_id)
        try:
            profile = await asyncio.wait_for(client.get_profile(), PROVIDER_CHECK_TIMEOUT_S)
        finally:
            await client.close()
    except (MailrayError, TimeoutError) as error:
        return {"status": "error", "error": f"could not reach the provider: {error}"}
    in_sync = profile.messages_total == stored
    return {
        "status": "ok" if in_sync else ("syncing" if phase == "full_sync" else "error"),
        "providerMessages": profile.messages_total,
        "storedMessages": stored,
        "providerHistoryId": profile.history_id,
    }


def _recommendations(checks: dict[str, dict[str, Any]]) -> list[str]:
    advice = {
        "account": "Sync is disabled or failing: start it with POST /v1/accounts/{id}/sync/start and read `errors`.",
        "tokens": "Google no longer accepts this account's grant: reconnect it through /v1/accounts/oauth/url.",
        "permissions": "Reconnect and grant read access (gmail.readonly or gmail.modify).",
        "lastSync": "No sync round finished recently: check that the SyncSupervisor and the account's actor run (mailray status).",
        "errors": "The last sync rounds failed: see `errors.recent`; transient errors retry with backoff on their own.",
        "quotaUsage": "The quota limiter could not be read: check Redis.",
        "mailbox": "The store and the mailbox disagree: a reconciliation fetches what is missing and removes what is gone.",
    }
    return [advice[name] for name, check in checks.items() if check["status"] not in ("ok", "syncing")]
