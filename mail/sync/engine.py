"""The sync state machine of one Gmail account, as plain Python (the AccountSync actor drives it).

Full sync: take the mailbox's historyId first, then list every message id page by page; per page,
stamp the ids already stored with this generation and fetch the others in batches, parse, and
store them; then checkpoint the page token. A crash resumes from the last checkpoint; listing a
page twice stores nothing twice. When the listing ends, stored messages this generation did not
stamp are gone from the mailbox and are tombstoned, and incremental sync starts from the
historyId taken before the listing, so changes made during it are applied too.

Incremental sync: history.list from the cursor; added messages are fetched and stored, deletions
tombstoned, label changes applied, and the cursor moves to the last record applied only in the
transaction that stores them. An expired cursor (404) starts a full sync as a new generation,
which reuses everything already stored: no duplicates, no gap.

Reconciliation is a listing pass that keeps the cursor: it fetches what is missing, tombstones
what is gone, and reports the gap it found.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import msgspec
import psycopg

from mail import accounts
from mail.errors import HistoryExpired
from mail.events import publish_received
from mail.mime import parse_message
from mail.services import Services
from mail.sync import state as sync_state
from mail.sync.store import (
    SyncedMessage,
    apply_labels,
    degraded,
    mark_deleted,
    refresh_threads,
    set_labels,
    stamp_generation,
    store_messages,
    stored_provider_ids,
    tombstone_unlisted,
)
from models.events import EmailParty, EmailReceived, EmailReceivedData
from models.gmail import (
    GmailMessage,
    HistoryPage,
    HistoryRecord,
    Label,
    MessageFetchError,
    MessagePage,
    Profile,
    WatchResponse,
)
from models.settings import Settings

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = 500


def fetch_chunk_for(settings: Settings) -> int:
    """Messages fetched before they are stored: about five seconds of what the quota allows, so
    progress is stored (and visible) steadily. Under the 2026 regime (about 5 messages/s) a
    200-message chunk held a whole small mailbox back for 40 s: 87% of the quota rate, 95% at 25."""
    if settings.gmail.quota_regime == "2026":
        return min(settings.sync.fetch_chunk, 25)
    return settings.sync.fetch_chunk


class GmailApi(Protocol):
    """What the engine needs of a Gmail client (mail.gmail.client.GmailClient provides it)."""

    async def get_profile(self) -> Profile: ...
    async def list_labels(self) -> list[Label]: ...
    async def list_messages(
        self, *, page_token: str | None = None, max_results: int = 500, include_spam_trash: bool = True
    ) -> MessagePage: ...
    async def get_messages(
        self, ids: Sequence[str], *, format: str = "raw"
    ) -> list[GmailMessage | MessageFetchError]: ...
    async def list_history(self, start_history_id: int, *, page_token: str | None = None) -> HistoryPage: ...
    async def watch(self, topic_name: str, label_ids: Sequence[str]) -> WatchResponse: ...


class PassReport(msgspec.Struct, kw_only=True):
    listed: int = 0
    already_stored: int = 0
    fetched: int = 0
    stored: int = 0
    vanished: int = 0  # listed, then gone before it could be fetched
    tombstoned: int = 0
    seconds: float = 0.0


class IncrementalReport(msgspec.Struct, kw_only=True):
    records: int = 0
    added: int = 0
    deleted: int = 0
    relabelled: int = 0
    cursor: int | None = None


class SyncEngine:
    def __init__(
        self,
        services: Services,
        account_id: UUID,
        client: GmailApi,
        *,
        fetch_chunk: int = 200,
        publish_events: bool = True,
    ) -> None:
        self._services = services
        self._account_id = account_id
        self._client = client
        self._fetch_chunk = fetch_chunk
        self._publish_events = publish_events
        self._workspace_id: UUID | None = None

    @property
    def account_id(self) -> UUID:
        return self._account_id

    async def _workspace(self) -> UUID:
        if self._workspace_id is None:
            async with self._services.pool.connection() as conn:
                self._workspace_id, _ = await accounts.account_identity(conn, self._account_id)
        return self._workspace_id

    async def sync(self) -> dict[str, Any]:
        """One round: finish (or start) a full sync if one is due, then apply history."""
        async with self._services.pool.connection() as conn:
            current = await accounts.get_sync_state(conn, self._account_id)
            await accounts.set_status(conn, self._account_id, "syncing")
        report: dict[str, Any] = {}
        if current.phase in ("pending", "full_sync", "error"):
            if current.phase != "full_sync" or current.full_sync_history_id is None:
                await self._begin_full_sync()
            report["full_sync"] = await self._listing_pass(resume=True)
            async with self._services.pool.connection() as conn, conn.transaction():
                await sync_state.finish_full_sync(conn, self._account_id)
        try:
            report["incremental"] = await self.incremental()
        except HistoryExpired:
            log.warning(
                "account %s: history cursor expired; full resync reusing stored mail", self._account_id
            )
            await self._begin_full_sync()
            report["resync"] = await self._listing_pass(resume=False)
            async with self._services.pool.connection() as conn, conn.transaction():
                await sync_state.finish_full_sync(conn, self._account_id)
            report["incremental"] = await self.incremental()
        async with self._services.pool.connection() as conn, conn.transaction():
            await sync_state.record_success(conn, self._account_id)
            await accounts.set_status(conn, self._account_id, "synced")
        return report

    async def _begin_full_sync(self) -> int:
        profile = await self._client.get_profile()
        labels = await self._client.list_labels()
        # Resolve the workspace before taking a connection: a second acquire while one is held
        # deadlocks engines that share a small pool.
        workspace_id = await self._workspace()
        async with self._services.pool.connection() as conn, conn.transaction():
            await _store_labels(conn, workspace_id, self._account_id, labels)
            return await sync_state.start_full_sync(conn, self._account_id, profile.history_id)

    async def reconcile(self) -> dict[str, Any]:
        """Compare the provider's ids with the store; fetch what is missing, tombstone what is gone."""
        async with self._services.pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "UPDATE sync_state SET generation = generation + 1 WHERE account_id = %s RETURNING generation",
                (self._account_id,),
            )
            row = await cursor.fetchone()
        assert row is not None
        report = await self._listing(int(row[0]), None, checkpoint=False)
        summary = {
            "listed": report.listed,
            "missing_fetched": report.stored,
            "gone_tombstoned": report.tombstoned,
            "gap_found": report.stored + report.tombstoned,
            "seconds": round(report.seconds, 3),
        }
        async with self._services.pool.connection() as conn, conn.transaction():
            await sync_state.record_reconcile(conn, self._account_id, summary)
        return summary

    async def _listing_pass(self, *, resume: bool) -> PassReport:
        async with self._services.pool.connection() as conn:
            current = await accounts.get_sync_state(conn, self._account_id)
        token = current.full_sync_page_token if resume else None
        return await self._listing(current.generation, token, checkpoint=True)

    async def _listing(self, generation: int, page_token: str | None, *, checkpoint: bool) -> PassReport:
        report = PassReport()
        started = time.monotonic()
        while True:
            page = await self._client.list_messages(page_token=page_token, max_results=LIST_PAGE_SIZE)
            ids = [ref.id for ref in page.messages]
            async with self._services.pool.connection() as conn, conn.transaction():
                stored = await stored_provider_ids(conn, self._account_id, ids)
                await stamp_generation(conn, self._account_id, [i for i in ids if i in stored], generation)
            missing = [i for i in ids if i not in stored]
            fetched, inserted, vanished = await self._fetch_and_store(missing, generation, publish=False)
            report.listed += len(ids)
            report.already_stored += len(stored)
            report.fetched += fetched
            report.stored += inserted
            report.vanished += vanished
            if checkpoint:
                async with self._services.pool.connection() as conn, conn.transaction():
                    await sync_state.checkpoint_page(
                        conn, self._account_id, page.next_page_token, len(ids), 0
                    )
            if not page.next_page_token:
                break
            page_token = page.next_page_token
        workspace_id = await self._workspace()
        async with self._services.pool.connection() as conn, conn.transaction():
            report.tombstoned, threads = await tombstone_unlisted(conn, self._account_id, generation)
            await refresh_threads(conn, workspace_id, threads)
        report.seconds = time.monotonic() - started
        return report

    async def _fetch_and_store(
        self, ids: Sequence[str], generation: int, *, publish: bool
    ) -> tuple[int, int, int]:
        """Fetch, parse and store messages, the next chunk in flight while this one is stored."""
        chunks = [ids[i : i + self._fetch_chunk] for i in range(0, len(ids), self._fetch_chunk)]
        fetched = inserted = vanished = 0
        if not chunks:
            return 0, 0, 0
        pending = asyncio.ensure_future(self._client.get_messages(chunks[0]))
        try:
            for index in range(len(chunks)):
                results = await pending
                if index + 1 < len(chunks):
                    pending = asyncio.ensure_future(self._client.get_messages(chunks[index + 1]))
                messages = [r for r in results if isinstance(r, GmailMessage)]
                vanished += len(results) - len(messages)
                fetched += len(messages)
                inserted += await self._store(messages, generation, publish=publish)
        finally:
            if not pending.done():
                pending.cancel()
        return fetched, inserted, vanished

    async def _store(self, messages: Sequence[GmailMessage], generation: int, *, publish: bool) -> int:
        synced = [SyncedMessage(gmail=m, parsed=parse_message(m.raw or b"")) for m in messages]
        workspace_id = await self._workspace()
        try:
            inserted = await self._store_batch(workspace_id, synced, generation)
        except psycopg.errors.DataError:
            # One message the database refuses must not stall the account: store them one by
            # one, and a message that still fails in its reduced form with its raw bytes.
            inserted = []
            for message in synced:
                try:
                    inserted += await self._store_batch(workspace_id, [message], generation)
                except psycopg.errors.DataError as error:
                    log.warning(
                        "account %s: message %s stored reduced: %s", self._account_id, message.gmail.id, error
                    )
                    inserted += await self._store_batch(
                        workspace_id, [degraded(message, str(error))], generation
                    )
        if publish and self._publish_events and inserted:
            await self._publish(workspace_id, synced, inserted)
        return len(inserted)

    async def _store_batch(
        self, workspace_id: UUID, synced: Sequence[SyncedMessage], generation: int
    ) -> list[tuple[int, str]]:
        async with self._services.pool.connection() as conn, conn.transaction():
            batch = await store_messages(
                conn,
                self._services.keyring,
                workspace_id=workspace_id,
                account_id=self._account_id,
                generation=generation,
                messages=synced,
            )
            await sync_state.count_stored(conn, self._account_id, len(batch.inserted))
        return batch.inserted

    async def _publish(
        self, workspace_id: UUID, synced: Sequence[SyncedMessage], inserted: Sequence[tuple[int, str]]
    ) -> None:
        by_id = {m.gmail.id: m for m in synced}
        events = []
        for email_id, provider_id in inserted:
            message = by_id[provider_id]
            sender = message.parsed.from_address
            events.append(
                EmailReceived(
                    workspace_id=workspace_id,
                    data=EmailReceivedData(
                        id=email_id,
                        account_id=self._account_id,
                        subject=message.parsed.subject,
                        sender=EmailParty(
                            email=sender.email if sender else None, name=sender.name if sender else None
                        ),
                        preview=message.parsed.snippet,
                        received_at=datetime.fromtimestamp(message.gmail.internal_date_ms / 1000, tz=UTC),
                    ),
                )
            )
        await publish_received(self._services.redis, events)

    async def incremental(self) -> IncrementalReport:
        """Apply history since the cursor, page by page; the cursor moves with each stored page."""
        async with self._services.pool.connection() as conn:
            current = await accounts.get_sync_state(conn, self._account_id)
        report = IncrementalReport(cursor=current.history_cursor)
        if current.history_cursor is None:
            return report
        start = current.history_cursor
        page_token: str | None = None
        while True:
            page = await self._client.list_history(start, page_token=page_token)
            await self._apply(page.records, current.generation, report)
            new_cursor = (
                page.history_id
                if not page.next_page_token
                else max((r.id for r in page.records), default=start)
            )
            async with self._services.pool.connection() as conn, conn.transaction():
                await sync_state.advance_cursor(conn, self._account_id, new_cursor)
            report.cursor = max(report.cursor or 0, new_cursor)
            if not page.next_page_token:
                return report
            page_token = page.next_page_token

    async def _apply(
        self, records: Sequence[HistoryRecord], generation: int, report: IncrementalReport
    ) -> None:
        """Apply one page of history records in order."""
        report.records += len(records)
        to_fetch: dict[str, None] = {}
        deleted: list[str] = []
        label_changes: list[tuple[str, list[str], list[str], list[str] | None]] = []
        for record in records:
            for change in record.changes:
                message_id = change.message.id
                if change.kind == "messageAdded":
                    to_fetch[message_id] = None
                    label_changes.append((message_id, [], [], list(change.label_ids)))
                elif change.kind == "messageDeleted":
                    to_fetch.pop(message_id, None)
                    deleted.append(message_id)
                elif change.kind == "labelAdded":
                    label_changes.append((message_id, list(change.label_ids), [], None))
                else:
                    label_changes.append((message_id, [], list(change.label_ids), None))
        async with self._services.pool.connection() as conn:
            stored = await stored_provider_ids(conn, self._account_id, list(to_fetch))
        fetch_ids = [i for i in to_fetch if i not in stored]
        _, inserted, _ = await self._fetch_and_store(fetch_ids, generation, publish=True)
        report.added += inserted
        gone = set(deleted)
        threads: set[UUID] = set()
        workspace_id = await self._workspace()
        async with self._services.pool.connection() as conn, conn.transaction():
            for message_id, add, remove, replace in label_changes:
                if message_id in gone or message_id in fetch_ids:
                    continue  # deleted, or just fetched with its current labels
                thread = (
                    await set_labels(conn, self._account_id, message_id, replace)
                    if replace is not None
                    else await apply_labels(conn, self._account_id, message_id, add, remove)
                )
                if thread is not None:
                    threads.add(thread)
                    report.relabelled += 1
            threads |= await mark_deleted(conn, self._account_id, deleted)
            report.deleted += len(deleted)
            await refresh_threads(conn, workspace_id, threads)

    async def ensure_watch(
        self, topic: str, label_ids: Sequence[str], *, now: datetime | None = None
    ) -> bool:
        """Renew the push watch daily (and so always well before its 7-day expiry); True when renewed."""
        now = now or datetime.now(UTC)
        async with self._services.pool.connection() as conn:
            current = await accounts.get_sync_state(conn, self._account_id)
        expires = current.watch_expires_at
        if expires is not None and expires - now > timedelta(days=6):
            return False
        response = await self._client.watch(topic, label_ids)
        async with self._services.pool.connection() as conn, conn.transaction():
            await sync_state.record_watch(conn, self._account_id, response.expiration_ms)
        return True


async def _store_labels(conn: Any, workspace_id: UUID, account_id: UUID, labels: Sequence[Label]) -> None:
    if not labels:
        return
    await conn.execute(
        "INSERT INTO labels (workspace_id, account_id, provider_label_id, name, label_type, messages_total, messages_unread) "
        "SELECT %s, %s, l.id, l.name, l.type, l.total, l.unread "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::int[]) AS l(id, name, type, total, unread) "
        "ON CONFLICT (account_id, provider_label_id) DO UPDATE SET name = EXCLUDED.name, "
        "messages_total = EXCLUDED.messages_total, messages_unread = EXCLUDED.messages_unread, updated_at = now()",
        (
            workspace_id,
            account_id,
            [label.id for label in labels],
            [label.name for label in labels],
            [label.type for label in labels],
            [label.messages_total for label in labels],
            [label.messages_unread for label in labels],
        ),
    )
