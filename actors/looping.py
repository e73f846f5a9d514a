"""The base of mailray's long-running actors: one loop per actor, started whenever Ray creates
the actor, including when it restarts it after a crash.

Ray reruns __init__ on a restart and nobody else would start the loop again, so __init__ asks
the actor itself (the call runs once __init__ returns). A loop that raises is logged and started
again after a pause: Postgres, Redis or a provider being away is no reason to stop for good.
"""

from __future__ import annotations

import asyncio
import logging

import ray

from mail.config import load_settings
from mail.services import Services, open_services

log = logging.getLogger(__name__)

RESTART_PAUSE_S = 1.0


class LoopingActor:
    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._services: Services | None = None
        self._opening = asyncio.Lock()  # a loop and a direct call may both open first
        ray.get_runtime_context().current_actor.ensure_running.remote()

    async def _open(self) -> Services:
        async with self._opening:
            if self._services is None:
                self._services = await open_services(load_settings())
        return self._services

    async def ensure_running(self) -> bool:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return True

    async def _run(self) -> None:
        while True:
            try:
                await self._loop()
            except Exception:
                log.exception("%s: its loop failed; starting it again", type(self).__name__)
                await asyncio.sleep(RESTART_PAUSE_S)

    async def _loop(self) -> None:
        raise NotImplementedError
