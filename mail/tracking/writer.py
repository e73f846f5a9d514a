"""The event writer: tracking stream -> Postgres, each event once, acknowledged after commit.

It reads the stream as a member of a consumer group. After a crash the entries it had read but
not acknowledged are still pending for its consumer name, so a restarted writer reads those first
(id 0) before new ones (>): an entry is acknowledged, then deleted from the stream, only after
the transaction holding its events committed, and an entry delivered twice stores nothing twice
(event ids). Entries that are not valid batches go to a dead-letter stream, never silently away.
Stored opens, clicks and unsubscribes are published to the workspace's pub/sub channel, which
WebSocket clients of /v1/events listen to.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio
import redis.exceptions

from mail.services import Services
from mail.tracking.records import ENTRY_FIELD, TRACKING_STREAM, WRITER_GROUP, RawEvent, decode_batch
from mail.tracking.store import StoredEvent, store_events
from models.events import (
    EmailClicked,
    EmailOpened,
    EmailUnsubscribed,
    EngagementData,
    event_encoder,
    workspace_channel,
)

log = logging.getLogger(__name__)

DEAD_LETTER_STREAM = TRACKING_STREAM + ":dead"


class WriterReport(msgspec.Struct, kw_only=True):
    entries: int = 0
    # The read returned as many entries as it asked for: more are probably waiting.
    backlog: bool = False
    events: int = 0
    stored: int = 0
    duplicates: int = 0
    unknown_email: int = 0
    dead_letters: int = 0


_COUNTS = [field for field in WriterReport.__struct_fields__ if field != "backlog"]


async def ensure_group(client: redis.asyncio.Redis) -> None:
    try:
        await client.xgroup_create(TRACKING_STREAM, WRITER_GROUP, id="0", mkstream=True)
    except redis.exceptions.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


class EventWriter:
    def __init__(self, services: Services, consumer: str = "writer") -> None:
        self._services = services
        self._consumer = consumer
        self._recovering = True  # read our pending entries (id 0) before new ones
        self.totals = WriterReport()

    async def step(self, *, block_ms: int = 1000) -> WriterReport:
        """Read up to `tracking.writer_batch` events' worth of entries, store them, acknowledge.

        When a step fails after Redis delivered entries (a read whose answer timed out, Postgres
        away, the task cancelled), those entries stay pending for this consumer and a read of new
        entries (">") would never return them: the next step reads the pending ones first."""
        try:
            return await self._step(block_ms)
        except BaseException:
            self._recovering = True
            raise

    async def _step(self, block_ms: int) -> WriterReport:
        client = self._services.redis
        await ensure_group(client)
        count = max(1, self._services.settings.tracking.writer_batch // 50)
        entries: list[tuple[bytes, dict[bytes, bytes]]] = []
        if self._recovering:
            response = await client.xreadgroup(
                WRITER_GROUP, self._consumer, {TRACKING_STREAM: "0"}, count=count
            )
            entries = _entries(response)
            if not entries:
                self._recovering = False
        if not self._recovering:
            response = await client.xreadgroup(
                WRITER_GROUP,
                self._consumer,
                {TRACKING_STREAM: ">"},
                count=count,
                block=block_ms,
            )
            entries = _entries(response)
        report = WriterReport(entries=len(entries), backlog=len(entries) >= count)
        if not entries:
            return report
        events: list[RawEvent] = []
        dead: list[tuple[bytes, dict[bytes, bytes]]] = []
        for entry_id, fields in entries:
            if not fields:
                continue
            try:
                events.extend(decode_batch(fields[ENTRY_FIELD]))
            except (KeyError, msgspec.DecodeError, msgspec.ValidationError):
                dead.append((entry_id, fields))
        report.events = len(events)
        async with self._services.pool.connection() as conn, conn.transaction():
            stored, unknown = await store_events(conn, events)
        report.stored, report.unknown_email = len(stored), unknown
        report.duplicates = report.events - report.stored - unknown
        if dead:
            async with client.pipeline(transaction=False) as pipe:
                for entry_id, fields in dead:
                    dead_fields: dict[Any, Any] = {**fields, b"source_id": entry_id}
                    pipe.xadd(DEAD_LETTER_STREAM, dead_fields)
                await pipe.execute()
            report.dead_letters = len(dead)
            log.error("event writer: %d malformed stream entries moved to %s", len(dead), DEAD_LETTER_STREAM)
        ids = [entry_id for entry_id, _ in entries]
        async with client.pipeline(transaction=False) as pipe:
            pipe.xack(TRACKING_STREAM, WRITER_GROUP, *ids)
            pipe.xdel(TRACKING_STREAM, *ids)
            await pipe.execute()
        await _publish(client, stored)
        for field in _COUNTS:
            setattr(self.totals, field, getattr(self.totals, field) + getattr(report, field))
        return report


def _entries(response: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    if not response:
        return []
    # [[stream, [(id, {field: value}), ...]]] (RESP2) or {stream: [[...]]} (RESP3)
    streams = response.items() if isinstance(response, dict) else response
    out: list[tuple[bytes, dict[bytes, bytes]]] = []
    for _, items in streams:
        for item in items:
            if isinstance(item, list | tuple) and len(item) == 2:
                # A pending entry deleted from the stream comes back without fields: acknowledge it.
                out.append((item[0], item[1] or {}))
    return out


_KINDS = {"open": EmailOpened, "click": EmailClicked, "unsubscribe": EmailUnsubscribed}


async def _publish(client: redis.asyncio.Redis, stored: Sequence[StoredEvent]) -> None:
    if not stored:
        return
    try:
        async with client.pipeline(transaction=False) as pipe:
            for event in stored:
                kind = _KINDS[event.kind]
                message = kind(
                    workspace_id=event.workspace_id,
                    data=EngagementData(
                        email_id=event.email_id,
                        campaign_id=event.campaign_id,
                        occurred_at=event.occurred_at,
                        is_machine=event.is_machine,
                        machine_reason=event.machine_reason,
                        device=event.device,
                        client=event.client,
                        link_url=event.link_url,
                    ),
                )
                pipe.publish(workspace_channel(event.workspace_id), event_encoder.encode(message))
            await pipe.execute()
    except (redis.exceptions.RedisError, OSError) as error:
        # Live updates are best effort; the events themselves are committed.
        log.warning("event writer: publishing %d events failed: %s", len(stored), error)
