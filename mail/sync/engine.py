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

Fetching, parsing and storing run as a pipeline: while one chunk is stored (Postgres' work, in
its process), the next is parsed (here, or in a worker process: mail.sync.parse_pool) and the
one after is being fetched (the provider's work).
Full-text indexing (mail.sync.search_index) follows the storing: `index_search` after a full
sync, in the same round for incremental changes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import msgspec
import psycopg

from mail import accounts
from mail.ai import doorbell
from mail.bounces.inbox import ingest_synced
from mail.bounces.ingest import publish_alerts
from mail.cancellation import cancel_and_wait, honour_cancellation
from mail.errors import HistoryExpired
from mail.events import publish_received
from mail.mime import parse_message
from mail.services import Services
from mail.sync import state as sync_state
from mail.sync.parse_pool import ParsePool, shared_pool
from mail.sync.search_index import index_pending
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
# Messages parsed between two turns of the event loop: the storing side's next statement waits
# at most this long (about 2 ms), so Postgres is rarely idle while this process parses.
_PARSE_SLICE = 8


def fetch_chunk_for(settings: Settings) -> int:
    """Messages fetched before they are stored: about five seconds of what the quota allows, so
    progress is stored (and visible) steadily. Under the 2026 regime (about 5 messages/s) a
    200-message chunk held a whole small mailbox back for 40 s: 87% of the quota rate, 95% at 25.
    With no quota nothing paces the fetch (a page of 500 arrives in about 50 ms), so a chunk is a
    whole page: fewer, larger transactions stored 3,250 messages in 1.7 s instead of 2.1 s."""
    if settings.gmail.quota_regime == "2026":
        return min(settings.sync.fetch_chunk, 25)
    if settings.gmail.quota_regime == "off":
        return max(settings.sync.fetch_chunk, LIST_PAGE_SIZE)
    return settings.sync.fetch_chunk


def parse_pool_for(settings: Settings) -> ParsePool | None:
    """The worker process that parses fetched mail, where one is used (mail.sync.parse_pool):
    `sync.parse_worker` true, or unset and nothing paces the fetch (no quota)."""
    wanted = settings.sync.parse_worker
    if wanted is None:
        wanted = settings.gmail.quota_regime == "off"
    return shared_pool() if wanted else None


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
        self._parse_pool = parse_pool_for(services.settings)
        if self._parse_pool is not None:
            self._parse_pool.warm()

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

        async def pages() -> AsyncIterator[_Unit]:
            """Each page's ids not stored yet; after them, the page's checkpoint. Listing the next
            page does not wait for this one to be stored: the pipeline runs across pages."""
            token = page_token
            while True:
                page = await self._client.list_messages(page_token=token, max_results=LIST_PAGE_SIZE)
                ids = [ref.id for ref in page.messages]
                async with self._services.pool.connection() as conn, conn.transaction():
                    stored = await stored_provider_ids(conn, self._account_id, ids)
                    await stamp_generation(
                        conn, self._account_id, [i for i in ids if i in stored], generation
                    )
                report.listed += len(ids)
                report.already_stored += len(stored)
                after = (
                    functools.partial(self._checkpoint, page.next_page_token, len(ids))
                    if checkpoint
                    else None
                )
                yield _Unit(ids=[i for i in ids if i not in stored], after=after)
                if not page.next_page_token:
                    return
                token = page.next_page_token

        report.fetched, report.stored, report.vanished = await self._fetch_and_store(
            pages(), generation, publish=False
        )
        workspace_id = await self._workspace()
        async with self._services.pool.connection() as conn, conn.transaction():
            report.tombstoned, threads = await tombstone_unlisted(conn, self._account_id, generation)
            await refresh_threads(conn, workspace_id, threads)
        report.seconds = time.monotonic() - started
        return report

    async def _checkpoint(self, next_page_token: str | None, listed: int) -> None:
        async with self._services.pool.connection() as conn, conn.transaction():
            await sync_state.checkpoint_page(conn, self._account_id, next_page_token, listed, 0)

    async def _fetch_and_store(
        self, units: AsyncIterator[_Unit] | Sequence[str], generation: int, *, publish: bool
    ) -> tuple[int, int, int]:
        """Fetch, parse and store messages as a pipeline: while one chunk is stored, the next is
        parsed and the one after fetched. `units` are ids (or groups of ids, each with what to do
        once the group is stored, in order). Returns (fetched, stored, vanished)."""
        if not isinstance(units, AsyncIterator):
            units = _single(_Unit(ids=list(units)))
        source = units
        # Unbounded, so the producer's last word (None, or its error) never waits; `room` bounds
        # what is parsed and not yet taken to one chunk.
        ready: asyncio.Queue[list[SyncedMessage] | _After | BaseException | None] = asyncio.Queue()
        room = asyncio.Semaphore(1)
        counts = {"fetched": 0, "vanished": 0}

        async def chunks() -> AsyncIterator[list[str] | _After]:
            async for unit in source:
                for start in range(0, len(unit.ids), self._fetch_chunk):
                    yield unit.ids[start : start + self._fetch_chunk]
                if unit.after is not None:
                    yield _After(unit.after)

        async def fetch_and_parse() -> None:
            """One get in flight ahead of the chunk being parsed."""
            pending: asyncio.Future[list[GmailMessage | MessageFetchError]] | None = None
            try:
                items = chunks()
                queued: list[_After] = []  # markers that follow the chunk in flight (`pending`)
                async for item in items:
                    if isinstance(item, _After):
                        if pending is None:
                            await _offer(ready, room, item)
                        else:
                            queued.append(item)
                        continue
                    previous, pending = pending, asyncio.ensure_future(self._client.get_messages(item))
                    if previous is not None:
                        await self._parse_and_offer(await previous, ready, room, counts)
                    for marker in queued:  # they followed the chunk just offered
                        await _offer(ready, room, marker)
                    queued = []
                if pending is not None:
                    await self._parse_and_offer(await pending, ready, room, counts)
                for marker in queued:
                    await _offer(ready, room, marker)
                ready.put_nowait(None)
            except BaseException as error:  # handed to the storing side, which raises it
                ready.put_nowait(error)
                raise
            finally:
                if pending is not None and not pending.done():
                    pending.cancel()

        producer = asyncio.ensure_future(fetch_and_parse())
        inserted = 0
        try:
            while (item := await ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                room.release()
                if isinstance(item, _After):
                    await item.then()
                else:
                    inserted += await self._store(item, generation, publish=publish)
                honour_cancellation()  # one lost in a Redis or pool call stops the sync here
        finally:
            # Again and again if need be: a producer whose cancellation was lost would wait for
            # room forever, and this with it. Its error, if any, came through `ready`.
            await cancel_and_wait(producer)
        return counts["fetched"], inserted, counts["vanished"]

    async def _parse_and_offer(
        self,
        results: list[GmailMessage | MessageFetchError],
        ready: asyncio.Queue[Any],
        room: asyncio.Semaphore,
        counts: dict[str, int],
    ) -> None:
        messages = [r for r in results if isinstance(r, GmailMessage)]
        counts["vanished"] += len(results) - len(messages)
        counts["fetched"] += len(messages)
        await _offer(ready, room, await _parse(messages, self._parse_pool))

    async def _store(self, synced: Sequence[SyncedMessage], generation: int, *, publish: bool) -> int:
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
        if inserted and self._services.settings.ai.analysis_worker:
            await doorbell.ring(self._services.redis)
        return len(inserted)

    async def index_search(self) -> int:
        """Index the account's stored mail that is not indexed yet, a batch per transaction;
        how many were indexed."""
        total = 0
        while True:
            async with self._services.pool.connection() as conn, conn.transaction():
                indexed = await index_pending(conn, self._services.keyring, self._account_id)
            total += indexed
            if not indexed:
                return total

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
            # Bounces of the campaigns this account sent are acted on as they are stored.
            new = {provider_id for _, provider_id in batch.inserted}
            bounces = await ingest_synced(
                conn,
                workspace_id,
                [(m.gmail.raw or b"", m.parsed) for m in synced if m.gmail.id in new],
                self._services.settings.sending,
            )
        if bounces.recipients:
            log.info(
                "account %s: %d bounced recipients read from synced mail",
                self._account_id,
                bounces.recipients,
            )
            await publish_alerts(self._services.redis, bounces.alerts)
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
        if inserted:
            await self.index_search()  # new mail is searchable when the round ends
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


class _Unit(msgspec.Struct, kw_only=True):
    """Ids to fetch and store, and what to do once they are stored (a page's checkpoint)."""

    ids: list[str]
    after: Callable[[], Awaitable[None]] | None = None


class _After(msgspec.Struct):
    then: Callable[[], Awaitable[None]]


async def _single(unit: _Unit) -> AsyncIterator[_Unit]:
    yield unit


async def _offer(ready: asyncio.Queue[Any], room: asyncio.Semaphore, item: Any) -> None:
    await room.acquire()
    ready.put_nowait(item)


async def _parse(messages: Sequence[GmailMessage], pool: ParsePool | None) -> list[SyncedMessage]:
    """Parse fetched messages in the worker process, or here, letting the event loop run between
    slices (see _PARSE_SLICE)."""
    raws = [m.raw or b"" for m in messages]
    if pool is not None and raws:
        parsed = await pool.parse(raws)
    else:
        parsed = []
        for start in range(0, len(raws), _PARSE_SLICE):
            parsed += [parse_message(raw) for raw in raws[start : start + _PARSE_SLICE]]
            await asyncio.sleep(0)
    return [SyncedMessage(gmail=m, parsed=p) for m, p in zip(messages, parsed, strict=True)]


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
