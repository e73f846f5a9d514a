"""AccountSync actors on a real Ray: killed again and again during a full sync, they still end
with the store equal to the mailbox; the supervisor starts them; a push wakes them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from actors.account_sync import AccountSync, actor_name
from cluster.bootstrap import worker_env
from cluster.emulators.gmail.admin_client import EmulatorAdmin
from tests.fix_serve import free_port
from tests.sync_helpers import (
    assert_store_equals_mailbox,
    connected_account,
    count_rows,
    emulator_settings,
    open_test_services,
    stored_mailbox,
)

pytestmark = [pytest.mark.integration, pytest.mark.storage, pytest.mark.slow]

USER = "kim@actors.test"
NAMESPACE = "mailray-actor-tests"
NUMBER_OF_MESSAGES = int(os.environ.get("ACTOR_TEST_MESSAGES", "3000"))


@pytest.fixture
async def emulator_process() -> AsyncIterator[tuple[str, EmulatorAdmin]]:
    """The Gmail emulator in a process of its own, as in production: the test's event loop and
    Ray's driver threads must not delay its answers (that bunches requests into 429s)."""
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("mailray")), "emulator", "gmail", "--port", str(port),
         "--user", USER, "--generate", str(NUMBER_OF_MESSAGES), "--seed", "11", "--quota", "legacy"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    admin = EmulatorAdmin(base_url)
    try:
        for _ in range(200):
            try:
                await admin.state(USER)
                break
            except Exception:  # not listening yet
                await asyncio.sleep(0.1)
        yield base_url, admin
    finally:
        await admin.close()
        process.terminate()
        process.wait(timeout=10)


async def _supervise_until_synced(
    actor: Any, database_url: str, account_id: UUID, expected: int, timeout_s: float
) -> None:
    """Wait as the SyncSupervisor would: re-kick the actor's loop every couple of seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await count_rows(database_url, account_id) >= expected:
            return
        with contextlib.suppress(Exception):
            await actor.ensure_running.remote()
        await asyncio.sleep(2)


async def test_ten_kills_during_a_full_sync_lose_nothing(
    ray_session: None,
    emulator_process: tuple[str, EmulatorAdmin],
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    import ray

    base_url, admin = emulator_process
    # The real (legacy) quota on both sides: the sync takes about a minute, so the kills land
    # during it, and the limiter's buckets in Redis outlive every restart.
    settings = emulator_settings(
        base_url,
        database_url,
        redis_url,
        tmp_path,
        MAILRAY_SYNC__POLL_INTERVAL_S="1",
        MAILRAY_RAY__NAMESPACE=NAMESPACE,
        MAILRAY_GMAIL__QUOTA_REGIME="legacy",
    )
    services = await open_test_services(settings)
    try:
        account_id = await connected_account(services, None, USER, issued=await admin.issue_tokens(USER))
        env = {
            **worker_env(settings),
            "MAILRAY_SYNC__POLL_INTERVAL_S": "1",
            "MAILRAY_RAY__NAMESPACE": NAMESPACE,
        }
        assert env["MAILRAY_GMAIL__QUOTA_REGIME"] == "legacy"
        actor = AccountSync.options(  # type: ignore[attr-defined]
            name=actor_name(account_id), namespace=NAMESPACE, runtime_env={"env_vars": env}
        ).remote(str(account_id))
        await actor.ensure_running.remote()
        rng = random.Random(5)
        for _ in range(10):
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            ray.kill(actor, no_restart=False)
            for _ in range(100):  # the restarted actor answers; its loop is started as the supervisor would
                try:
                    await actor.ensure_running.remote()
                    break
                except ray.exceptions.RayActorError:
                    await asyncio.sleep(0.2)
        stored_during = await count_rows(database_url, account_id)
        assert stored_during < NUMBER_OF_MESSAGES, (
            "the kills all landed after the sync had finished; the test proves nothing"
        )
        await _supervise_until_synced(actor, database_url, account_id, NUMBER_OF_MESSAGES, timeout_s=300)
        await asyncio.sleep(3)  # one more round: the incremental after the listing
        mailbox = await admin.state(USER)
        assert_store_equals_mailbox(mailbox, await stored_mailbox(database_url, account_id))
        stats = await admin.stats()
        assert stats.quota_errors == 0  # restarts never pushed the account over its quota
        ray.kill(actor, no_restart=True)
    finally:
        await services.close()
