"""The AnalysisWorker's doorbell: sync rings it after storing new mail, the worker waits on it.

A Redis list holding at most one element: ringing twice before the worker looks is one ring. The
database is what says what is left to do (emails.analyzed_at), so a lost ring only delays the
work until the worker's next poll.
"""

from __future__ import annotations

import logging
from typing import Final

import redis.asyncio
import redis.exceptions

log = logging.getLogger(__name__)

DOORBELL_KEY: Final = "mailray:analysis:doorbell"


async def ring(client: redis.asyncio.Redis) -> None:
    """Say that there is new mail to analyze; never fails the caller (sync)."""
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.lpush(DOORBELL_KEY, 1)
            pipe.ltrim(DOORBELL_KEY, 0, 0)
            await pipe.execute()
    except (redis.exceptions.RedisError, OSError) as error:
        log.debug("analysis doorbell not rung (%s); the worker's poll finds the mail", error)


async def wait(client: redis.asyncio.Redis, timeout_s: float) -> bool:
    """Wait for a ring, at most `timeout_s`; whether there was one."""
    answer = await client.blpop([DOORBELL_KEY], timeout=timeout_s)
    return answer is not None
