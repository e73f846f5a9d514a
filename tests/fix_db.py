"""Postgres fixtures: a dedicated database per session (and per test where a test needs an empty one)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from mail.store.migrations import migrate
from mail.store.pool import Pool, open_pool


def _with_database(server_url: str, name: str) -> str:
    return make_conninfo(server_url, dbname=name)


def create_database(server_url: str, prefix: str = "mailray_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # a generated name: hex digits only
    return _with_database(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(server_database_url: str) -> Iterator[str]:
    """A database of its own for the session, migrated."""
    url = create_database(server_database_url)
    asyncio.run(migrate(url))
    yield url
    drop_database(server_database_url, url)


@pytest.fixture
def empty_database_factory(server_database_url: str) -> Iterator[Callable[[], str]]:
    """Make empty databases (for migration tests); all are dropped after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(create_database(server_database_url))
        return made[-1]

    yield make
    for url in made:
        drop_database(server_database_url, url)


@pytest.fixture(scope="session")
async def db_pool(database_url: str) -> AsyncIterator[Pool]:
    pool = await open_pool(database_url, min_size=1, max_size=8)
    yield pool
    await pool.close()
