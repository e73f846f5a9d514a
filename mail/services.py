"""The shared handles a mailray process works with: settings, the Postgres pool, Redis, keys.

Opened once per process (an API replica, an actor, the CLI) from settings whose database and
Redis URLs are already resolved (see cluster.bootstrap), and closed on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio

from mail.crypto import Keyring, load_keyring
from mail.errors import ConfigError
from mail.store.pool import Pool, open_pool_from_settings
from mail.store.redis_client import create_redis_from_settings
from models.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    pool: Pool
    redis: redis.asyncio.Redis
    keyring: Keyring

    async def close(self) -> None:
        await self.pool.close()
        await self.redis.aclose()


async def open_services(settings: Settings) -> Services:
    database_url, redis_url = settings.database.url, settings.redis.url
    if not database_url or not redis_url:
        raise ConfigError(
            "settings: database.url and redis.url must be resolved before opening services "
            "(start the embedded ones with `mailray up`)"
        )
    keyring = load_keyring(settings)
    pool = await open_pool_from_settings(settings.database, database_url)
    client = create_redis_from_settings(settings.redis, redis_url)
    return Services(settings=settings, pool=pool, redis=client, keyring=keyring)
