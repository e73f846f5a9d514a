"""The EventWriter actor: one named, detached writer of tracking events, restarted by Ray.

A restart loses nothing: what it had read and not acknowledged is pending for its consumer name
in the stream's group, and it reads that first (mail.tracking.writer).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import ray

from actors.lookup import start_detached
from actors.looping import LoopingActor
from mail.tracking.writer import EventWriter as Writer

log = logging.getLogger(__name__)

WRITER_NAME = "event-writer"
_MAX_BACKOFF_S = 5.0


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class EventWriter(LoopingActor):
    def __init__(self) -> None:
        self._writer: Writer | None = None
        super().__init__()

    async def _writer_of(self) -> Writer:
        if self._writer is None:
            self._writer = Writer(await self._open())
        return self._writer

    async def _loop(self) -> None:
        writer = await self._writer_of()
        settings = (await self._open()).settings.tracking
        lower_priority(settings.writer_niceness)
        linger_s = settings.writer_linger_ms / 1000
        backoff = 0.1
        while True:
            try:
                report = await writer.step(block_ms=1000)
                backoff = 0.1
                if report.entries and not report.backlog:
                    await asyncio.sleep(linger_s)  # the stream is drained: let the next batch grow
            except Exception as error:  # Redis or Postgres away: wait, keep the entries pending
                log.warning("event writer step failed (%s); retrying in %.1fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def totals(self) -> dict[str, Any]:
        writer = await self._writer_of()
        return {field: getattr(writer.totals, field) for field in writer.totals.__struct_fields__}


def lower_priority(niceness: int) -> None:
    """Make this process at least `niceness` nice: every thread on Linux (niceness is per thread
    there, and Ray runs an async actor's loop on a thread of its own), the process elsewhere."""
    tasks = Path("/proc/self/task")
    ids = [int(task.name) for task in tasks.iterdir()] if tasks.is_dir() else [0]
    for thread_id in ids:
        try:
            current = os.getpriority(os.PRIO_PROCESS, thread_id)
            if current < niceness:
                os.setpriority(os.PRIO_PROCESS, thread_id, niceness)
        except OSError as error:  # the thread ended meanwhile, or the system forbids it
            log.debug("cannot renice thread %d: %s", thread_id, error)


def start_event_writer(namespace: str, env: dict[str, str]) -> Any:
    return start_detached(EventWriter, WRITER_NAME, namespace, env)
