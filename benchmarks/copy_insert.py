"""COPY vs INSERT into `emails` (with a computed tsvector) on the database named by
MAILRAY_DATABASE__URL (default: this machine's Postgres). Prints one JSON line per figure.

Each run works in a scratch database it creates and drops, so it never touches real data.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from mail.store.bulk import copy_rows, copy_upsert
from mail.store.migrations import migrate

ROWS = 20_000
SERVER_URL = os.environ.get("MAILRAY_DATABASE__URL", "postgresql://postgres@127.0.0.1:5432/test")
COLUMNS = ("workspace_id", "account_id", "provider_message_id", "subject", "snippet", "email_date")


def _rows(workspace: uuid.UUID, account: uuid.UUID, tag: str) -> list[tuple[object, ...]]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        (
            workspace,
            account,
            f"{tag}-{i}",
            f"Subject {i} about renewal",
            "snippet " * 10,
            start + timedelta(seconds=i),
        )
        for i in range(ROWS)
    ]


async def main() -> None:
    name = f"mailray_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(SERVER_URL, dbname=name)
    try:
        await migrate(url)
        workspace, account = uuid.uuid4(), uuid.uuid4()
        async with await psycopg.AsyncConnection.connect(url) as conn:
            rows = _rows(workspace, account, "insert")
            started = time.perf_counter()
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO emails (workspace_id, account_id, provider_message_id, subject, snippet, email_date) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    rows,
                )
            await conn.commit()
            insert_s = time.perf_counter() - started

            rows = _rows(workspace, account, "copy")
            started = time.perf_counter()
            await copy_rows(conn, "emails", COLUMNS, rows)
            await conn.commit()
            copy_s = time.perf_counter() - started

            rows = [(*row, "body words for search") for row in _rows(workspace, account, "upsert")]
            started = time.perf_counter()
            await copy_upsert(
                conn,
                "emails",
                (*COLUMNS, "search_text"),
                rows,
                staging_columns={"search_text": "text"},
                computed={
                    "search_vector": sql.SQL(
                        "to_tsvector('english', coalesce(subject, '') || ' ' || coalesce(search_text, ''))"
                    )
                },
            )
            await conn.commit()
            upsert_s = time.perf_counter() - started
        host = conninfo_to_dict(SERVER_URL).get("host", "local socket")
        for figure, seconds in (
            ("executemany_insert", insert_s),
            ("copy", copy_s),
            ("copy_upsert_with_tsvector", upsert_s),
        ):
            print(
                json.dumps(
                    {
                        "benchmark": "emails.bulk_insert",
                        "method": figure,
                        "rows": ROWS,
                        "rows_per_s": round(ROWS / seconds),
                        "server": host,
                    }
                )
            )
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    asyncio.run(main())
