from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import psycopg
import pytest

from mail.store.migrations import migrate
from mail.store.partitions import ensure_partitions, month_starts

pytestmark = [pytest.mark.integration, pytest.mark.storage]


def test_month_starts_crosses_years() -> None:
    assert month_starts(date(2026, 1, 15), behind=1, ahead=2) == [
        date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1),
    ]  # fmt: skip


async def test_partitions_are_created_once_and_rows_route_to_them(
    empty_database_factory: Callable[[], str],
) -> None:
    url = empty_database_factory()
    await migrate(url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        first = await ensure_partitions(conn, today=date(2026, 11, 25), months_behind=1, months_ahead=2)
        assert {r.result for r in first} == {"created"}
        assert len(first) == 8  # 4 months x 2 tables
        again = await ensure_partitions(conn, today=date(2026, 11, 25), months_behind=1, months_ahead=2)
        assert {r.result for r in again} == {"exists"}

        workspace = "00000000-0000-0000-0000-000000000001"
        for when in (datetime(2026, 12, 3, tzinfo=UTC), datetime(2002, 8, 1, tzinfo=UTC)):
            await conn.execute(
                "INSERT INTO emails (workspace_id, account_id, email_date) VALUES (%s, %s, %s)",
                (workspace, workspace, when),
            )
        cursor = await conn.execute(
            "SELECT tableoid::regclass::text, email_date FROM emails ORDER BY email_date"
        )
        rows = await cursor.fetchall()
        assert [r[0] for r in rows] == ["emails_default", "emails_2026_12"]


async def test_a_month_whose_rows_sit_in_default_is_skipped_not_moved(
    empty_database_factory: Callable[[], str],
) -> None:
    url = empty_database_factory()
    await migrate(url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        workspace = "00000000-0000-0000-0000-000000000001"
        await conn.execute(
            "INSERT INTO emails (workspace_id, account_id, email_date) VALUES (%s, %s, %s)",
            (workspace, workspace, datetime(2026, 3, 9, tzinfo=UTC)),
        )
        results = await ensure_partitions(
            conn, today=date(2026, 3, 1), months_behind=0, months_ahead=1, tables=("emails",)
        )
        assert [r.result for r in results] == ["skipped: default holds rows", "created"]
        cursor = await conn.execute("SELECT count(*) FROM emails")
        assert await cursor.fetchone() == (1,)
