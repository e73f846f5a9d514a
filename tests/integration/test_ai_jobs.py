"""The email AI on Ray: the AnalysisWorker actor analyzes newly synced mail through the Classifier
deployment (a real Serve handle) and survives being killed; the Ray Data reprocess job analyzes
every stored email of a workspace, resumes after its driver dies, and completes when one of its
model actors is killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cluster.bootstrap import worker_env
from cluster.jobs.reprocess import ReprocessReport, run_reprocess
from mail.gmail.account_client import open_account_client
from mail.services import Services
from mail.sync.engine import SyncEngine
from tests.sync_helpers import connected_account, emulator_settings, open_test_services

pytestmark = [pytest.mark.integration, pytest.mark.storage, pytest.mark.slow]

USER = "lou@jobs.test"


class Mailbox:
    def __init__(
        self, emulator: Any, services: Services, account_id: uuid.UUID, workspace_id: uuid.UUID
    ) -> None:
        self.emulator, self.services, self.account_id, self.workspace_id = (
            emulator,
            services,
            account_id,
            workspace_id,
        )

    async def sync(self) -> None:
        client = await open_account_client(self.services, self.account_id)
        try:
            await SyncEngine(self.services, self.account_id, client, fetch_chunk=100).sync()
        finally:
            await client.close()

    async def count(self, condition: str) -> int:
        async with self.services.pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT count(*) FROM emails WHERE account_id = %s AND {condition}", (self.account_id,)
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else 0


async def _mailbox(
    factory: Any, messages: int, database_url: str, redis_url: str, tmp_path: Path, **extra: str
) -> Mailbox:
    emulator = await factory()
    emulator.add_user(USER)
    emulator.generate(USER, messages, seed=21)
    settings = emulator_settings(emulator.base_url, database_url, redis_url, tmp_path, **extra)
    services = await open_test_services(settings)
    account_id = await connected_account(services, emulator, USER)
    async with services.pool.connection() as conn:
        cursor = await conn.execute("SELECT workspace_id FROM email_accounts WHERE id = %s", (account_id,))
        (workspace_id,) = await cursor.fetchone()  # type: ignore[misc]
    return Mailbox(emulator, services, account_id, workspace_id)


@pytest.fixture
async def mailbox(
    gmail_emulator_factory: Any, database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Mailbox]:
    box = await _mailbox(
        gmail_emulator_factory, 30, database_url, redis_url, tmp_path, MAILRAY_AI__POLL_INTERVAL_S="1"
    )
    yield box
    await box.services.close()


async def _wait_for(mailbox: Mailbox, condition: str, expected: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    found = 0
    while time.monotonic() < deadline:
        found = await mailbox.count(condition)
        if found >= expected:
            return found
        await asyncio.sleep(0.5)
    return found


async def test_the_worker_analyzes_new_mail_through_the_deployment_and_survives_a_kill(
    api_url: str, mailbox: Mailbox
) -> None:
    import ray

    from actors.analysis_worker import AnalysisWorker

    env = {**worker_env(mailbox.services.settings), "MAILRAY_AI__POLL_INTERVAL_S": "1"}
    actor = AnalysisWorker.options(  # type: ignore[attr-defined]
        name=f"analysis-{uuid.uuid4().hex[:6]}", runtime_env={"env_vars": env}
    ).remote()
    try:
        await actor.ensure_running.remote()
        await mailbox.sync()
        assert await _wait_for(mailbox, "analyzed_at IS NOT NULL", 30, 240) == 30
        assert await mailbox.count("analysis_model IS NOT NULL AND ai_analysis_enc IS NOT NULL") == 30

        ray.kill(actor, no_restart=False)
        for _ in range(100):  # Ray restarts it, and its loop starts again by itself
            with contextlib.suppress(ray.exceptions.RayActorError):
                await actor.totals.remote()
                break
            await asyncio.sleep(0.2)
        from tests.integration.test_sync_engine import _raw

        for index in range(3):
            mailbox.emulator.add_message(USER, _raw(f"After the kill {index}", "Can you call me tomorrow?"))
        await mailbox.sync()
        assert await _wait_for(mailbox, "analyzed_at IS NOT NULL", 33, 240) == 33
    finally:
        ray.kill(actor, no_restart=True)


@pytest.fixture
async def big_mailbox(
    gmail_emulator_factory: Any, database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Mailbox]:
    box = await _mailbox(
        gmail_emulator_factory, 240, database_url, redis_url, tmp_path, MAILRAY_AI__REPROCESS_RANGE="20"
    )
    await box.sync()
    yield box
    await box.services.close()


def _ranges_done(database_url: str, workspace_id: uuid.UUID) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(r.done_at) FROM reprocess_jobs j JOIN reprocess_ranges r ON r.job_id = j.id "
            "WHERE j.workspace_id = %s AND j.finished_at IS NULL",
            (workspace_id,),
        ).fetchone()
        return int(row[0]) if row else 0


async def test_reprocess_resumes_after_its_driver_dies_and_survives_a_killed_actor(
    api_url: str, big_mailbox: Mailbox, database_url: str
) -> None:
    import psutil
    import ray

    settings = big_mailbox.services.settings
    workspace = str(big_mailbox.workspace_id)
    # A driver of its own, killed once some ranges are done: the job is left half finished.
    driver = subprocess.Popen(
        [sys.executable, "-m", "cluster.jobs.reprocess", "--workspace", workspace],
        env={**os.environ, **worker_env(settings), "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
             "MAILRAY_AI__REPROCESS_RANGE": "20"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while _ranges_done(database_url, big_mailbox.workspace_id) < 2 and time.monotonic() < deadline:
            assert driver.poll() is None, "the driver ended before it was killed"
            await asyncio.sleep(0.5)
    finally:
        driver.kill()
        driver.wait()
    done_before = _ranges_done(database_url, big_mailbox.workspace_id)
    assert done_before >= 2
    assert _ranges_total(database_url, big_mailbox.workspace_id) - done_before >= 3, (
        "the kill landed as the job was finishing; the test proves nothing"
    )

    # The same job again, in this process; one of its model actors is killed while it analyzes a
    # batch. Ray titles a worker's process after its actor and the method it runs:
    # "ray::MapWorker(MapBatches(Analyze)).submit" while it works on a batch. The dead driver's
    # model actors may linger a moment: those are left alone.
    def analyzing() -> dict[int, str]:
        titles = {process.info["pid"]: " ".join(process.info["cmdline"] or [])
                  for process in psutil.process_iter(["pid", "cmdline"])}  # fmt: skip
        return {pid: title for pid, title in titles.items() if "MapBatches(Analyze)" in title}

    leftovers = set(analyzing())
    killed: list[int] = []
    finished = threading.Event()

    def kill_an_actor() -> None:
        while not finished.wait(0.2):
            for pid, title in analyzing().items():
                if pid not in leftovers and "MapBatches(Analyze)).submit" in title:
                    os.kill(pid, signal.SIGKILL)  # a crash, not a polite stop
                    killed.append(pid)
                    return

    killer = threading.Thread(target=kill_an_actor)
    killer.start()
    try:
        report: ReprocessReport = await asyncio.to_thread(
            run_reprocess, settings, workspace_id=big_mailbox.workspace_id
        )
    finally:
        finished.set()
        killer.join()
    assert killed, "no model actor was killed; the test proves nothing"
    assert report.job.finished_at is not None and report.job.ranges_done == report.job.ranges
    assert report.ranges_run == report.job.ranges - done_before  # only what the dead driver left
    assert report.job.emails_done == 240
    assert (
        await big_mailbox.count(f"analysis_model = '{report.job.model}' AND analyzed_at IS NOT NULL") == 240
    )


def _ranges_total(database_url: str, workspace_id: uuid.UUID) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM reprocess_jobs j JOIN reprocess_ranges r ON r.job_id = j.id "
            "WHERE j.workspace_id = %s AND j.finished_at IS NULL",
            (workspace_id,),
        ).fetchone()
        return int(row[0]) if row else 0
