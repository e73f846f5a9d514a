"""Parsing fetched mail in a worker process, so a sync with nothing pacing it uses a second core.

With no quota (`gmail.quota_regime: off`: a backfill, the emulator) the sync engine's process is
the bottleneck: it decodes what the provider sent, parses every message (mail.mime, pure Python,
about half of its time) and builds the rows Postgres stores, all on one core, while the provider
and Postgres wait on it. Handing the parsing to a worker process lets it run beside the rest.

The worker is spawned (never forked: the engine's process runs an event loop and, in an actor,
Ray's threads), once per process, and kept. Results come back as msgpack, which msgspec decodes
faster than pickle. A worker that dies takes no message with it: the chunk it held is parsed in
this process and the next chunk gets a new worker; a worker whose parent died exits.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import msgspec

from mail.mime import parse_message
from models.mail import ParsedMessage

log = logging.getLogger(__name__)

_PARENT_CHECK_S = 1.0
_DECODER = msgspec.msgpack.Decoder(list[ParsedMessage])
_ENCODER = msgspec.msgpack.Encoder()


def parse_encoded(raws: Sequence[bytes]) -> bytes:
    """In the worker: parse each message, return the results as msgpack."""
    return _ENCODER.encode([parse_message(raw) for raw in raws])


def _ready() -> None:
    """A first task, so the worker is spawned and has imported mail.mime before mail arrives."""


def _exit_with_parent() -> None:
    """The worker's initializer: end the worker when the process that started it is gone. A
    parent killed outright (an actor SIGKILLed, its node's OOM killer) shuts nothing down, and
    the worker, blocked on its task queue, would wait forever."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class ParsePool:
    """One worker process parsing for every engine in this process (see the module's docstring)."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self._workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_exit_with_parent,
                )
                self._executor.submit(_ready)
            return self._executor

    def warm(self) -> None:
        """Start the worker now (it takes a fraction of a second to import), not on the first chunk."""
        self._pool()

    async def parse(self, raws: Sequence[bytes]) -> list[ParsedMessage]:
        pool = self._pool()
        try:
            encoded = await asyncio.get_running_loop().run_in_executor(pool, parse_encoded, list(raws))
        except BrokenProcessPool:
            log.warning("parse worker died; parsing %d messages in this process", len(raws))
            self._discard(pool)
            return [parse_message(raw) for raw in raws]
        return _DECODER.decode(encoded)

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is pool:
                self._executor = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


_shared: ParsePool | None = None


def shared_pool() -> ParsePool:
    """This process's pool (one worker), closed when the process exits."""
    global _shared
    if _shared is None:
        _shared = ParsePool(1)
        atexit.register(_shared.close)
    return _shared
