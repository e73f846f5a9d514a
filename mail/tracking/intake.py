"""Recording tracking events durably before the endpoint answers, one Redis round trip per batch.

Requests that arrive while a write is in flight wait together and go out as the next stream
entry (one XADD of a msgpack list of events), so under load the number of Redis round trips
grows with the number of batches, not of requests. A request is answered only after its batch
is in Redis, or (when Redis cannot take it) fsynced to the local spool, which is replayed into
the stream once Redis answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import redis.asyncio
import redis.exceptions

from mail.store.redis_client import create_redis
from mail.tracking.records import ENTRY_FIELD, TRACKING_STREAM, EventKind, RawEvent, encode_batch
from mail.tracking.spool import Spool

log = logging.getLogger(__name__)

# The intake fails over to the spool quickly rather than holding requests while Redis is away.
INTAKE_REDIS_TIMEOUT_S = 1.0
REPLAY_INTERVAL_S = 1.0


class _Batch:
    __slots__ = ("done", "events")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.events: list[RawEvent] = []
        self.done: asyncio.Future[None] = loop.create_future()


class EventIntake:
    def __init__(self, client: redis.asyncio.Redis, spool: Spool) -> None:
        self._redis = client
        self._spool = spool
        self._open: _Batch | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self.spooled_batches = 0

    @classmethod
    def connect(cls, redis_url: str, spool_dir: Path, name: str = "tracking") -> EventIntake:
        client = create_redis(redis_url, max_connections=16, socket_timeout_s=INTAKE_REDIS_TIMEOUT_S)
        return cls(client, Spool(spool_dir, name))

    async def close(self) -> None:
        for task in (self._drainer, self._replayer):
            if task is not None and not task.done():
                task.cancel()
        self._spool.close()
        await self._redis.aclose()

    def event(
        self,
        kind: EventKind,
        email_id: int,
        recipient_id: int | None,
        link: int | None,
        *,
        ip: str | None,
        user_agent: str | None,
        method: str,
    ) -> RawEvent:
        return RawEvent(
            uuid.uuid4().bytes, kind, email_id, recipient_id, link, time.time_ns() // 1000,
            ip, user_agent[:1000] if user_agent else None, method,
        )  # fmt: skip

    async def record(self, event: RawEvent) -> None:
        """Return once the event is in the stream or in the spool; raise when it is in neither."""
        batch = self._open
        if batch is None:
            batch = self._open = _Batch(asyncio.get_running_loop())
        batch.events.append(event)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        await asyncio.shield(batch.done)

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # requests of this loop turn join the batch
        while self._open is not None:
            batch, self._open = self._open, None
            try:
                await self._write(encode_batch(batch.events))
            except BaseException as error:
                batch.done.set_exception(error)
                if not isinstance(error, Exception):
                    raise
            else:
                batch.done.set_result(None)

    async def _write(self, payload: bytes) -> None:
        try:
            await self._redis.xadd(TRACKING_STREAM, {ENTRY_FIELD: payload})
            return
        except (redis.exceptions.RedisError, OSError) as error:
            log.warning("tracking intake: Redis refused a batch (%s); spooling it", error)
        self._spool.append(payload)  # an OSError here fails the batch's requests (503)
        self.spooled_batches += 1

    def start_replaying(self) -> None:
        """Replay spool files (this process's and those dead processes left) whenever Redis answers."""
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.create_task(self._replay_loop())

    async def _replay_loop(self) -> None:
        while True:
            await asyncio.sleep(REPLAY_INTERVAL_S)
            if not self._spool.pending_files():
                continue
            try:
                pushed = await self.replay()
                if pushed:
                    log.info("tracking intake: %d spooled batches replayed into the stream", pushed)
            except (redis.exceptions.RedisError, OSError) as error:
                log.info("tracking intake: spool waits for Redis (%s)", error)

    async def replay(self) -> int:
        """Push every spool file this process can lock into the stream (also left by dead ones)."""

        async def push(payload: bytes) -> None:
            await self._redis.xadd(TRACKING_STREAM, {ENTRY_FIELD: payload})

        return await self._spool.replay(push)


def spool_directory(data_dir: str) -> Path:
    return Path(data_dir).resolve() / "spool" / "tracking"
