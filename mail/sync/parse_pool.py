"""Parsing fetched mail in a worker process, so a sync with nothing pacing it uses a second core.

With no quota (`gmail.quota_regime: off`: a backfill, the emulator) the sync engine's process is
the bottleneck: it decodes what the provider sent, parses every message (mail.mime, pure Python,
about half of its time) and builds the rows Postgres stores, all on one core, while the provider
and Postgres wait on it. Handing the parsing to a worker process lets it run beside the rest.

The worker is spawned (never forked: the engine's process runs an event loop and, in an actor,
Ray's threads), once per process, and kept. Results come back as msgpack, which msgspec decodes
faster than pickle. A worker that dies takes no message with it: the chunk it held is parsed in
this process and the next chunk gets a new worker.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import msgspec

from mail.mime import parse_message
from models.mail import ParsedMessage

log = logging.getLogger(__name__)

_DECODER = msgspec.msgpack.Decoder(list[ParsedMessage])
_ENCODER = msgspec.msgpack.Encoder()


def parse_encoded(raws: Sequence[bytes]) -> bytes:
    """In the worker: parse each message, return the results as msgpack."""
    return _ENCODER.encode([parse_message(raw) for raw in raws])


def _ready() -> None:
    """A first task, so the worker is spawned and has imported mail.mime before mail arrives."""


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
                    max_workers=self._workers, mp_context=multiprocessing.get_context("spawn")
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
