"""mail.cancellation: cancellations that hold when a library loses one."""

from __future__ import annotations

import asyncio
import sys

import pytest

from mail.cancellation import cancel_and_wait, honour_cancellation


async def _lossy_call(started: asyncio.Event) -> None:
    """A call that loses a cancellation, as Python 3.11's wait_for does when its result arrives
    as the cancellation does."""
    started.set()
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        return


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for keeps a cancellation from 3.12 on")
async def test_wait_for_loses_a_cancellation_on_python_3_11_and_the_task_still_counts_it() -> None:
    reply = asyncio.get_running_loop().create_future()

    async def command() -> str:
        return await asyncio.wait_for(reply, 10)  # what redis-py does with a socket timeout

    task = asyncio.ensure_future(command())
    await asyncio.sleep(0)
    reply.set_result("OK")
    task.cancel()
    assert await task == "OK"  # lost: the task ended with the reply, not cancelled
    assert task.cancelling() == 1  # but the request is counted


async def test_honour_cancellation_stops_a_loop_whose_cancellation_was_lost() -> None:
    started = asyncio.Event()
    steps: list[int] = []

    async def loop() -> None:
        for step in range(3):
            await _lossy_call(started)
            steps.append(step)
            honour_cancellation()

    task = asyncio.ensure_future(loop())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == [0]  # the step that lost it ended; the loop went no further


async def test_honour_cancellation_does_nothing_in_a_task_not_asked_to_cancel() -> None:
    honour_cancellation()
    await asyncio.ensure_future(asyncio.sleep(0))
    honour_cancellation()


async def test_cancel_and_wait_ends_a_task_that_lost_its_cancellation() -> None:
    started = asyncio.Event()
    room = asyncio.Semaphore(0)  # nobody releases it

    async def producer() -> None:
        await _lossy_call(started)
        await room.acquire()

    # One cancellation is not enough: the task waits for room for ever.
    stuck = asyncio.ensure_future(producer())
    await started.wait()
    stuck.cancel()
    done, _ = await asyncio.wait({stuck}, timeout=0.3)
    assert not done
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck

    started.clear()
    task = asyncio.ensure_future(producer())
    await started.wait()
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled()


async def test_cancel_and_wait_retrieves_an_error_and_accepts_a_finished_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise ValueError("handed over some other way")

    failed = asyncio.ensure_future(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(failed)
    assert isinstance(failed.exception(), ValueError)

    finished = asyncio.ensure_future(asyncio.sleep(0, result=7))
    await finished
    await cancel_and_wait(finished)
    assert finished.result() == 7
    assert "never retrieved" not in caplog.text
