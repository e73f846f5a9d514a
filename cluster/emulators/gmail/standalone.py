"""Running the emulator as its own process (`mailray emulator gmail`) until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Sequence

from cluster.emulators.gmail.config import EmulatorConfig
from cluster.emulators.gmail.server import GmailEmulator


def prepare(
    emulator: GmailEmulator, user: str, mailboxes: Sequence[str], generate: int, seed: int
) -> dict[str, int]:
    """Create the user, load each mailbox into it, generate messages; message count per user."""
    emulator.add_user(user)
    for source in mailboxes:
        emulator.load_mailbox(user, source)
    if generate:
        emulator.generate(user, generate, seed=seed)
    return {mailbox.email: len(mailbox.messages) for mailbox in emulator.mailboxes.values()}


async def serve(
    config: EmulatorConfig,
    *,
    user: str,
    mailboxes: Sequence[str] = (),
    generate: int = 0,
    on_ready: Callable[[GmailEmulator, dict[str, int]], None] | None = None,
) -> None:
    emulator = GmailEmulator(config)
    counts = prepare(emulator, user, mailboxes, generate, config.seed)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stopping.set)
    async with emulator:
        if on_ready is not None:
            on_ready(emulator, counts)
        await stopping.wait()
