"""Fan-out of workspace events to WebSocket clients: one Redis subscription per API replica.

Every workspace's events are published on `workspace:<id>:emails` (models.events). The hub
pattern-subscribes once and hands each message to the queues of that workspace's sockets, so a
thousand sockets cost one Redis connection, not a thousand. A client too slow to keep up loses
its oldest queued messages (the queue is bounded), never the replica's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from uuid import UUID

import redis.asyncio
import redis.exceptions

log = logging.getLogger(__name__)

_PATTERN = "workspace:*:emails"
QUEUE_SIZE = 1000


class EventHub:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._redis = client
        self._queues: dict[UUID, set[asyncio.Queue[bytes]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def subscribe(self, workspace_id: UUID) -> AsyncIterator[asyncio.Queue[bytes]]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_SIZE)
        self._queues[workspace_id].add(queue)
        if self._task is None or self._task.done():
            self._subscribed.clear()
            self._task = asyncio.create_task(self._listen())
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout=5)
            yield queue
        finally:
            self._queues[workspace_id].discard(queue)
            if not self._queues[workspace_id]:
                del self._queues[workspace_id]

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(_PATTERN)
                    self._subscribed.set()
                    backoff = 0.1
                    async for message in pubsub.listen():
                        if message.get("type") == "pmessage":
                            self._dispatch(message["channel"], message["data"])
            except (redis.exceptions.RedisError, OSError) as error:
                log.warning("event hub: subscription lost (%s); resubscribing", error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        try:
            workspace_id = UUID(channel.decode().split(":")[1])
        except (ValueError, IndexError):
            return
        for queue in self._queues.get(workspace_id, ()):
            if queue.full():
                queue.get_nowait()  # drop the oldest for a slow client
            queue.put_nowait(data)
