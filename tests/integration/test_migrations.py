from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from mail.errors import StorageError
from mail.store.migrations import applied, discover, migrate

pytestmark = [pytest.mark.integration, pytest.mark.storage]

EXPECTED_TABLES = {
    "workspaces", "users", "api_keys", "email_accounts", "emails", "threads", "contacts",
    "attachments", "labels", "sync_state", "tracking_links", "tracked_email_links", "tracking_events", "campaigns",
    "campaign_variants", "campaign_recipients", "contact_tags", "suppressions", "bounces",
    "audit_log", "email_engagement",
}  # fmt: skip


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


async def test_migrate_from_empty_creates_the_whole_schema(
    empty_database_factory: Callable[[], str],
) -> None:
    url = empty_database_factory()
    done = await migrate(url)
    assert [m.version for m in done] == [m.version for m in discover()]
    assert _tables(url) >= EXPECTED_TABLES
    assert [a.version for a in await applied(url)] == [m.version for m in discover()]


async def test_migrate_twice_applies_nothing_the_second_time(
    empty_database_factory: Callable[[], str],
) -> None:
    url = empty_database_factory()
    await migrate(url)
    assert await migrate(url) == []


def _migrate_in_process(url: str) -> int:
    return len(asyncio.run(migrate(url)))


def test_concurrent_migrate_from_several_processes_applies_each_file_once(
    empty_database_factory: Callable[[], str],
) -> None:
    url = empty_database_factory()
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        counts = pool.map(_migrate_in_process, [url] * 4)
    # Exactly one process applied everything; the others found it done.
    assert sorted(counts) == [0, 0, 0, len(discover())]
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version, count(*) FROM schema_migrations GROUP BY version").fetchall()
    assert all(count == 1 for _, count in rows)


async def test_an_edited_applied_migration_is_refused(
    empty_database_factory: Callable[[], str], tmp_path: Path
) -> None:
    url = empty_database_factory()
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_table (id int);")
    await migrate(url, directory=tmp_path)
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_table (id bigint);")
    with pytest.raises(StorageError, match="changed after it was applied"):
        await migrate(url, directory=tmp_path)


async def test_a_failing_migration_rolls_back_and_is_not_recorded(
    empty_database_factory: Callable[[], str], tmp_path: Path
) -> None:
    url = empty_database_factory()
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(StorageError, match="0002_bad failed"):
        await migrate(url, directory=tmp_path)
    assert [a.version for a in await applied(url)] == [1]
    assert "half" not in _tables(url)


def test_misnamed_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_oops.sql").write_text("SELECT 1;")
    with pytest.raises(StorageError, match=r"expected NNNN_name\.sql"):
        discover(tmp_path)


async def test_link_lists_migration_keeps_the_links_of_emails_tracked_before_it(
    empty_database_factory: Callable[[], str], tmp_path: Path
) -> None:
    """0010 moves each email's link rows into one tracked_email_links row, positions in order;
    the rows stay in tracking_links with their counters."""
    url = empty_database_factory()
    for migration in discover():
        if migration.version < 10:
            (tmp_path / f"{migration.version:04d}_{migration.name}.sql").write_text(migration.sql)
    await migrate(url, directory=tmp_path)
    with psycopg.connect(url) as conn:
        created = conn.execute(
            "INSERT INTO workspaces (name, slug) VALUES ('w', 'w') RETURNING id"
        ).fetchone()
        assert created is not None
        workspace = created[0]
        conn.execute(
            "INSERT INTO tracking_links (workspace_id, email_id, position, url, link_text, clicks) VALUES "
            "(%(w)s, 7, 2, 'https://b.test/', NULL, 0), (%(w)s, 7, 0, 'https://a.test/', 'A', 3), "
            "(%(w)s, 8, 0, 'https://c.test/', 'C', 0)",
            {"w": workspace},
        )
    await migrate(url)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT email_id, positions, urls, texts FROM tracked_email_links ORDER BY email_id"
        )
        assert rows.fetchall() == [
            (7, [0, 2], ["https://a.test/", "https://b.test/"], ["A", None]),
            (8, [0], ["https://c.test/"], ["C"]),
        ]
        assert conn.execute("SELECT count(*), sum(clicks) FROM tracking_links").fetchone() == (3, 3)
