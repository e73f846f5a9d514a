"""Batch reprocessing: analyze stored emails again (new heads, or mail never analyzed) with Ray Data.

    mailray reprocess [--workspace ID] [--only-unanalyzed] [--resume JOB]
    ray job submit -- python -m cluster.jobs.reprocess [the same options]

A job covers the emails' id interval, cut into ranges of `ai.reprocess_range` ids, recorded in
`reprocess_jobs` / `reprocess_ranges`. The Ray Data pipeline has three stages:
1. read: one task per range reads its emails from Postgres and decrypts them;
2. analyze: `map_batches` on an actor pool, each actor holding the model (one GPU per actor when
   the cluster has GPUs, else the CPU): labels, entities, summary, replies;
3. write: each batch's analyses are stored (encrypted) and every range whose emails now all
   carry this job's analysis is marked done, in one transaction.
A job started again (`--resume`, or the same command: it finds the unfinished job with the same
scope) does only the ranges not marked done, so a failure anywhere costs only unfinished ranges.
A killed actor is restarted by Ray Data and its batch retried; writing the same analysis twice
is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from mail.errors import NotFound
from models.settings import Settings

log = logging.getLogger(__name__)

Conn = Any
Row = dict[str, Any]

# Logical CPUs each stage asks Ray for: reading and writing wait on Postgres; a model actor uses
# every core its node gives torch whatever it asks, so it asks little and leaves room for Serve.
READ_CPUS = 0.1
ANALYZE_CPUS = 0.25
WRITE_CPUS = 0.1


class ReprocessJob(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    workspace_id: UUID | None
    only_unanalyzed: bool
    model: str
    ranges: int
    ranges_done: int
    emails_done: int
    created_at: datetime
    finished_at: datetime | None


class ReprocessReport(msgspec.Struct, kw_only=True):
    job: ReprocessJob
    ranges_run: int  # by this run (a resumed job runs only what was left)
    emails_run: int
    seconds: float


# -- the job's bookkeeping (the driver) ---------------------------------------------------------


async def _job(conn: Conn, job_id: UUID) -> ReprocessJob:
    cursor = await conn.execute(
        "SELECT j.id, j.workspace_id, j.only_unanalyzed, j.model, count(r.*), count(r.done_at), "
        "coalesce(sum(r.emails) FILTER (WHERE r.done_at IS NOT NULL), 0), j.created_at, j.finished_at "
        "FROM reprocess_jobs j LEFT JOIN reprocess_ranges r ON r.job_id = j.id WHERE j.id = %s GROUP BY j.id",
        (job_id,),
    )
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no reprocess job {job_id}")
    return ReprocessJob(
        id=row[0], workspace_id=row[1], only_unanalyzed=row[2], model=row[3], ranges=row[4], ranges_done=row[5],
        emails_done=int(row[6]), created_at=row[7], finished_at=row[8],
    )  # fmt: skip


async def open_job(
    conn: Conn, *, workspace_id: UUID | None, only_unanalyzed: bool, model: str, range_size: int
) -> ReprocessJob:
    """The unfinished job of this scope and model, else a new one with its ranges."""
    cursor = await conn.execute(
        "SELECT id FROM reprocess_jobs WHERE finished_at IS NULL AND workspace_id IS NOT DISTINCT FROM %s "
        "AND only_unanalyzed = %s AND model = %s ORDER BY created_at DESC LIMIT 1",
        (workspace_id, only_unanalyzed, model),
    )
    existing = await cursor.fetchone()
    if existing is not None:
        return await _job(conn, existing[0])
    scope = "deleted_at IS NULL" + ("" if workspace_id is None else " AND workspace_id = %(workspace)s")
    cursor = await conn.execute(
        f"SELECT min(id), max(id) FROM emails WHERE {scope}", {"workspace": workspace_id}
    )
    low, high = await cursor.fetchone()
    low, high = (int(low), int(high)) if low is not None else (0, -1)
    cursor = await conn.execute(
        "INSERT INTO reprocess_jobs (workspace_id, only_unanalyzed, min_id, max_id, range_size, model) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (workspace_id, only_unanalyzed, low, high, range_size, model),
    )
    (job_id,) = await cursor.fetchone()
    starts = list(range(low, high + 1, range_size))
    async with conn.cursor().copy("COPY reprocess_ranges (job_id, start_id, end_id) FROM STDIN") as copy:
        for start in starts:
            await copy.write_row((job_id, start, min(start + range_size, high + 1)))
    return await _job(conn, job_id)


async def _pending_ranges(conn: Conn, job_id: UUID) -> list[tuple[int, int]]:
    cursor = await conn.execute(
        "SELECT start_id, end_id FROM reprocess_ranges WHERE job_id = %s AND done_at IS NULL ORDER BY start_id",
        (job_id,),
    )
    return [(int(start), int(end)) for start, end in await cursor.fetchall()]


async def _finish_if_done(conn: Conn, job_id: UUID) -> None:
    await conn.execute(
        "UPDATE reprocess_jobs SET finished_at = now() WHERE id = %s AND finished_at IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM reprocess_ranges WHERE job_id = %s AND done_at IS NULL)",
        (job_id, job_id),
    )


# -- the stages (Ray workers) -----------------------------------------------------------------


def _services_call(work: Callable[[Any], Any]) -> Any:
    """Run `await work(services)` with this worker's services (from its environment)."""
    from mail.config import load_settings
    from mail.services import open_services

    async def run() -> Any:
        services = await open_services(load_settings())
        try:
            return await work(services)
        finally:
            await services.close()

    return asyncio.run(run())


def read_range(job: Row) -> Iterator[Row]:
    """Stage 1: the emails of one range (bodies decrypted), each tagged with its range."""
    from mail.ai.store import read_range as read

    async def work(services: Any) -> list[Any]:
        async with services.pool.connection() as conn:
            return await read(
                conn, services.keyring, int(job["start"]), int(job["end"]),
                workspace_id=UUID(job["workspace_id"]) if job["workspace_id"] else None,
                only_unanalyzed=bool(job["only_unanalyzed"]),
            )  # fmt: skip

    emails = _services_call(work)
    if not emails:
        yield {"range_start": job["start"], "range_end": job["end"], "email": b""}  # marks the range
        return
    for email in emails:
        yield {"range_start": job["start"], "range_end": job["end"], "email": msgspec.msgpack.encode(email)}


class Analyze:
    """Stage 2: an actor holding the model; analyzes a batch of emails."""

    def __init__(self, model: str) -> None:
        from mail.ai.backend import LocalBackend

        self._backend = LocalBackend.load()
        self._model = model

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from mail.ai.pipeline import analyze_emails
        from mail.ai.store import StoredEmail

        blobs = list(batch["email"])
        emails = [msgspec.msgpack.decode(blob, type=StoredEmail) if blob else None for blob in blobs]
        readable = [email for email in emails if email is not None and email.unreadable is None]
        analyses = iter(asyncio.run(analyze_emails(self._backend, readable, model=self._model)))
        return {
            "range_start": list(batch["range_start"]),
            "range_end": list(batch["range_end"]),
            "email": blobs,
            # Empty for a range marker and for an unreadable email (stored as such by the writer).
            "analysis": [
                msgspec.msgpack.encode(next(analyses))
                if email is not None and email.unreadable is None
                else b""
                for email in emails
            ],
        }


def write_batch(batch: dict[str, Any], *, job_id: str, model: str, only_unanalyzed: bool) -> dict[str, Any]:
    """Stage 3: store a batch's analyses; mark done every range whose emails all have them now."""
    from mail.ai.store import StoredEmail, mark_unreadable, store_analyses
    from models.ai_email import EmailAIAnalysis

    results, unreadable = [], []
    for email, analysis in zip(batch["email"], batch["analysis"], strict=True):
        if not email:
            continue  # a range marker
        stored = msgspec.msgpack.decode(email, type=StoredEmail)
        if analysis:
            results.append((stored, msgspec.msgpack.decode(analysis, type=EmailAIAnalysis)))
        else:
            unreadable.append(stored)
    ranges = sorted(
        {(int(start), int(end)) for start, end in zip(batch["range_start"], batch["range_end"], strict=True)}
    )

    async def work(services: Any) -> int:
        async with services.pool.connection() as conn, conn.transaction():
            await store_analyses(conn, services.keyring, results, model)
            await mark_unreadable(conn, unreadable)
            cursor = await conn.execute(
                "SELECT workspace_id, created_at FROM reprocess_jobs WHERE id = %s", (job_id,)
            )
            workspace_id, started = await cursor.fetchone()
            done = 0
            for start, end in ranges:
                done += await _mark_if_complete(
                    conn, UUID(job_id), start, end, workspace_id, started, model, only_unanalyzed
                )
            return done

    ranges_done = _services_call(work)
    return {"emails": [len(results) + len(unreadable)], "ranges_done": [ranges_done]}


async def _mark_if_complete(
    conn: Conn,
    job_id: UUID,
    start: int,
    end: int,
    workspace_id: UUID | None,
    started: datetime,
    model: str,
    only_unanalyzed: bool,
) -> int:
    """Mark the range done when none of its emails lacks this job's analysis (exact, whatever
    order or how often batches were written)."""
    scope = "" if workspace_id is None else " AND workspace_id = %(workspace)s"
    if only_unanalyzed:
        missing = "analyzed_at IS NULL"
    else:
        missing = (
            "(analyzed_at IS NULL OR analyzed_at < %(started)s OR analysis_model IS DISTINCT FROM %(model)s)"
        )
    params = {"start": start, "end": end, "workspace": workspace_id, "started": started, "model": model}
    cursor = await conn.execute(
        f"SELECT count(*) FILTER (WHERE {missing}), count(*) FROM emails "
        f"WHERE id >= %(start)s AND id < %(end)s AND deleted_at IS NULL{scope}",
        params,
    )
    left, total = await cursor.fetchone()
    if left:
        return 0
    cursor = await conn.execute(
        "UPDATE reprocess_ranges SET done_at = now(), emails = %s WHERE job_id = %s AND start_id = %s AND done_at IS NULL",
        (total, job_id, start),
    )
    return int(cursor.rowcount)


# -- the driver ---------------------------------------------------------------------------------


def run_reprocess(
    settings: Settings,
    *,
    workspace_id: UUID | None = None,
    only_unanalyzed: bool = False,
    actors: int | None = None,
    batch_size: int = 64,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReprocessReport:
    """Run (or resume) the job of this scope on the connected Ray cluster; its report.
    `on_progress(ranges done, ranges to do)` is called as ranges complete."""
    import time

    import ray
    import ray.data

    from cluster.bootstrap import worker_env
    from mail.ai.classifier import DEFAULT_HEADS_PATH
    from mail.ai.heads import Heads
    from mail.services import open_services

    model = Heads.load(DEFAULT_HEADS_PATH).metadata.version
    env = {"env_vars": worker_env(settings)}

    async def prepare() -> tuple[ReprocessJob, list[tuple[int, int]]]:
        services = await open_services(settings)
        try:
            async with services.pool.connection() as conn, conn.transaction():
                job = await open_job(
                    conn, workspace_id=workspace_id, only_unanalyzed=only_unanalyzed, model=model,
                    range_size=settings.ai.reprocess_range,
                )  # fmt: skip
                return job, await _pending_ranges(conn, job.id)
        finally:
            await services.close()

    started = time.monotonic()
    job, pending = asyncio.run(prepare())
    resources: Callable[[], dict[str, float]] = ray.cluster_resources
    gpus = float(resources().get("GPU", 0.0))
    # One actor per GPU; on CPUs one (the model uses every core it is given already).
    pool_size = actors or (int(gpus) if gpus >= 1 else 1)
    emails_run = ranges_run = 0
    if pending:
        workspace = str(job.workspace_id) if job.workspace_id else ""
        items = [
            {"start": start, "end": end, "workspace_id": workspace, "only_unanalyzed": job.only_unanalyzed}
            for start, end in pending
        ]
        dataset = (
            ray.data.from_items(items, override_num_blocks=min(len(items), 200))
            .flat_map(read_range, runtime_env=env, num_cpus=READ_CPUS)
            .map_batches(
                Analyze,
                fn_constructor_kwargs={"model": model},
                batch_size=batch_size,
                compute=ray.data.ActorPoolStrategy(size=pool_size),
                num_gpus=1 if gpus >= 1 else 0,
                num_cpus=ANALYZE_CPUS,
                runtime_env=env,  # Ray Data restarts a dead actor and retries its batch by default
            )
            .map_batches(
                write_batch,  # type: ignore[arg-type]
                fn_kwargs={"job_id": str(job.id), "model": model, "only_unanalyzed": job.only_unanalyzed},
                batch_size=batch_size,
                runtime_env=env,
                num_cpus=WRITE_CPUS,
            )
        )
        for batch in dataset.iter_batches(batch_size=None):
            emails_run += int(sum(batch["emails"]))
            ranges_run += int(sum(batch["ranges_done"]))
            if on_progress is not None:
                on_progress(ranges_run, len(pending))

    async def finish() -> ReprocessJob:
        services = await open_services(settings)
        try:
            async with services.pool.connection() as conn, conn.transaction():
                await _finish_if_done(conn, job.id)
                return await _job(conn, job.id)
        finally:
            await services.close()

    final = asyncio.run(finish())
    return ReprocessReport(
        job=final, ranges_run=ranges_run, emails_run=emails_run, seconds=time.monotonic() - started
    )


def main() -> None:
    """`ray job submit -- python -m cluster.jobs.reprocess [--workspace ID] [--only-unanalyzed]`."""
    import argparse

    from cluster.bootstrap import connect_to_cluster, resolve_services
    from mail.config import load_settings

    parser = argparse.ArgumentParser(description="Analyze stored emails again on the Ray cluster.")
    parser.add_argument("--workspace", type=UUID, default=None)
    parser.add_argument("--only-unanalyzed", action="store_true")
    parser.add_argument("--actors", type=int, default=None)
    arguments = parser.parse_args()
    settings = resolve_services(load_settings())
    connect_to_cluster(settings)
    report = run_reprocess(
        settings, workspace_id=arguments.workspace, only_unanalyzed=arguments.only_unanalyzed, actors=arguments.actors,
        on_progress=lambda done, total: log.info("%d of %d ranges done", done, total),
    )  # fmt: skip
    print(msgspec.json.encode(report).decode())


if __name__ == "__main__":
    main()
