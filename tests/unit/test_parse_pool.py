"""mail.sync.parse_pool: the worker process parses as this process does, and a dead worker loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mail.config import load_settings
from mail.mime import parse_message, read_corpus_message
from mail.sync.engine import parse_pool_for
from mail.sync.parse_pool import ParsePool

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "spamassassin"


def _corpus_sample(count: int) -> list[bytes]:
    files = sorted(path for path in CORPUS.rglob("*") if path.is_file() and not path.name.startswith("."))
    step = max(1, len(files) // count)
    return [read_corpus_message(path) for path in files[::step][:count]]


@pytest.fixture(scope="module")
def pool() -> Iterator[ParsePool]:
    parse_pool = ParsePool(1)
    yield parse_pool
    parse_pool.close()


async def test_the_worker_reads_corpus_mail_exactly_as_this_process_does(pool: ParsePool) -> None:
    raws = [
        *_corpus_sample(300),
        b"",
        b"\xff\xfe not a message \x00",
        b"Subject: =?utf-8?q?caf=C3=A9?=\n\nhi\n",
    ]
    assert await pool.parse(raws) == [parse_message(raw) for raw in raws]


async def test_a_worker_killed_midway_costs_no_message(pool: ParsePool) -> None:
    raws = _corpus_sample(40)
    assert len(await pool.parse(raws)) == len(raws)  # the worker is up
    executor = pool._pool()
    for pid in list(executor._processes):
        os.kill(pid, signal.SIGKILL)
    parsed = await pool.parse(raws)  # parsed here instead
    assert parsed == [parse_message(raw) for raw in raws]
    assert pool._pool() is not executor
    assert await pool.parse(raws[:3]) == parsed[:3]


_PARENT = """
import asyncio, sys, time
from mail.sync.parse_pool import ParsePool
pool = ParsePool(1)
asyncio.run(pool.parse([b"Subject: hi\\n\\nhello\\n"]))
print(*pool._pool()._processes, flush=True)
time.sleep(60)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has ended; its new parent has not reaped it yet


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_worker_whose_parent_was_killed_exits() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    )
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    assert _running(worker)
    parent.kill()  # SIGKILL: nothing in the parent shuts the pool down
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 15
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(worker)


@pytest.mark.parametrize(
    ("regime", "setting", "expected"),
    [("off", None, True), ("legacy", None, False), ("2026", None, False), ("off", "false", False),
     ("legacy", "true", True)],
)  # fmt: skip
def test_a_worker_parses_when_nothing_paces_the_fetch_unless_set(
    regime: str, setting: str | None, expected: bool
) -> None:
    environ = {"MAILRAY_GMAIL__QUOTA_REGIME": regime}
    if setting is not None:
        environ["MAILRAY_SYNC__PARSE_WORKER"] = setting
    assert (parse_pool_for(load_settings(environ=environ)) is not None) is expected
