"""Redis fixtures. The server comes from tests.fix_services (`redis_url`); tests use unique keys
rather than flushing, so they can share a server with anything else."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

from mail.store.redis_client import create_redis


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis_asyncio.Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"
