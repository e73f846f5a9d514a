"""Gmail emulator fixtures: an in-process GmailEmulator on a free port of 127.0.0.1.

async def test_x(gmail_emulator: GmailEmulator) -> None: ...
async def test_y(gmail_emulator_factory: GmailEmulatorFactory) -> None:
    gmail = await gmail_emulator_factory(quota="legacy", fault_rate=0.1)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import pytest

from cluster.emulators.gmail import EmulatorConfig, GmailEmulator


class GmailEmulatorFactory(Protocol):
    def __call__(self, **config: Any) -> Awaitable[GmailEmulator]: ...


@pytest.fixture
async def gmail_emulator() -> AsyncIterator[GmailEmulator]:
    """A started emulator with the default configuration (quota off, no faults), stopped after."""
    async with GmailEmulator(EmulatorConfig()) as emulator:
        yield emulator


@pytest.fixture
async def gmail_emulator_factory() -> AsyncIterator[GmailEmulatorFactory]:
    """Start emulators with EmulatorConfig fields as keyword arguments; all are stopped after."""
    started: list[GmailEmulator] = []

    async def make(**config: Any) -> GmailEmulator:
        emulator = GmailEmulator(EmulatorConfig(**config))
        await emulator.start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in reversed(started):
        await emulator.stop()
