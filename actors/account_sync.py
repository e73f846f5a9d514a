"""AccountSync: one named, detached actor per Gmail account, restarted by Ray when it dies.

A thin shell over mail.sync.engine.SyncEngine: it loops sync rounds, waits for a push (wake)
or the poll interval, renews the watch, reconciles now and then, and backs off on errors. All
state that matters lives in Postgres (sync_state), so a restarted actor resumes where the last
one checkpointed. Nothing here imports torch: a sync actor stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from typing import Any
from uuid import UUID

import ray

from mail import accounts
from mail.config import load_settings
from mail.errors import AuthError, MailrayError
from mail.services import Services, open_services
from mail.sync import state as sync_state

log = logging.getLogger(__name__)


def _rss_mb() -> float:
    """Resident memory of this actor's process (Linux)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def actor_name(account_id: UUID | str) -> str:
    return f"sync:{account_id}"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class AccountSync:
    def __init__(self, account_id: str) -> None:
        self._account_id = UUID(account_id)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_report: dict[str, Any] = {}
        self._rounds = 0
        self._last_error: str | None = None

    async def ensure_running(self) -> bool:
        """Start the sync loop unless it runs; True when it runs now (the supervisor calls this often)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return True

    async def wake(self, history_id: int | None = None) -> None:
        """A push arrived (or someone asked): sync now instead of at the next poll."""
        del history_id  # history.list from the stored cursor covers it, whatever the push said
        self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=30)

    async def status(self) -> dict[str, Any]:
        return {
            "account_id": str(self._account_id),
            "running": self._task is not None and not self._task.done(),
            "rounds": self._rounds,
            "last_report": self._last_report,
            "last_error": self._last_error,
            "rss_mb": _rss_mb(),
        }

    async def _loop(self) -> None:
        try:
            services = await open_services(load_settings())
        except Exception as error:  # nothing to record it in: keep it for status() and the log
            self._last_error = f"cannot open services: {error}"
            log.exception("account %s: cannot open services", self._account_id)
            raise
        try:
            await self._run(services)
        except Exception as error:  # the loop must not end silently
            self._last_error = f"{type(error).__name__}: {error}"
            log.exception("account %s: sync loop ended", self._account_id)
            raise
        finally:
            await services.close()

    async def _run(self, services: Services) -> None:
        from mail.gmail.account_client import open_account_client
        from mail.sync.engine import SyncEngine, fetch_chunk_for

        settings = services.settings
        client = await open_account_client(services, self._account_id)
        engine = SyncEngine(services, self._account_id, client, fetch_chunk=fetch_chunk_for(settings))
        backoff = 1.0
        next_reconcile = time.monotonic() + settings.sync.reconcile_interval_s
        try:
            while not self._stopping:
                async with services.pool.connection() as conn:
                    state = await accounts.get_sync_state(conn, self._account_id)
                if not state.sync_enabled or state.phase in ("paused", "reauth_required"):
                    return  # the supervisor starts the loop again when the account is resumed or reconnected
                try:
                    self._last_report = await engine.sync()
                    # What a full sync stored becomes searchable now (incremental rounds index
                    # their own mail); an indexer that died left the rest pending for this.
                    self._last_report["indexed"] = await engine.index_search()
                    if settings.gmail.pubsub_topic:
                        await engine.ensure_watch(settings.gmail.pubsub_topic, settings.gmail.watch_label_ids)
                    if time.monotonic() >= next_reconcile:
                        self._last_report["reconcile"] = await engine.reconcile()
                        next_reconcile = time.monotonic() + settings.sync.reconcile_interval_s
                    self._rounds += 1
                    backoff = 1.0
                    delay = settings.sync.poll_interval_s
                except AuthError as error:
                    await self._record(services, error, phase="reauth_required")
                    return
                except Exception as error:  # every failure is recorded and retried with backoff
                    await self._record(services, error)
                    delay = min(backoff, settings.sync.max_backoff_s) * random.uniform(0.5, 1.0)  # noqa: S311
                    backoff *= 2
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            await client.close()

    async def _record(self, services: Services, error: Exception, *, phase: str | None = None) -> None:
        kind = error.code if isinstance(error, MailrayError) else type(error).__name__
        self._last_error = f"{kind}: {error}"
        if not isinstance(error, MailrayError):
            log.exception("account %s: sync round failed", self._account_id)
        async with services.pool.connection() as conn, conn.transaction():
            await sync_state.record_error(conn, self._account_id, kind, str(error))
            if phase is not None:
                await sync_state.set_phase(conn, self._account_id, phase)
                await accounts.set_status(conn, self._account_id, phase, str(error))
            else:
                await accounts.set_status(conn, self._account_id, "error", str(error))
