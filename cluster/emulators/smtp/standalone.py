"""Running the sink as its own process (`mailray emulator smtp`) until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from cluster.emulators.smtp.config import SinkConfig
from cluster.emulators.smtp.server import SmtpSink


async def serve(config: SinkConfig, *, on_ready: Callable[[SmtpSink], None] | None = None) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stopping.set)
    async with SmtpSink(config) as sink:
        if on_ready is not None:
            on_ready(sink)
        await stopping.wait()
