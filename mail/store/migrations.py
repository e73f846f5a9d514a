"""SQL migrations: numbered files in `mail/store/sql/`, applied in order, each in a transaction.

Applied versions are recorded in `schema_migrations` with a checksum. A session-level advisory
lock serialises concurrent runs (several processes starting at once), so running `migrate`
twice, or from many processes, applies each file exactly once. A file changed after it was
applied is refused rather than silently skipped.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path

import msgspec
import psycopg

from mail.errors import StorageError

SQL_DIR = Path(__file__).parent / "sql"
# pg_advisory_lock key: "mailray" in ASCII, so it is recognisable in pg_locks.
MIGRATION_LOCK_KEY = int.from_bytes(b"mailray", "big")
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str
    checksum: str


class AppliedMigration(msgspec.Struct, frozen=True):
    version: int
    name: str
    applied_at: datetime


def discover(directory: Path = SQL_DIR) -> list[Migration]:
    """The migration files in version order; StorageError for a misnamed or duplicate file."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise StorageError(f"migration file {path.name}: expected NNNN_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise StorageError(f"migration version {version} appears twice ({path.name})")
        sql = path.read_text()
        migrations[version] = Migration(
            version, match.group(2), sql, hashlib.sha256(sql.encode()).hexdigest()
        )
    return [migrations[version] for version in sorted(migrations)]


async def migrate(url: str, *, directory: Path = SQL_DIR) -> list[Migration]:
    """Apply pending migrations; return the ones this call applied."""
    migrations = discover(directory)
    applied_now: list[Migration] = []
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    except psycopg.Error as error:
        raise StorageError(f"cannot connect to Postgres to migrate: {error}") from error
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            await conn.execute(_CREATE_TABLE)
            cursor = await conn.execute("SELECT version, checksum FROM schema_migrations")
            recorded: dict[int, str] = dict(await cursor.fetchall())
            for migration in migrations:
                checksum = recorded.get(migration.version)
                if checksum is not None:
                    if checksum != migration.checksum:
                        raise StorageError(
                            f"migration {migration.version:04d}_{migration.name} changed after it was "
                            "applied; add a new migration instead of editing an applied one"
                        )
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(migration.sql.encode())
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                except psycopg.Error as error:
                    raise StorageError(
                        f"migration {migration.version:04d}_{migration.name} failed: {error}"
                    ) from error
                applied_now.append(migration)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


async def applied(url: str) -> list[AppliedMigration]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        row = await cursor.fetchone()
        if not row or not row[0]:
            return []
        cursor = await conn.execute(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
        )
        return [AppliedMigration(*record) for record in await cursor.fetchall()]
