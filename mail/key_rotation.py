"""Key rotation: re-wrap every stored ciphertext under the keyring's newest key.

Encrypted columns are declared as `EncryptedColumn`s. Writers encrypt with
`column_context(table, column, key_values)` as the associated data, so a value only decrypts in
the row and column it was written to; `rotate` uses the same function to check each value before
re-wrapping it.

`rotate` walks each table in primary-key order (keyset pagination), one batch per transaction,
locking the batch with `SELECT ... FOR UPDATE`. Only the 48-byte wrapped data key changes
(`Keyring.rewrap`). Each batch commits on its own, so an interrupted rotation keeps its progress
and running it again is harmless: values already on the newest key are left alone.

Deploy the new key to every process that writes before rotating, so no writer keeps producing
values under the old key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from mail.crypto import Keyring
from mail.errors import CryptoError, StorageError, ValidationError

log = logging.getLogger(__name__)

KeyValue = int | str | UUID


def _escape(value: KeyValue) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str | UUID):
        raise ValidationError(
            f"column_context: key values must be int, str or UUID, got {type(value).__name__}",
            field="key_values",
        )
    # Escape the separator so ("a:b", "c") and ("a", "b:c") give different contexts.
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def column_context(table: str, column: str, key_values: Sequence[KeyValue]) -> bytes:
    """The associated data for a value in `table.column` of the row with these key values.

    `"{table}.{column}:{key1}:{key2}..."`, UTF-8. Pass key values as Postgres returns them
    (bigint -> int, text -> str, uuid -> UUID) so writers and `rotate` build the same bytes.
    """
    parts = [f"{table}.{column}", *(_escape(value) for value in key_values)]
    return ":".join(parts).encode("utf-8")


class EncryptedColumn(msgspec.Struct, frozen=True, kw_only=True):
    """A bytea column holding `mail.crypto` ciphertexts, and the unique key that names its rows.

    `table` may be schema-qualified (`"schema.table"`); `key_columns` must be a unique, non-null
    key (the primary key), in the order `column_context` joins their values.
    """

    table: str
    key_columns: tuple[str, ...]
    column: str

    def __post_init__(self) -> None:
        if not self.key_columns:
            raise ValidationError(f"{self.table}.{self.column}: key_columns is empty", field="key_columns")
        if self.column in self.key_columns:
            raise ValidationError(
                f"{self.table}.{self.column}: the encrypted column cannot be part of the key",
                field="column",
            )

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"

    def context(self, key_values: Sequence[KeyValue]) -> bytes:
        """`column_context` for a row of this column."""
        return column_context(self.table, self.column, key_values)


class ColumnRotation(msgspec.Struct, frozen=True, kw_only=True):
    table: str
    column: str
    scanned: int  # rows visited, NULLs included
    rewrapped: int  # values moved to the newest key


class RotationReport(msgspec.Struct, frozen=True, kw_only=True):
    newest_key_id: int
    columns: tuple[ColumnRotation, ...]
    elapsed_s: float

    @property
    def scanned(self) -> int:
        return sum(column.scanned for column in self.columns)

    @property
    def rewrapped(self) -> int:
        return sum(column.rewrapped for column in self.columns)

    def for_column(self, table: str, column: str) -> ColumnRotation:
        for entry in self.columns:
            if entry.table == table and entry.column == column:
                return entry
        raise KeyError(f"{table}.{column}")


ConnOrPool = psycopg.AsyncConnection[Any] | AsyncConnectionPool[Any]


async def rotate(
    conn_or_pool: ConnOrPool,
    keyring: Keyring,
    columns: Sequence[EncryptedColumn],
    *,
    batch_size: int = 500,
) -> RotationReport:
    """Re-wrap every value in `columns` that is not on `keyring.newest_id`.

    A connection must be idle (not inside a transaction): each batch commits on its own.
    A value that does not decrypt raises CryptoError naming its table, column and row key; the
    batches before it stay committed and that batch is rolled back.
    """
    if batch_size < 1:
        raise ValidationError(f"rotate: batch_size must be at least 1, got {batch_size}", field="batch_size")
    started = time.monotonic()
    results = []
    for column in columns:
        results.append(await _rotate_column(conn_or_pool, keyring, column, batch_size))
    report = RotationReport(
        newest_key_id=keyring.newest_id, columns=tuple(results), elapsed_s=time.monotonic() - started
    )
    log.info(
        "key rotation to key %d: %d values re-wrapped of %d rows in %.1f s",
        report.newest_key_id,
        report.rewrapped,
        report.scanned,
        report.elapsed_s,
    )
    return report


@asynccontextmanager
async def _connection(conn_or_pool: ConnOrPool) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    if isinstance(conn_or_pool, AsyncConnectionPool):
        async with conn_or_pool.connection() as conn:
            yield conn
        return
    status = conn_or_pool.info.transaction_status
    if status != TransactionStatus.IDLE:
        # Inside a transaction, `conn.transaction()` would only make savepoints: nothing would
        # commit per batch, and progress would be lost on error.
        raise ValidationError(
            f"rotate: the connection must be idle, not {status.name}; commit or roll back first",
            field="conn_or_pool",
        )
    yield conn_or_pool


def _table_identifier(table: str) -> sql.Identifier:
    return sql.Identifier(*table.split("."))


def _statements(column: EncryptedColumn) -> tuple[sql.Composed, sql.Composed, sql.Composed]:
    table = _table_identifier(column.table)
    keys = sql.SQL(", ").join(sql.Identifier(name) for name in column.key_columns)
    placeholders = sql.SQL(", ").join(sql.Placeholder() for _ in column.key_columns)
    value = sql.Identifier(column.column)
    # FOR UPDATE: a concurrent writer of the same row waits, so its new value is not overwritten.
    select = "SELECT {keys}, {value} FROM {table}"
    tail = " ORDER BY {keys} LIMIT {limit} FOR UPDATE"
    first = sql.SQL(select + tail).format(keys=keys, value=value, table=table, limit=sql.Placeholder())
    after = sql.SQL(select + " WHERE ({keys}) > ({placeholders})" + tail).format(
        keys=keys, value=value, table=table, placeholders=placeholders, limit=sql.Placeholder()
    )
    update = sql.SQL("UPDATE {table} SET {value} = %s WHERE {match}").format(
        table=table,
        value=value,
        match=sql.SQL(" AND ").join(
            sql.SQL("{} = %s").format(sql.Identifier(name)) for name in column.key_columns
        ),
    )
    return first, after, update


def _row_name(column: EncryptedColumn, key: Sequence[Any]) -> str:
    pairs = ", ".join(f"{name}={value!r}" for name, value in zip(column.key_columns, key, strict=True))
    return f"{column.name} row ({pairs})"


async def _rotate_column(
    conn_or_pool: ConnOrPool, keyring: Keyring, column: EncryptedColumn, batch_size: int
) -> ColumnRotation:
    first, after, update = _statements(column)
    width = len(column.key_columns)
    scanned = rewrapped = 0
    last_key: tuple[Any, ...] | None = None
    while True:
        try:
            async with _connection(conn_or_pool) as conn, conn.transaction():
                # tuple_row whatever the connection's default: the code below indexes rows.
                cursor = conn.cursor(row_factory=tuple_row)
                if last_key is None:
                    await cursor.execute(first, (batch_size,))
                else:
                    await cursor.execute(after, (*last_key, batch_size))
                rows = await cursor.fetchall()
                updates = [
                    (new_value, *row[:width])
                    for row in rows
                    if (new_value := _rewrapped(keyring, column, row[:width], row[width])) is not None
                ]
                if updates:
                    await cursor.executemany(update, updates)
        except psycopg.Error as error:
            raise StorageError(f"key rotation of {column.name} failed: {error}") from error
        scanned += len(rows)
        rewrapped += len(updates)
        if len(rows) < batch_size:
            break
        last_key = tuple(rows[-1][:width])
    log.info("key rotation: %s: %d values re-wrapped of %d rows", column.name, rewrapped, scanned)
    return ColumnRotation(table=column.table, column=column.column, scanned=scanned, rewrapped=rewrapped)


def _rewrapped(keyring: Keyring, column: EncryptedColumn, key: Sequence[Any], value: Any) -> bytes | None:
    """The value under the newest key, or None when it needs no change (NULL, already newest)."""
    if value is None:
        return None
    blob = bytes(value)
    try:
        if not keyring.needs_rewrap(blob):
            return None
        return keyring.rewrap(blob, context=column.context(key))
    except CryptoError as error:
        raise CryptoError(f"{_row_name(column, key)}: {error.message}") from error
