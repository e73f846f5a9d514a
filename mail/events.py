"""Publishing email events: Redis pub/sub for WebSocket clients, a stream for background workers."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio

from models.events import NEW_MAIL_STREAM, EmailReceived, event_encoder, workspace_channel

# New-mail stream entries kept for workers that fall behind (approximate trim, cheap).
STREAM_MAX_LENGTH = 100_000


async def publish_received(client: redis.asyncio.Redis, events: Sequence[EmailReceived]) -> None:
    if not events:
        return
    async with client.pipeline(transaction=False) as pipe:
        for event in events:
            payload = event_encoder.encode(event)
            pipe.publish(workspace_channel(event.workspace_id), payload)
            pipe.xadd(NEW_MAIL_STREAM, {"event": payload}, maxlen=STREAM_MAX_LENGTH, approximate=True)
        await pipe.execute()
