"""The EventWriter lowers its own priority: every thread of its process (Linux niceness is per
thread, and Ray runs an async actor's loop on a thread of its own), never raising it back."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread niceness is Linux's")

PROBE = textwrap.dedent(
    """
    import os, sys, threading
    from actors.event_writer import lower_priority
    started, stop = threading.Event(), threading.Event()
    def work():
        started.set()
        stop.wait()
    thread = threading.Thread(target=work)
    thread.start()
    started.wait()
    os.setpriority(os.PRIO_PROCESS, thread.native_id, int(sys.argv[2]))
    lower_priority(int(sys.argv[1]))
    print(*sorted(os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir("/proc/self/task")))
    stop.set()
    """
)


def _niceness_after(target: int, other_thread: int) -> list[int]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(target), str(other_thread)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [int(value) for value in result.stdout.split()]


def test_every_thread_gets_the_writers_niceness() -> None:
    assert set(_niceness_after(10, 0)) == {10}


def test_a_thread_already_nicer_keeps_its_niceness() -> None:
    assert _niceness_after(5, 12)[-1] == 12
    assert min(_niceness_after(5, 12)) == 5
