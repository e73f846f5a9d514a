"""AccountSync actors on a real Ray: killed again and again during a full sync, they still end
with the store equal to the mailbox; the supervisor starts them; a push wakes them."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from actors.account_sync import AccountSync, actor_name
from cluster.bootstrap import worker_env
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


async def _wait_until_synced(database_url: str, account_id: UUID, expected: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await count_rows(database_url, account_id) >= expected:
            return
        await asyncio.sleep(0.5)


async def test_ten_kills_during_a_full_sync_lose_nothing(
    ray_session: None, gmail_emulator_factory: Any, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    import ray

    emulator = await gmail_emulator_factory()
    emulator.add_user(USER)
    emulator.generate(USER, 3000, seed=11)
    settings = emulator_settings(
        emulator.base_url,
        database_url,
        redis_url,
        tmp_path,
        MAILRAY_SYNC__POLL_INTERVAL_S="1",
        MAILRAY_RAY__NAMESPACE=NAMESPACE,
    )
    services = await open_test_services(settings)
    try:
        account_id = await connected_account(services, emulator, USER)
        env = {
            **worker_env(settings),
            "MAILRAY_SYNC__POLL_INTERVAL_S": "1",
            "MAILRAY_RAY__NAMESPACE": NAMESPACE,
        }
        actor = AccountSync.options(  # type: ignore[attr-defined]
            name=actor_name(account_id), namespace=NAMESPACE, runtime_env={"env_vars": env}
        ).remote(str(account_id))
        await actor.ensure_running.remote()
        rng = random.Random(5)
        kills = 0
        while kills < 10:
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            ray.kill(actor, no_restart=False)
            kills += 1
            for _ in range(100):  # the restarted actor answers; its loop is started as the supervisor would
                try:
                    await actor.ensure_running.remote()
                    break
                except ray.exceptions.RayActorError:
                    await asyncio.sleep(0.2)
        stored_during = await count_rows(database_url, account_id)
        assert stored_during < 3000, (
            "the kills all landed after the sync had finished; the test proves nothing"
        )
        await _wait_until_synced(database_url, account_id, 3000, timeout_s=240)
        await asyncio.sleep(2)  # one more round so the incremental after the listing ran
        assert_store_equals_mailbox(emulator.state(USER), await stored_mailbox(database_url, account_id))
        status = await actor.status.remote()
        assert status["running"]
        ray.kill(actor, no_restart=True)
    finally:
        await services.close()
