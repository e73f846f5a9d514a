"""The sync engine against the Gmail emulator, real Postgres and Redis (no Ray: the engine is plain Python)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from mail import accounts
from mail.gmail.account_client import open_account_client
from mail.mime import parse_message
from mail.services import Services
from mail.sync.engine import SyncEngine
from mail.sync.search_index import pending_count
from mail.sync.store import StoredBatch, SyncedMessage, label_columns, store_messages
from models.gmail import GmailMessage
from tests.sync_helpers import (
    assert_store_equals_mailbox,
    connected_account,
    count_rows,
    emulator_settings,
    open_test_services,
    stored_mailbox,
)

pytestmark = [pytest.mark.integration, pytest.mark.storage]

USER = "ana@sync.test"


class Rig:
    def __init__(self, emulator: Any, services: Services, account_id: UUID, database_url: str) -> None:
        self.emulator, self.services, self.account_id, self.database_url = (
            emulator,
            services,
            account_id,
            database_url,
        )

    async def engine(self) -> SyncEngine:
        client = await open_account_client(self.services, self.account_id)
        return SyncEngine(self.services, self.account_id, client, fetch_chunk=100)

    async def sync(self) -> dict[str, Any]:
        engine = await self.engine()
        try:
            return await engine.sync()
        finally:
            await engine._client.close()  # type: ignore[attr-defined]

    async def assert_in_sync(self) -> None:
        assert_store_equals_mailbox(
            self.emulator.state(USER), await stored_mailbox(self.database_url, self.account_id)
        )


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig_factory(
    gmail_emulator_factory: Any, database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[RigFactory]:
    opened: list[Services] = []

    async def make(messages: int = 300, **config: Any) -> Rig:
        emulator = await gmail_emulator_factory(**config)
        emulator.add_user(USER)
        emulator.generate(USER, messages, seed=7)
        settings = emulator_settings(emulator.base_url, database_url, redis_url, tmp_path)
        services = await open_test_services(settings)
        opened.append(services)
        account_id = await connected_account(services, emulator, USER)
        return Rig(emulator, services, account_id, database_url)

    yield make
    for services in opened:
        await services.close()


def _raw(subject: str, body: str = "hello") -> bytes:
    message = EmailMessage()
    message["From"] = "Bo <bo@example.com>"
    message["To"] = USER
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@example.com>"
    message.set_content(body)
    return message.as_bytes()


async def _search(rig: Rig, word: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(rig.database_url) as conn:
        cursor = await conn.execute(
            "SELECT e.subject FROM emails e JOIN email_search s ON s.email_id = e.id AND s.email_date = e.email_date "
            "WHERE e.account_id = %s AND s.search_vector @@ plainto_tsquery('english', %s)",
            (rig.account_id, word),
        )
        return {row[0] for row in await cursor.fetchall()}


async def _pending(rig: Rig) -> int:
    async with await psycopg.AsyncConnection.connect(rig.database_url) as conn:
        return await pending_count(conn, rig.account_id)


async def test_full_sync_mail_is_indexed_after_it_is_stored_and_incremental_mail_at_once(
    rig_factory: RigFactory,
) -> None:
    rig = await rig_factory(120)
    rig.emulator.add_message(USER, _raw("Kumquat order", "the word quintessentially is in here"))
    await rig.sync()
    await rig.assert_in_sync()
    assert await _pending(rig) == 121  # stored, not indexed yet
    assert await _search(rig, "quintessentially") == set()
    engine = await rig.engine()
    try:
        assert await engine.index_search() == 121
        assert await engine.index_search() == 0
    finally:
        await engine._client.close()  # type: ignore[attr-defined]
    assert await _search(rig, "quintessential") == {"Kumquat order"}  # the body, stemmed
    assert await _search(rig, "kumquat") == {"Kumquat order"}  # the subject
    assert await _search(rig, "bo@example.com") == {"Kumquat order"}  # the sender

    rig.emulator.add_message(USER, _raw("Persimmon news", "an incrementally synced zebrafish"))
    report = await rig.sync()
    assert report["incremental"].added == 1
    assert await _pending(rig) == 0  # indexed in the same round
    assert await _search(rig, "zebrafish") == {"Persimmon news"}


async def test_folder_and_flags_from_labels_match_the_sql_rule(rig_factory: RigFactory) -> None:
    """Storing computes them in Python, label changes in SQL (mailray_folder): both say the same."""
    rig = await rig_factory(0)
    names = ["TRASH", "SPAM", "DRAFT", "INBOX", "SENT", "UNREAD", "STARRED", "IMPORTANT", "CATEGORY_SOCIAL"]
    subsets = [sorted(n for bit, n in enumerate(names) if mask >> bit & 1) for mask in range(2 ** len(names))]
    async with await psycopg.AsyncConnection.connect(rig.database_url) as conn:
        cursor = await conn.execute(
            "SELECT mailray_folder(l), NOT ('UNREAD' = ANY(l)), 'STARRED' = ANY(l), 'IMPORTANT' = ANY(l), "
            "'DRAFT' = ANY(l), 'SENT' = ANY(l) FROM unnest(%s::text[]) WITH ORDINALITY AS s(j, n), "
            "LATERAL (SELECT j::text[] AS l) x ORDER BY n",
            ([json.dumps(subset).replace("[", "{").replace("]", "}") for subset in subsets],),
        )
        in_sql = await cursor.fetchall()
    assert [label_columns(subset) for subset in subsets] == in_sql


async def test_a_batch_with_a_message_stored_meanwhile_stores_only_the_new_ones(
    rig_factory: RigFactory,
) -> None:
    rig = await rig_factory(0)
    workspace_id = (await _identity(rig))[0]

    def synced(number: int) -> SyncedMessage:
        raw = _raw(f"Batch message {number}")
        gmail = GmailMessage(id=f"batch{number}", thread_id=f"thread{number}", label_ids=["INBOX"], history_id=1,
                             internal_date_ms=1_700_000_000_000 + number, size_estimate=len(raw), raw=raw)  # fmt: skip
        return SyncedMessage(gmail=gmail, parsed=parse_message(raw))

    async def store(messages: list[SyncedMessage]) -> StoredBatch:
        async with rig.services.pool.connection() as conn, conn.transaction():
            return await store_messages(conn, rig.services.keyring, workspace_id=workspace_id,
                                        account_id=rig.account_id, generation=1, messages=messages)  # fmt: skip

    first = await store([synced(1), synced(2)])
    assert [provider_id for _, provider_id in first.inserted] == ["batch1", "batch2"]
    again = await store([synced(2), synced(3), synced(1)])  # the COPY fails; the staging path skips 1 and 2
    assert [provider_id for _, provider_id in again.inserted] == ["batch3"] and again.already_stored == 2
    assert await count_rows(rig.database_url, rig.account_id) == 3
    assert await _pending(rig) == 3  # each stored once, each waiting for the indexer once


async def _identity(rig: Rig) -> tuple[UUID, str]:
    async with rig.services.pool.connection() as conn:
        return await accounts.account_identity(conn, rig.account_id)


async def test_full_sync_stores_every_message_once_with_labels_threads_and_contacts(
    rig_factory: RigFactory,
) -> None:
    rig = await rig_factory(300)
    report = await rig.sync()
    assert report["full_sync"].listed == 300
    await rig.assert_in_sync()
    async with await psycopg.AsyncConnection.connect(rig.database_url) as conn:
        cursor = await conn.execute(
            "SELECT count(DISTINCT thread_id), count(*) FILTER (WHERE thread_id IS NULL) FROM emails WHERE account_id = %s",
            (rig.account_id,),
        )
        threads, unthreaded = await cursor.fetchone() or (0, 0)
        cursor = await conn.execute(
            "SELECT count(*) FROM contacts c JOIN email_accounts a ON a.workspace_id = c.workspace_id WHERE a.id = %s",
            (rig.account_id,),
        )
        contacts = (await cursor.fetchone() or (0,))[0]
        cursor = await conn.execute(
            "SELECT phase, history_cursor FROM sync_state WHERE account_id = %s", (rig.account_id,)
        )
        phase, history_cursor = await cursor.fetchone() or ("", None)
    assert unthreaded == 0
    assert 0 < threads < 300  # replies joined their threads
    assert contacts > 0
    assert phase == "incremental" and history_cursor is not None


async def test_incremental_applies_additions_deletions_and_label_changes(rig_factory: RigFactory) -> None:
    rig = await rig_factory(120)
    await rig.sync()
    state = rig.emulator.state(USER)
    ids = sorted(state)
    inbox_only = [i for i in ids if "INBOX" in state[i]["labelIds"] and "SENT" not in state[i]["labelIds"]]
    new_id = rig.emulator.add_message(USER, _raw("fresh news"), label_ids=("INBOX", "UNREAD"))
    rig.emulator.delete_message(USER, ids[0])
    archived = inbox_only[-1]
    rig.emulator.modify_labels(USER, archived, add=("STARRED",), remove=("UNREAD", "INBOX"))
    report = await rig.sync()
    assert report["incremental"].added == 1
    assert report["incremental"].deleted == 1
    await rig.assert_in_sync()
    async with await psycopg.AsyncConnection.connect(rig.database_url) as conn:
        cursor = await conn.execute(
            "SELECT is_starred, folder FROM emails WHERE account_id = %s AND provider_message_id = %s",
            (rig.account_id, archived),
        )
        assert await cursor.fetchone() == (True, "archive")
        cursor = await conn.execute(
            "SELECT subject, is_read FROM emails WHERE account_id = %s AND provider_message_id = %s",
            (rig.account_id, new_id),
        )
        assert await cursor.fetchone() == ("fresh news", False)


async def test_expired_history_resyncs_without_duplicates_or_gaps(rig_factory: RigFactory) -> None:
    rig = await rig_factory(150)
    await rig.sync()
    rows_before = await count_rows(rig.database_url, rig.account_id)
    ids = sorted(rig.emulator.state(USER))
    rig.emulator.add_message(USER, _raw("while away"))
    rig.emulator.delete_message(USER, ids[5])
    rig.emulator.expire_history(USER)
    report = await rig.sync()
    assert "resync" in report
    assert report["resync"].stored == 1  # only the new message was fetched: the rest was reused
    assert report["resync"].tombstoned == 1
    await rig.assert_in_sync()
    assert await count_rows(rig.database_url, rig.account_id) == rows_before + 1


async def test_a_full_sync_killed_midway_resumes_from_its_checkpoint(rig_factory: RigFactory) -> None:
    rig = await rig_factory(4000)
    stored_after: list[int] = []  # rows stored after each interruption
    for delay in (0.15, 0.3, 0.3, 0.3):
        task = asyncio.ensure_future(rig.sync())
        await asyncio.sleep(delay)
        if task.done():
            break
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Not run to its end: a cancellation lost in a Redis call (mail.cancellation) is honoured.
        assert task.cancelled()
        stored_after.append(await count_rows(rig.database_url, rig.account_id))
    assert len(stored_after) >= 2, "the sync finished before it could be interrupted; the test proves nothing"
    # The first interruption leaves the sync partway; a faster machine may store the rest before
    # a later one, so only the first is held below the total. Each restart keeps what was stored.
    assert stored_after[0] < 4000
    assert stored_after == sorted(stored_after)
    await rig.sync()
    await rig.assert_in_sync()
    assert await count_rows(rig.database_url, rig.account_id) == 4000


async def test_an_access_token_that_expires_midsync_is_refreshed(rig_factory: RigFactory) -> None:
    rig = await rig_factory(3000)
    task = asyncio.ensure_future(rig.sync())
    await asyncio.sleep(0.1)
    assert not task.done()
    rig.emulator.expire_access_tokens()
    await task
    await rig.assert_in_sync()


async def test_injected_server_errors_end_with_the_store_equal_to_the_mailbox(
    rig_factory: RigFactory,
) -> None:
    rig = await rig_factory(400, fault_rate=0.05)
    await rig.sync()
    rig.emulator.set_faults(fault_rate=0.0)
    await rig.assert_in_sync()


async def test_mailbox_changes_during_a_full_sync_are_caught_by_the_incremental_that_follows(
    rig_factory: RigFactory,
) -> None:
    rig = await rig_factory(3000)
    task = asyncio.ensure_future(rig.sync())
    changed: list[str] = []
    for round_number in range(10):
        await asyncio.sleep(0.05)
        ids = sorted(rig.emulator.state(USER))
        rig.emulator.delete_message(USER, ids[round_number * 7])
        rig.emulator.modify_labels(USER, ids[round_number * 11 + 3], add=("STARRED",))
        changed.append(rig.emulator.add_message(USER, _raw(f"during sync {round_number}")))
    assert not task.done(), "the changes must land while the full sync runs"
    await task
    await rig.sync()  # the next round applies what happened during the listing
    await rig.assert_in_sync()


async def test_reconcile_reports_and_repairs_a_gap(rig_factory: RigFactory) -> None:
    rig = await rig_factory(100)
    await rig.sync()
    victim = sorted(rig.emulator.state(USER))[10]
    async with await psycopg.AsyncConnection.connect(
        rig.database_url
    ) as conn:  # lose a message behind sync's back
        await conn.execute(
            "DELETE FROM emails WHERE account_id = %s AND provider_message_id = %s", (rig.account_id, victim)
        )
        await conn.commit()
    engine = await rig.engine()
    report = await engine.reconcile()
    assert report["missing_fetched"] == 1
    assert report["gap_found"] == 1
    await rig.assert_in_sync()
