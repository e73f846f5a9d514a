"""A maildir that one process delivers into: each message written to tmp/, then renamed into new/.

The rename is what makes delivery atomic: a reader of new/ (the bounce ingest, a test) sees a
whole file or none. Readers that are done with a message move it to cur/ (adding ":2,<flags>"),
which `read` and `remove` still find.
"""

from __future__ import annotations

import os
from pathlib import Path

SUBDIRECTORIES = ("tmp", "new", "cur")


class Maildir:
    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        for name in SUBDIRECTORIES:
            (self.path / name).mkdir(parents=True, exist_ok=True)
        self._tmp = str(self.path / "tmp") + os.sep
        self._new = str(self.path / "new") + os.sep

    def deliver(self, name: str, data: bytes) -> None:
        """Write `data` as new/`name` (a unique maildir name, see `unique_name`)."""
        temporary = self._tmp + name
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(descriptor, view)
                view = view[written:]
            if self.fsync:
                os.fsync(descriptor)
        except BaseException:
            os.close(descriptor)
            os.unlink(temporary)
            raise
        os.close(descriptor)
        os.rename(temporary, self._new + name)

    def find(self, name: str) -> Path | None:
        """Where message `name` is now: new/, or cur/ with or without an info suffix."""
        fresh = self.path / "new" / name
        if fresh.exists():
            return fresh
        seen = self.path / "cur" / name
        if seen.exists():
            return seen
        prefix = name + ":"
        with os.scandir(self.path / "cur") as entries:
            for entry in entries:
                if entry.name.startswith(prefix):
                    return Path(entry.path)
        return None

    def read(self, name: str) -> bytes:
        path = self.find(name)
        if path is None:
            raise FileNotFoundError(name)
        return path.read_bytes()

    def remove(self, name: str) -> bool:
        path = self.find(name)
        if path is None:
            return False
        path.unlink(missing_ok=True)
        return True

    def names(self) -> list[str]:
        """Messages delivered and not yet removed: new/ then cur/ (cur/ names keep their suffix)."""
        return sorted(os.listdir(self.path / "new")) + sorted(os.listdir(self.path / "cur"))


def unique_name(seconds: int, sequence: int, run: str, hostname: str) -> str:
    """A maildir name, "1767225600.P1234Q17R3f9a.sink.mailray.test": time, then what makes it
    unique on this host (pid, delivery number, a random tag per sink run), then the host."""
    host = hostname.replace("/", "\\057").replace(":", "\\072")
    return f"{seconds}.P{os.getpid()}Q{sequence}R{run}.{host}"
