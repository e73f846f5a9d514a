"""SyncSupervisor: starts, stops and watches every AccountSync actor.

Every few seconds it lists the accounts that should sync and makes sure each has its actor and
that the actor's loop runs (a restarted actor comes back without its loop; this restarts it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

import ray

from actors.account_sync import AccountSync, actor_name
from actors.lookup import find_actor
from actors.looping import LoopingActor

log = logging.getLogger(__name__)

SUPERVISOR_NAME = "sync-supervisor"


def get_or_create_account_actor(account_id: UUID, namespace: str) -> Any:
    return AccountSync.options(  # type: ignore[attr-defined]
        name=actor_name(account_id), namespace=namespace, lifetime="detached", get_if_exists=True
    ).remote(str(account_id))


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class SyncSupervisor(LoopingActor):
    def __init__(self) -> None:
        self._supervised: set[UUID] = set()
        super().__init__()

    async def _loop(self) -> None:
        services = await self._open()
        while True:
            try:
                await self.supervise()
            except Exception:  # keep supervising whatever one round hit
                log.exception("supervision round failed")
            await asyncio.sleep(services.settings.sync.supervise_interval_s)

    async def supervise(self) -> list[str]:
        """One round: start (or re-kick) the actor of every account that should sync."""
        services = await self._open()
        namespace = services.settings.ray.namespace
        async with services.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT a.id FROM email_accounts a JOIN sync_state s ON s.account_id = a.id "
                "WHERE a.provider = 'gmail' AND a.sync_enabled AND s.sync_enabled "
                "AND s.phase NOT IN ('paused', 'reauth_required')"
            )
            wanted = {row[0] for row in await cursor.fetchall()}
        for account_id in wanted:
            actor = get_or_create_account_actor(account_id, namespace)
            await actor.ensure_running.remote()
        for account_id in self._supervised - wanted:
            await self.stop_account(account_id)
        self._supervised = wanted
        return sorted(str(a) for a in wanted)

    async def start_account(self, account_id: str) -> None:
        services = await self._open()
        actor = get_or_create_account_actor(UUID(account_id), services.settings.ray.namespace)
        await actor.ensure_running.remote()
        await actor.wake.remote()
        self._supervised.add(UUID(account_id))

    async def wake(self, account_id: str, history_id: int | None = None) -> bool:
        services = await self._open()
        actor = find_actor(actor_name(account_id), services.settings.ray.namespace)
        if actor is None:
            return False
        await actor.ensure_running.remote()
        await actor.wake.remote(history_id)
        return True

    async def stop_account(self, account_id: UUID | str) -> None:
        services = await self._open()
        actor = find_actor(actor_name(account_id), services.settings.ray.namespace)
        if actor is None:
            return
        await actor.stop.remote()
        ray.kill(actor)
        self._supervised.discard(UUID(str(account_id)))

    async def status(self) -> dict[str, Any]:
        return {
            "supervised": sorted(str(a) for a in self._supervised),
            "running": self._task is not None and not self._task.done(),
        }


def get_supervisor(namespace: str) -> Any:
    """The supervisor actor, created (detached) on first use."""
    return SyncSupervisor.options(  # type: ignore[attr-defined]
        name=SUPERVISOR_NAME, namespace=namespace, lifetime="detached", get_if_exists=True
    ).remote()
