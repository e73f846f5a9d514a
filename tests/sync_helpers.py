"""Shared pieces of the sync tests: settings aimed at an emulator, a connected account, and the
comparison that decides whether the store equals the mailbox."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from cluster.emulators.gmail.client_settings import gmail_environment
from mail import accounts, auth
from mail.config import load_settings
from mail.services import Services, open_services
from models.gmail import Profile, TokenSet
from models.settings import Settings


def emulator_settings(
    base_url: str, database_url: str, redis_url: str, data_dir: Path, **extra: str
) -> Settings:
    return load_settings(
        environ={
            "MAILRAY_DATABASE__URL": database_url,
            "MAILRAY_REDIS__URL": redis_url,
            "MAILRAY_APP__DATA_DIR": str(data_dir),
            **gmail_environment(base_url),
            # The emulators in tests run without quota unless a test says otherwise.
            "MAILRAY_GMAIL__QUOTA_REGIME": "off",
            **extra,
        }
    )


async def connected_account(
    services: Services, emulator: Any, email: str, issued: dict[str, Any] | None = None
) -> UUID:
    """A workspace, its owner, and `email`'s mailbox connected with tokens the emulator issued
    (pass `issued` for an emulator in another process, from EmulatorAdmin.issue_tokens)."""
    from datetime import UTC, datetime, timedelta

    issued = issued or emulator.issue_tokens(email)
    tokens = TokenSet(
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=datetime.now(UTC) + timedelta(seconds=int(issued["expires_in"])),
        scopes=["https://www.googleapis.com/auth/gmail.readonly"],
    )
    async with services.pool.connection() as conn:
        suffix = uuid.uuid4().hex[:8]
        workspace, owner = await auth.create_workspace(
            conn, f"Sync {suffix}", owner_email=f"owner-{suffix}@example.com"
        )
        from models.tenancy import Principal

        principal = Principal(workspace_id=workspace.id, user_id=owner.id, role="owner")
        profile = Profile(email_address=email, messages_total=0, threads_total=0, history_id=0)
        account = await accounts.connect_gmail_account(conn, services.keyring, principal, profile, tokens)
    return account.id


async def open_test_services(settings: Settings) -> Services:
    return await open_services(settings)


async def stored_mailbox(database_url: str, account_id: UUID) -> dict[str, dict[str, Any]]:
    """provider id -> {labels, threadId, count} of the live (not deleted) stored messages."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT provider_message_id, labels, provider_thread_id, count(*) OVER (PARTITION BY provider_message_id) "
            "FROM emails WHERE account_id = %s AND deleted_at IS NULL",
            (account_id,),
        )
        rows = await cursor.fetchall()
    return {row[0]: {"labels": sorted(row[1]), "threadId": row[2], "copies": row[3]} for row in rows}


def assert_store_equals_mailbox(
    mailbox: dict[str, dict[str, Any]], stored: dict[str, dict[str, Any]]
) -> None:
    missing = set(mailbox) - set(stored)
    extra = set(stored) - set(mailbox)
    assert not missing, f"{len(missing)} messages of the mailbox are not stored, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} stored messages are not in the mailbox, e.g. {sorted(extra)[:5]}"
    duplicated = [i for i, s in stored.items() if s["copies"] != 1]
    assert not duplicated, f"stored more than once: {duplicated[:5]}"
    wrong_labels = [i for i, m in mailbox.items() if sorted(m["labelIds"]) != stored[i]["labels"]]
    assert not wrong_labels, f"labels differ for {len(wrong_labels)} messages, e.g. {wrong_labels[:3]}"
    wrong_threads = [i for i, m in mailbox.items() if m["threadId"] != stored[i]["threadId"]]
    assert not wrong_threads, f"threads differ for {wrong_threads[:3]}"


async def count_rows(database_url: str, account_id: UUID) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT count(*) FROM emails WHERE account_id = %s", (account_id,))
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])
