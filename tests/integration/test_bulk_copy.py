"""mail.store.bulk against a real Postgres: COPY, and COPY through a staging table with skipped
duplicates, computed columns and RETURNING."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mail.store.bulk import copy_rows, copy_upsert
from mail.store.pool import Pool

pytestmark = [pytest.mark.integration, pytest.mark.storage]

CONTACT_COLUMNS = ("workspace_id", "email", "first_name", "last_name", "company", "source", "first_seen_at")
EMAIL_COLUMNS = (
    "workspace_id",
    "account_id",
    "provider_message_id",
    "email_date",
    "subject",
    "search_text",
)
# A column made from a staged one that is not stored itself (as a body's text that is stored
# only encrypted); searched below with to_tsvector at query time.
COMPUTED_SNIPPET = sql.SQL("coalesce(subject, '') || ' ' || search_text")
BASE_DATE = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
async def workspace_id(db_pool: Pool) -> AsyncIterator[uuid.UUID]:
    workspace = uuid.uuid4()
    async with db_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO workspaces (id, name, slug) VALUES (%s, %s, %s)",
            (workspace, "bulk test", f"bulk-{workspace.hex}"),
        )
    yield workspace
    async with db_pool.connection() as conn:
        await conn.execute("DELETE FROM emails WHERE workspace_id = %s", (workspace,))
        await conn.execute("DELETE FROM workspaces WHERE id = %s", (workspace,))


async def _emails(
    conn: psycopg.AsyncConnection[Any], upsert_rows: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    return await copy_upsert(
        conn,
        "emails",
        EMAIL_COLUMNS,
        upsert_rows,
        conflict_columns=None,
        staging_columns={"search_text": "text"},
        computed={"snippet": COMPUTED_SNIPPET},
        returning=("id",),
    )


def _email_row(
    workspace: uuid.UUID, account: uuid.UUID, n: int, *, subject: str | None = None
) -> tuple[Any, ...]:
    # Every tenth message mentions a word that appears only in its (would-be encrypted) body.
    body = f"message body {n} about the zanzibar shipment" if n % 10 == 0 else f"message body {n} routine"
    return (
        workspace,
        account,
        f"msg-{n:05d}",
        BASE_DATE + timedelta(minutes=n),
        subject if subject is not None else f"Quarterly report {n}",
        body,
    )


async def _count(db_pool: Pool, query: str, params: tuple[Any, ...]) -> int:
    async with db_pool.connection() as conn:
        cursor = await conn.execute(query, params)
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


# --- copy_rows ----------------------------------------------------------------------------------


async def test_copy_rows_inserts_twenty_thousand_contacts(db_pool: Pool, workspace_id: uuid.UUID) -> None:
    seen = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    tricky = 'O\'Brien\t"tab"\\back\nslash ünïcode'

    def rows() -> Any:
        for i in range(20_000):
            last = None if i % 7 == 0 else (tricky if i == 13 else f"Last{i}")
            yield (workspace_id, f"user{i}@example.com", f"First{i}", last, "Acme", "import", seen)

    async with db_pool.connection() as conn:
        sent = await copy_rows(conn, "contacts", CONTACT_COLUMNS, rows())
    assert sent == 20_000

    assert (
        await _count(db_pool, "SELECT count(*) FROM contacts WHERE workspace_id = %s", (workspace_id,))
        == 20_000
    )
    async with db_pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT email, first_name, last_name, company, source, first_seen_at, status "
            "FROM contacts WHERE workspace_id = %s AND email = ANY(%s) ORDER BY email",
            (workspace_id, ["user0@example.com", "user13@example.com", "user19998@example.com"]),
        )
        sample = await cursor.fetchall()
        cursor = await conn.execute(
            "SELECT count(DISTINCT email), count(last_name), min(first_seen_at), max(first_seen_at) "
            "FROM contacts WHERE workspace_id = %s",
            (workspace_id,),
        )
        aggregate = await cursor.fetchone()
    assert sample == [
        ("user0@example.com", "First0", None, "Acme", "import", seen, "active"),
        ("user13@example.com", "First13", tricky, "Acme", "import", seen, "active"),
        ("user19998@example.com", "First19998", "Last19998", "Acme", "import", seen, "active"),
    ]
    assert aggregate == (20_000, 20_000 - len(range(0, 20_000, 7)), seen, seen)


@pytest.mark.parametrize(
    "bad_value",
    ["not a date", object()],
    ids=["rejected-by-postgres", "not-adaptable-in-python"],
)
async def test_copy_rows_with_a_bad_row_inserts_nothing(
    db_pool: Pool, workspace_id: uuid.UUID, bad_value: object
) -> None:
    seen = datetime(2026, 1, 2, tzinfo=UTC)
    rows = [
        (workspace_id, f"u{i}@example.com", "F", "L", "Acme", "api", bad_value if i == 500 else seen)
        for i in range(1_000)
    ]
    with pytest.raises(psycopg.Error):
        async with db_pool.connection() as conn:
            await copy_rows(conn, "contacts", CONTACT_COLUMNS, rows)
    assert (
        await _count(db_pool, "SELECT count(*) FROM contacts WHERE workspace_id = %s", (workspace_id,)) == 0
    )


# --- copy_upsert --------------------------------------------------------------------------------


async def test_copy_upsert_skips_duplicates_and_returns_only_new_ids(
    db_pool: Pool, workspace_id: uuid.UUID
) -> None:
    account = uuid.uuid4()
    first_batch = [_email_row(workspace_id, account, n) for n in range(300)]
    first_batch.append(first_batch[0])  # a duplicate inside the batch is skipped too
    async with db_pool.connection() as conn:
        first = await _emails(conn, first_batch)
    first_ids = {row[0] for row in first}
    assert len(first) == len(first_ids) == 300

    # 100 already stored (re-sent with another subject: DO NOTHING keeps the stored row), 50 new.
    second_batch = [_email_row(workspace_id, account, n, subject="changed") for n in range(200, 350)]
    async with db_pool.connection() as conn:
        second = await _emails(conn, second_batch)
        cursor = await conn.execute(
            "SELECT id, provider_message_id, subject FROM emails WHERE account_id = %s", (account,)
        )
        stored = {message_id: (row_id, subject) for row_id, message_id, subject in await cursor.fetchall()}
    second_ids = {row[0] for row in second}
    assert len(second) == len(second_ids) == 50
    assert not first_ids & second_ids

    assert len(stored) == 350
    assert {row_id for row_id, _ in stored.values()} == first_ids | second_ids
    assert {stored[f"msg-{n:05d}"][0] for n in range(300, 350)} == second_ids
    assert stored["msg-00250"][1] == "Quarterly report 250"  # the duplicate did not overwrite
    assert stored["msg-00300"][1] == "changed"


async def test_same_message_id_on_another_date_or_account_is_not_a_duplicate(
    db_pool: Pool, workspace_id: uuid.UUID
) -> None:
    account, other_account = uuid.uuid4(), uuid.uuid4()
    row = _email_row(workspace_id, account, 1)
    other_date = (*row[:3], row[3] + timedelta(days=40), *row[4:])
    other_owner = (row[0], other_account, *row[2:])
    async with db_pool.connection() as conn:
        assert len(await _emails(conn, [row])) == 1
        assert len(await _emails(conn, [row, other_date, other_owner])) == 2


async def test_full_text_search_finds_words_only_in_the_staged_text(
    db_pool: Pool, workspace_id: uuid.UUID
) -> None:
    account = uuid.uuid4()
    async with db_pool.connection() as conn:
        await _emails(conn, [_email_row(workspace_id, account, n) for n in range(200)])
        cursor = await conn.execute(
            "SELECT count(*) FROM emails WHERE account_id = %s AND subject ILIKE '%%zanzibar%%'", (account,)
        )
        in_subject = await cursor.fetchone()
        cursor = await conn.execute(
            "SELECT provider_message_id FROM emails WHERE account_id = %s "
            "AND to_tsvector('english', snippet) @@ plainto_tsquery('english', %s)",
            (account, "Zanzibar shipments"),  # case and plural: the english configuration stems both
        )
        by_body = {row[0] for row in await cursor.fetchall()}
        cursor = await conn.execute(
            "SELECT count(*) FROM emails WHERE account_id = %s "
            "AND to_tsvector('english', snippet) @@ plainto_tsquery('english', 'quarterly')",
            (account,),
        )
        by_subject = await cursor.fetchone()
    assert in_subject == (0,)
    assert by_body == {f"msg-{n:05d}" for n in range(0, 200, 10)}
    assert by_subject == (200,)


async def test_copy_upsert_twice_in_one_transaction(db_pool: Pool, workspace_id: uuid.UUID) -> None:
    account = uuid.uuid4()
    async with db_pool.connection() as conn, conn.transaction():
        first = await _emails(conn, [_email_row(workspace_id, account, n) for n in range(0, 60)])
        # Overlaps the first call by 10 rows, which are still uncommitted: skipped all the same.
        second = await _emails(conn, [_email_row(workspace_id, account, n) for n in range(50, 100)])
        assert len(first) == 60
        assert len(second) == 40
        assert not {r[0] for r in first} & {r[0] for r in second}
    assert await _count(db_pool, "SELECT count(*) FROM emails WHERE account_id = %s", (account,)) == 100
    assert (
        await _count(
            db_pool,
            "SELECT count(*) FROM emails WHERE account_id = %s AND to_tsvector('english', snippet) @@ plainto_tsquery('english', 'zanzibar')",
            (account,),
        )
        == 10
    )


async def test_staged_rows_do_not_leak_into_the_next_call(db_pool: Pool, workspace_id: uuid.UUID) -> None:
    """bounces has no unique key but its id: a row left in the staging table would be inserted again."""

    async def bounce(conn: psycopg.AsyncConnection[Any], emails: list[str]) -> int:
        inserted = await copy_upsert(
            conn,
            "bounces",
            ("workspace_id", "recipient_email", "bounce_type"),
            [(workspace_id, email, "hard") for email in emails],
            returning=("id",),
        )
        return len(inserted)

    async with db_pool.connection() as conn, conn.transaction():
        assert await bounce(conn, ["a@x.test", "b@x.test", "c@x.test"]) == 3
        assert await bounce(conn, ["d@x.test", "e@x.test"]) == 2
    async with db_pool.connection() as conn:
        assert await bounce(conn, ["f@x.test"]) == 1
        cursor = await conn.execute(
            "SELECT recipient_email FROM bounces WHERE workspace_id = %s ORDER BY 1", (workspace_id,)
        )
        assert [row[0] for row in await cursor.fetchall()] == [f"{c}@x.test" for c in "abcdef"]


async def test_copy_upsert_on_an_autocommit_connection(database_url: str, workspace_id: uuid.UUID) -> None:
    account = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        assert len(await _emails(conn, [_email_row(workspace_id, account, n) for n in range(5)])) == 5
        assert len(await _emails(conn, [_email_row(workspace_id, account, n) for n in range(3, 8)])) == 3
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT count(*) FROM emails WHERE account_id = %s", (account,))
        assert await cursor.fetchone() == (8,)


async def test_a_bad_row_raises_and_inserts_nothing(db_pool: Pool, workspace_id: uuid.UUID) -> None:
    account = uuid.uuid4()
    rows = [_email_row(workspace_id, account, n) for n in range(300)]
    rows[150] = (*rows[150][:3], "not a date", *rows[150][4:])
    with pytest.raises(psycopg.errors.DataError):
        async with db_pool.connection() as conn:
            await _emails(conn, rows)
    assert await _count(db_pool, "SELECT count(*) FROM emails WHERE account_id = %s", (account,)) == 0


async def test_a_failed_call_inside_a_transaction_leaves_the_earlier_work(
    db_pool: Pool, workspace_id: uuid.UUID
) -> None:
    account = uuid.uuid4()
    async with db_pool.connection() as conn, conn.transaction():
        assert len(await _emails(conn, [_email_row(workspace_id, account, n) for n in range(10)])) == 10
        bad = [_email_row(workspace_id, account, n) for n in range(10, 20)]
        bad[5] = (*bad[5][:4], None, *bad[5][5:])  # subject is NOT NULL in emails
        with pytest.raises(psycopg.errors.NotNullViolation):
            await _emails(conn, bad)
        # The transaction is still usable, and a later call works.
        assert len(await _emails(conn, [_email_row(workspace_id, account, n) for n in range(20, 25)])) == 5
    async with db_pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT provider_message_id FROM emails WHERE account_id = %s ORDER BY 1", (account,)
        )
        ids = [row[0] for row in await cursor.fetchall()]
    assert ids == [f"msg-{n:05d}" for n in [*range(10), *range(20, 25)]]


async def test_a_computed_column_may_be_not_null(db_pool: Pool, workspace_id: uuid.UUID) -> None:
    """workspace_id is NOT NULL in contacts; while staged it is empty, and computed on the way in."""
    async with db_pool.connection() as conn:
        inserted = await copy_upsert(
            conn,
            "contacts",
            ("email", "first_name"),
            [(f"c{i}@example.com", f"C{i}") for i in range(20)],
            computed={"workspace_id": sql.SQL("{}::uuid").format(sql.Literal(str(workspace_id)))},
            returning=("id", "workspace_id"),
        )
    assert len(inserted) == 20
    assert {row[1] for row in inserted} == {workspace_id}


async def test_staging_spends_no_sequence_values(db_pool: Pool, workspace_id: uuid.UUID) -> None:
    """Only inserted rows take an emails id: the staging table has no nextval default."""
    account = uuid.uuid4()
    async with db_pool.connection() as conn:
        cursor = await conn.execute("SELECT nextval('emails_id_seq')")
        before = await cursor.fetchone()
        inserted = await _emails(conn, [_email_row(workspace_id, account, n) for n in range(100)])
        cursor = await conn.execute("SELECT nextval('emails_id_seq')")
        after = await cursor.fetchone()
    assert before is not None and after is not None
    assert len(inserted) == 100
    assert after[0] - before[0] == 101  # 100 rows and the second nextval itself
