"""Cancelling tasks so that it holds on Python 3.11, where a library can lose a cancellation.

On Python 3.11, `asyncio.wait_for` returns the awaited result instead of raising CancelledError
when that result arrives just as the waiting task is cancelled (fixed in 3.12: CPython issue
gh-86296). redis-py sends every command through `wait_for` when it has a socket timeout, as
mailray's Redis clients do, and psycopg_pool waits for a free connection through it. So a task
cancelled during a Redis call, or while it waits for a Postgres connection, can carry on as if it
had not been cancelled. The request is not forgotten, though: `Task.cancelling()` still counts it, and
these helpers read that count.
"""

from __future__ import annotations

import asyncio
from typing import Any

# How long cancel_and_wait gives a task to end before it cancels it again.
RETRY_S = 0.05


def honour_cancellation() -> None:
    """Raise CancelledError when the running task has been asked to cancel, whether or not the
    request reached it: call it between steps of a long loop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and return once it has ended, cancelling it again every RETRY_S while it
    runs on (a cancellation lost inside a library). Its result or error is dropped: callers use
    this where they learn the outcome some other way, or do not need it. A cancellation of the
    caller itself while it waits propagates."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RETRY_S)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
