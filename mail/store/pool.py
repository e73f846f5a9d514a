"""The psycopg 3 async connection pool every mailray process shares its database through."""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from mail.errors import StorageError
from models.settings import DatabaseSettings

Pool = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]


async def open_pool(
    url: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 10.0, name: str = "mailray"
) -> Pool:
    """Open a pool and wait until its first connection works; StorageError if it cannot."""
    pool: Pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        name=name,
        open=False,
        kwargs={"application_name": name},
        check=AsyncConnectionPool.check_connection,
    )
    try:
        await pool.open(wait=True, timeout=timeout_s)
    except Exception as error:  # psycopg_pool raises PoolTimeout wrapping the connect error
        await pool.close()
        raise StorageError(f"cannot connect to Postgres: {error}") from error
    return pool


async def open_pool_from_settings(settings: DatabaseSettings, url: str) -> Pool:
    return await open_pool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout_s=settings.connect_timeout_s,
    )
