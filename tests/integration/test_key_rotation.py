"""mail.key_rotation against a real Postgres: batches, restarts, corrupt rows, composite keys."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from mail.crypto import Keyring, key_id_of
from mail.errors import CryptoError, ValidationError
from mail.key_rotation import EncryptedColumn, column_context, rotate
from mail.store.pool import Pool

pytestmark = [pytest.mark.integration, pytest.mark.storage]

K1 = os.urandom(32)
K2 = os.urandom(32)
ROWS = 1_200


def _token(row_id: int) -> bytes:
    return f"oauth-refresh-token-{row_id}-".encode() * 3


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    connection = await psycopg.AsyncConnection.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def demo_table(database_url: str) -> AsyncIterator[EncryptedColumn]:
    """`secrets_demo_<hex>(id bigint primary key, token bytea)` with ROWS rows on key 1."""
    table = f"secrets_demo_{uuid.uuid4().hex[:10]}"
    column = EncryptedColumn(table=table, key_columns=("id",), column="token")
    old = Keyring({1: K1})
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        await connection.execute(
            sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, token bytea)").format(sql.Identifier(table))
        )
        async with connection.cursor() as cursor:
            await cursor.executemany(
                sql.SQL("INSERT INTO {} (id, token) VALUES (%s, %s)").format(sql.Identifier(table)),
                [
                    (row_id, old.encrypt(_token(row_id), context=column.context([row_id])))
                    for row_id in range(1, ROWS + 1)
                ],
            )
    yield column
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


async def _tokens(database_url: str, table: str) -> dict[int, bytes]:
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(
            sql.SQL("SELECT id, token FROM {} ORDER BY id").format(sql.Identifier(table))
        )
        return {int(row_id): bytes(token) for row_id, token in await cursor.fetchall()}


async def test_rotate_moves_every_row_to_the_newest_key(
    db_pool: Pool, database_url: str, demo_table: EncryptedColumn
) -> None:
    ring = Keyring({1: K1, 2: K2})
    report = await rotate(db_pool, ring, [demo_table], batch_size=500)

    assert report.newest_key_id == 2
    entry = report.for_column(demo_table.table, "token")
    assert (entry.scanned, entry.rewrapped) == (ROWS, ROWS)
    assert (report.scanned, report.rewrapped) == (ROWS, ROWS)

    stored = await _tokens(database_url, demo_table.table)
    assert len(stored) == ROWS
    only_new = Keyring({2: K2})  # key 1 can be retired now
    for row_id, blob in stored.items():
        assert key_id_of(blob) == 2
        assert only_new.decrypt(blob, context=demo_table.context([row_id])) == _token(row_id)

    again = await rotate(db_pool, ring, [demo_table], batch_size=500)
    assert (again.scanned, again.rewrapped) == (ROWS, 0)
    assert await _tokens(database_url, demo_table.table) == stored  # untouched


async def test_rotate_on_a_connection_with_exact_batches(
    conn: psycopg.AsyncConnection[tuple[object, ...]], database_url: str, demo_table: EncryptedColumn
) -> None:
    # 1,200 rows in batches of 400: the last full batch is followed by an empty one.
    report = await rotate(conn, Keyring({1: K1, 2: K2}), [demo_table], batch_size=400)
    assert (report.scanned, report.rewrapped) == (ROWS, ROWS)
    assert {key_id_of(blob) for blob in (await _tokens(database_url, demo_table.table)).values()} == {2}


async def test_corrupt_row_stops_rotation_and_keeps_committed_batches(
    db_pool: Pool, database_url: str, demo_table: EncryptedColumn
) -> None:
    table = sql.Identifier(demo_table.table)
    async with db_pool.connection() as connection:
        cursor = await connection.execute(sql.SQL("SELECT token FROM {} WHERE id = 750").format(table))
        row = await cursor.fetchone()
        assert row is not None
        good = bytes(row[0])
        corrupt = good[:-1] + bytes([good[-1] ^ 0x01])  # a flipped bit in the payload's tag
        await connection.execute(sql.SQL("UPDATE {} SET token = %s WHERE id = 750").format(table), [corrupt])

    ring = Keyring({1: K1, 2: K2})
    with pytest.raises(CryptoError) as info:
        await rotate(db_pool, ring, [demo_table], batch_size=500)
    message = str(info.value)
    assert f"{demo_table.table}.token row (id=750)" in message
    assert "does not authenticate" in message

    stored = await _tokens(database_url, demo_table.table)
    # Batch 1 (ids 1..500) committed; batch 2 (501..1000) rolled back as a whole; 1001.. not reached.
    assert {key_id_of(stored[i]) for i in range(1, 501)} == {2}
    assert {key_id_of(stored[i]) for i in range(501, ROWS + 1)} == {1}
    only_new = Keyring({2: K2})
    for row_id in range(1, 501):
        assert only_new.decrypt(stored[row_id], context=demo_table.context([row_id])) == _token(row_id)
    for row_id in range(501, ROWS + 1):
        if row_id != 750:
            assert ring.decrypt(stored[row_id], context=demo_table.context([row_id])) == _token(row_id)

    # Repair the row, run again: it picks up where the failure left off.
    async with db_pool.connection() as connection:
        await connection.execute(sql.SQL("UPDATE {} SET token = %s WHERE id = 750").format(table), [good])
    report = await rotate(db_pool, ring, [demo_table], batch_size=500)
    assert (report.scanned, report.rewrapped) == (ROWS, ROWS - 500)
    assert {key_id_of(blob) for blob in (await _tokens(database_url, demo_table.table)).values()} == {2}


async def test_composite_keys_nulls_and_moved_ciphertexts(database_url: str) -> None:
    table = f"secrets_pair_{uuid.uuid4().hex[:10]}"
    column = EncryptedColumn(table=table, key_columns=("account_id", "name"), column="secret")
    old, ring = Keyring({1: K1}), Keyring({1: K1, 2: K2})
    rows: list[tuple[int, str, bytes | None]] = [
        (
            account_id,
            name,
            old.encrypt(f"{account_id}/{name}".encode(), context=column.context([account_id, name])),
        )
        for account_id in (1, 2, 3)
        for name in ("a", "b:c", "b", "z\\")
    ]
    rows.append((4, "empty", None))
    # Write through a dict_row connection: rotate must not depend on the caller's row factory.
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as connection:
        ident = sql.Identifier(table)
        await connection.execute(
            sql.SQL(
                "CREATE TABLE {} (account_id bigint, name text, secret bytea, PRIMARY KEY (account_id, name))"
            ).format(ident)
        )
        async with connection.cursor() as cursor:
            await cursor.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(ident), rows)
        await connection.commit()
        try:
            report = await rotate(connection, ring, [column], batch_size=5)
            assert (report.scanned, report.rewrapped) == (13, 12)
            cursor = await connection.execute(
                sql.SQL("SELECT account_id, name, secret FROM {} ORDER BY 1, 2").format(ident)
            )
            stored = await cursor.fetchall()
            await connection.commit()
            for row in stored:
                if row["secret"] is None:
                    continue
                key = [row["account_id"], row["name"]]
                assert key_id_of(row["secret"]) == 2
                assert Keyring({2: K2}).decrypt(row["secret"], context=column.context(key)) == (
                    f"{row['account_id']}/{row['name']}".encode()
                )

            # A ciphertext copied into another row does not decrypt there, and rotation says where.
            moved = old.encrypt(b"x", context=column.context([1, "a"]))
            await connection.execute(
                sql.SQL("UPDATE {} SET secret = %s WHERE account_id = 2 AND name = 'b'").format(ident),
                [moved],
            )
            await connection.commit()
            with pytest.raises(CryptoError, match=rf"{table}\.secret row \(account_id=2, name='b'\)"):
                await rotate(connection, ring, [column], batch_size=5)
        finally:
            await connection.rollback()
            await connection.execute(sql.SQL("DROP TABLE {}").format(ident))
            await connection.commit()


async def test_rotate_refuses_a_connection_inside_a_transaction(
    conn: psycopg.AsyncConnection[tuple[object, ...]], demo_table: EncryptedColumn
) -> None:
    await conn.execute("SELECT 1")  # opens a transaction (autocommit is off)
    with pytest.raises(ValidationError, match="must be idle"):
        await rotate(conn, Keyring({1: K1, 2: K2}), [demo_table])
    await conn.rollback()


def test_column_context() -> None:
    assert column_context("accounts", "token", [7]) == b"accounts.token:7"
    assert column_context("t", "c", [1, "x"]) == b"t.c:1:x"
    # The separator is escaped, so different keys never share a context.
    assert column_context("t", "c", ["a:b", "c"]) != column_context("t", "c", ["a", "b:c"])
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert column_context("t", "c", [uid]) == b"t.c:12345678-1234-5678-1234-567812345678"
    with pytest.raises(ValidationError):
        column_context("t", "c", [1.5])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="key_columns is empty"):
        EncryptedColumn(table="t", key_columns=(), column="c")
