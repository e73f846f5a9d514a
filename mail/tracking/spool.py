"""The local append-only spool: where a tracking endpoint puts a batch Redis could not take.

A spool file is a sequence of frames (4-byte big-endian length, payload), each payload exactly
what would have been one stream entry. Every append is flushed and fsynced before the endpoint
answers, so an answered request is on disk or in Redis. Each process writes its own file and
holds an exclusive `flock` on it for as long as it lives; `replay` moves every file it can lock
(its own, and those of processes that died) into the stream and then deletes it. A frame cut
short by a crash mid-write was never answered, and is skipped.

Replaying an entry Redis did take (its reply was lost) is harmless: event ids make the writer
store each event once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">I")
SUFFIX = ".spool"


class Spool:
    def __init__(self, directory: Path, name: str) -> None:
        self._directory = directory
        self._name = name
        self._file: BinaryIO | None = None
        self._generation = 0

    def _open(self) -> BinaryIO:
        if self._file is None:
            self._directory.mkdir(parents=True, exist_ok=True)
            self._generation += 1
            path = self._directory / f"{self._name}-{os.getpid()}-{self._generation}{SUFFIX}"
            handle = path.open("ab")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            self._file = handle
        return self._file

    def append(self, payload: bytes) -> None:
        """Write one frame and make it durable; raises OSError when the disk refuses."""
        handle = self._open()
        handle.write(_FRAME.pack(len(payload)) + payload)
        handle.flush()
        os.fsync(handle.fileno())

    def close(self) -> None:
        """Close (and unlock) this process's file; a replay by any process may then take it."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def pending_files(self) -> list[Path]:
        return sorted(self._directory.glob(f"*{SUFFIX}")) if self._directory.exists() else []

    async def replay(self, push: Callable[[bytes], Awaitable[object]]) -> int:
        """Push every frame of every spool file this process can lock, then delete the file.

        This process's own file is closed first (new appends start a new file). A push that
        fails leaves the file in place for the next replay; returns the frames pushed.
        """
        self.close()  # our own file is replayed below like any other
        pushed = 0
        for path in self.pending_files():
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                continue  # another process replayed it
            with handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process still writes it
                if not path.exists():
                    continue  # replayed and deleted between our open and our lock
                for payload in read_frames(handle):
                    await push(payload)
                    pushed += 1
                path.unlink()
                log.info("spool %s replayed into the stream", path.name)
        return pushed


def read_frames(handle: BinaryIO) -> Iterator[bytes]:
    while True:
        header = handle.read(_FRAME.size)
        if len(header) < _FRAME.size:
            return
        (length,) = _FRAME.unpack(header)
        payload = handle.read(length)
        if len(payload) < length:
            log.warning("spool: a frame cut short by a crash mid-write is skipped (never answered)")
            return
        yield payload
