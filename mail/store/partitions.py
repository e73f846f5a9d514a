"""Keep monthly partitions of the partitioned tables ready ahead of time.

`ensure_partitions` is the job: run at start-up (`mailray up`, `mailray migrate`), daily by the
runner, and on demand with `mailray partitions`. It is idempotent and safe to run concurrently.
"""

from __future__ import annotations

from datetime import date

import msgspec
import psycopg

PARTITIONED_TABLES: tuple[str, ...] = ("emails", "tracking_events")


class PartitionResult(msgspec.Struct, frozen=True):
    table: str
    month: date
    result: str  # created | exists | skipped: default holds rows


def month_starts(today: date, *, behind: int, ahead: int) -> list[date]:
    """First days of the months from `behind` months before today to `ahead` months after."""
    index = today.year * 12 + (today.month - 1)
    return [date(i // 12, i % 12 + 1, 1) for i in range(index - behind, index + ahead + 1)]


async def ensure_partitions(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
    *,
    today: date | None = None,
    months_behind: int = 12,
    months_ahead: int = 3,
    tables: tuple[str, ...] = PARTITIONED_TABLES,
) -> list[PartitionResult]:
    months = month_starts(today or date.today(), behind=months_behind, ahead=months_ahead)
    results: list[PartitionResult] = []
    for table in tables:
        for month in months:
            async with conn.transaction():
                cursor = await conn.execute(
                    "SELECT mailray_ensure_month_partition(%s::regclass, %s)", (table, month)
                )
                row = await cursor.fetchone()
            assert row is not None
            results.append(PartitionResult(table, month, str(row[0])))
    return results
