"""Reprocessing stored mail with the Ray Data job: a run to completion, then a second run during
which one of its model actors is killed.

    .venv/bin/python benchmarks/reprocess.py [--emails 10000] [--range 500]

A scratch database gets `--emails` generated messages (threads, replies, HTML, several charsets)
synced from the Gmail emulator in a process of its own; a local Ray (all cores) runs
cluster/jobs/reprocess.py over them twice: once undisturbed, once with one `Analyze` actor's
process killed (SIGKILL) after the first ranges are done. Prints JSON lines per run: emails,
ranges, seconds, emails/s, whether the job finished and every email carries its analysis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sync import bench_settings, connect_account, emulator_process, scratch_database  # noqa: E402

from cluster.jobs.reprocess import ReprocessReport, run_reprocess  # noqa: E402
from mail.config import load_settings  # noqa: E402
from mail.gmail.account_client import open_account_client  # noqa: E402
from mail.services import open_services  # noqa: E402
from mail.sync.engine import SyncEngine  # noqa: E402
from models.settings import Settings  # noqa: E402

USER = "reprocess@bench.test"


async def prepare(emails: int, url: str, data_dir: Path, range_size: int) -> tuple[Settings, UUID]:
    async with emulator_process(USER, quota="off", generate=emails, seed=4) as (base_url, admin):
        environ = bench_settings(base_url, url, data_dir, MAILRAY_AI__REPROCESS_RANGE=str(range_size),
                                 MAILRAY_GMAIL__QUOTA_REGIME="off")  # fmt: skip
        settings = load_settings(environ=environ)
        services = await open_services(settings)
        try:
            account_id, principal = await connect_account(services, admin, USER)
            client = await open_account_client(services, account_id)
            try:
                await SyncEngine(services, account_id, client).sync()
            finally:
                await client.close()
        finally:
            await services.close()
    return settings, principal.workspace_id


def analyzed(url: str, workspace_id: UUID, model: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM emails WHERE workspace_id = %s AND analysis_model = %s AND deleted_at IS NULL",
            (workspace_id, model),
        ).fetchone()
        return int(row[0]) if row else 0


def kill_an_actor_later(url: str, done: threading.Event, killed: list[int]) -> None:
    """SIGKILL one Analyze actor's process once two ranges of the running job are done."""
    while not done.is_set():
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(r.done_at) FROM reprocess_jobs j JOIN reprocess_ranges r ON r.job_id = j.id "
                "WHERE j.finished_at IS NULL"
            ).fetchone()
        workers = [p for p in psutil.process_iter(["pid", "cmdline"])
                   if "MapBatches(Analyze)" in " ".join(p.info["cmdline"] or [])]  # fmt: skip
        if row and row[0] >= 2 and workers:
            os.kill(workers[0].info["pid"], signal.SIGKILL)
            killed.append(workers[0].info["pid"])
            return
        time.sleep(0.5)


def report_line(name: str, report: ReprocessReport, url: str, workspace_id: UUID, **extra: Any) -> None:
    job = report.job
    print(json.dumps({
        "run": name, "emails": report.emails_run, "ranges": report.ranges_run, "seconds": round(report.seconds, 1),
        "emails_per_s": round(report.emails_run / max(report.seconds, 1e-9), 1),
        "finished": job.finished_at is not None, "ranges_done": f"{job.ranges_done}/{job.ranges}",
        "emails_with_analysis": analyzed(url, workspace_id, job.model), **extra,
    }), flush=True)  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--range", type=int, default=500)
    arguments = parser.parse_args()
    import ray

    async with scratch_database("reprocess") as url:
        data_dir = Path(tempfile.mkdtemp(prefix="mailray-bench-reprocess-"))
        settings, workspace_id = await prepare(arguments.emails, url, data_dir, arguments.range)
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
        try:
            first = await asyncio.to_thread(run_reprocess, settings, workspace_id=workspace_id)
            report_line("undisturbed", first, url, workspace_id)
            done, killed = threading.Event(), list[int]()
            killer = threading.Thread(target=kill_an_actor_later, args=(url, done, killed))
            killer.start()
            second = await asyncio.to_thread(run_reprocess, settings, workspace_id=workspace_id)
            done.set()
            killer.join()
            report_line("an actor killed", second, url, workspace_id, killed_pids=killed)
        finally:
            ray.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
