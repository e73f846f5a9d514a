"""Gmail sync against the Gmail emulator in a process of its own: one JSON line per figure.

    .venv/bin/python benchmarks/sync.py single      # one account, legacy quota, real time
    .venv/bin/python benchmarks/sync.py many        # 50 accounts at once, 2026 quota (asyncio)
    .venv/bin/python benchmarks/sync.py many --mode actors   # the same, as AccountSync Ray actors
    .venv/bin/python benchmarks/sync.py quota-off   # end to end, no quota, vs parse + COPY alone
    .venv/bin/python benchmarks/sync.py all         # the three (many in asyncio mode)

`single`: `mailray emulator gmail --quota legacy` serves a generated mailbox (or --mailbox); one
SyncEngine with settings quota_regime=legacy (GmailQuota buckets in Redis) runs engine.sync() in
real time. The quota-limited rate is what Gmail's per-user rate allows for the calls actually
made: messages / (units the emulator charged / 250 units/s); the figure is the measured rate as a
fraction of it (goal >= 95%), and the emulator's quota_errors (goal 0).

`many`: one emulator process with N users (`--quota 2026`: 6,000 units/user/min, messages.get
20 units, so 5 messages/s per account), each account synced by its own SyncEngine, all at once
(asyncio in this process, or one AccountSync actor per account on a local Ray with 2 CPUs). Each
account's rate is compared with its own quota-limited rate (goal >= 90% each). Actors each hold a
Postgres pool of their own (2 connections): the actor mode refuses to start more actors than the
server's max_connections leaves room for (50 need 100; this machine's server allows 100 in all).

`quota-off`: the emulator with `--quota off --mailbox <SpamAssassin corpus>`, one engine with
quota_regime=off (list, batched get, parse, encrypt, store with threads, contacts, attachments and
pending search rows), against a bare loop in this process that reads the same files
(mail.mime.read_corpus_message), parses them (mail.mime.parse_message) and COPYs rows into
`emails` of a fresh migrated database with copy_rows (goal >= 70% of it); and the engine followed
by its search indexing (index_search) against the same loop that also writes each message's
tsvector into email_search. Rounds alternate engine and bare loop (after one uncounted round of
each, which warms the emulator, the parse worker and the page cache); the best of each is
compared, and the median of each round's own pair is printed beside it. Two stage figures split
the engine's work: fetching alone (list + get, no parse, no store) and parsing alone.
`--parse-worker on|off` overrides sync.parse_worker (auto: on, as quota is off). `--profile` runs
the engine once more under cProfile and prints where time goes (stderr; the worker's parsing is
not in it).

Every part works in scratch databases it creates and drops (server: MAILRAY_DATABASE__URL, default
this machine's Postgres), uses Redis at MAILRAY_REDIS__URL (bucket keys named after fresh
addresses), and stops its emulator process; each part has a deadline (--timeout). Client,
emulator, Postgres and Redis share this machine's cores: the figures carry the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cluster.emulators.gmail.admin_client import EmulatorAdmin
from cluster.emulators.gmail.client_settings import gmail_environment
from cluster.emulators.gmail.stats import EmulatorStats
from mail import accounts, auth
from mail.config import load_settings
from mail.gmail.account_client import open_account_client
from mail.gmail.quota_costs import REGIMES, QuotaRegime
from mail.mime import parse_message, read_corpus_message
from mail.services import Services, open_services
from mail.store.bulk import copy_rows
from mail.store.migrations import migrate
from mail.sync.engine import LIST_PAGE_SIZE, PassReport, SyncEngine, fetch_chunk_for
from mail.sync.search_index import SEARCH_TEXT_LIMIT
from models.gmail import Profile, TokenSet
from models.tenancy import Principal

SERVER_URL = os.environ.get("MAILRAY_DATABASE__URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MAILRAY_REDIS__URL", "redis://127.0.0.1:6379/0")
CORPUS = Path("/work/shared/corpora/spamassassin")
MAILRAY_CLI = Path(sys.executable).with_name("mailray")
SUPERVISE_INTERVAL_S = 10.0  # settings sync.supervise_interval_s: how often the supervisor kicks actors
# Connections of each AccountSync actor's own pool (see _many_actors).
ACTOR_POOL_MAX = 2
CONNECTIONS_LEFT_FOR_OTHERS = 20  # other processes on the shared Postgres (tests of other people)
READONLY_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"


class ConnectionBudgetError(RuntimeError):
    """Starting the actors would take too many of the Postgres server's connections."""


def emit(benchmark: str, figure: str, **values: Any) -> None:
    load1, load5, _ = os.getloadavg()
    line = {"benchmark": f"sync.{benchmark}", "figure": figure, **values}
    line["load_avg_1m_5m"] = [round(load1, 2), round(load5, 2)]
    line["cpus"] = os.cpu_count()
    print(json.dumps(line), flush=True)


def note(message: str) -> None:
    print(f"[sync bench] {message}", file=sys.stderr, flush=True)


# -- scratch resources ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def scratch_database(tag: str) -> AsyncIterator[str]:
    """A fresh, migrated database, dropped afterwards."""
    name = f"mailray_bench_sync_{tag}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(SERVER_URL, dbname=name)
    try:
        await migrate(url)
        yield url
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.asynccontextmanager
async def emulator_process(
    user: str, *, quota: str, generate: int = 0, mailbox: str | None = None, seed: int = 1
) -> AsyncIterator[tuple[str, EmulatorAdmin]]:
    """`mailray emulator gmail` in a process of its own; its base URL and admin client."""
    port = _free_port()
    command = [str(MAILRAY_CLI), "emulator", "gmail", "--port", str(port), "--user", user,
               "--quota", quota, "--seed", str(seed)]  # fmt: skip
    if generate:
        command += ["--generate", str(generate)]
    if mailbox:
        command += ["--mailbox", mailbox]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the process
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.DEVNULL, stderr=log)
    base_url = f"http://127.0.0.1:{port}"
    admin = EmulatorAdmin(base_url)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.returncode is not None:
                log.seek(0)
                error = log.read().decode(errors="replace")
                raise RuntimeError(f"the emulator exited with {process.returncode}: {error[-2000:]}")
            try:
                await admin.users()
                break
            except Exception:  # not listening yet
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        yield base_url, admin
    finally:
        await admin.close()
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


def bench_settings(base_url: str, database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a mailray process aimed at the emulator (as `mailray emulator gmail` prints)."""
    return {
        "MAILRAY_DATABASE__URL": database_url,
        "MAILRAY_REDIS__URL": REDIS_URL,
        "MAILRAY_APP__DATA_DIR": str(data_dir),
        **gmail_environment(base_url),
        **extra,
    }


async def connect_account(
    services: Services, admin: EmulatorAdmin, email: str, workspace: Principal | None = None
) -> tuple[UUID, Principal]:
    """Connect `email` with tokens the emulator issued, in `workspace` or a new one."""
    issued = await admin.issue_tokens(email)
    tokens = TokenSet(
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=datetime.now(UTC) + timedelta(seconds=int(issued["expires_in"])),
        scopes=[READONLY_SCOPE],
    )
    async with services.pool.connection() as conn:
        if workspace is None:
            suffix = uuid.uuid4().hex[:8]
            created, owner = await auth.create_workspace(
                conn, f"Bench {suffix}", owner_email=f"owner-{suffix}@bench.test"
            )
            workspace = Principal(workspace_id=created.id, user_id=owner.id, role="owner")
        profile = Profile(email_address=email, messages_total=0, threads_total=0, history_id=0)
        account = await accounts.connect_gmail_account(conn, services.keyring, workspace, profile, tokens)
    return account.id, workspace


async def stored_count(database_url: str, account_ids: Sequence[UUID]) -> dict[UUID, int]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT account_id, count(*) FROM emails WHERE account_id = ANY(%s) AND deleted_at IS NULL "
            "GROUP BY account_id",
            (list(account_ids),),
        )
        counts = {row[0]: int(row[1]) for row in await cursor.fetchall()}
    return {account_id: counts.get(account_id, 0) for account_id in account_ids}


async def sync_errors(database_url: str, account_ids: Sequence[UUID]) -> dict[str, Any]:
    """Accounts whose rounds failed at least once (sync_state keeps the last error), and the errors."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT last_error FROM sync_state WHERE account_id = ANY(%s) AND last_error IS NOT NULL",
            (list(account_ids),),
        )
        errors = [str(row[0]) for row in await cursor.fetchall()]
    kinds: dict[str, int] = {}
    for error in errors:
        kinds[error[:160]] = kinds.get(error[:160], 0) + 1
    return {"accounts_with_failed_rounds": len(errors), "failed_round_errors": kinds}


async def server_connections() -> tuple[int, int]:
    """(client connections now, max_connections) of the Postgres server."""
    async with await psycopg.AsyncConnection.connect(SERVER_URL) as conn:
        cursor = await conn.execute(
            "SELECT count(*), current_setting('max_connections')::int FROM pg_stat_activity "
            "WHERE backend_type = 'client backend'"
        )
        row = await cursor.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def listing_units(regime: QuotaRegime, report: PassReport) -> int:
    """Units a full-sync listing pass spends: list pages and one messages.get per message."""
    pages = max(1, math.ceil(report.listed / LIST_PAGE_SIZE))
    return pages * regime.cost("users.messages.list") + (report.fetched + report.vanished) * regime.cost(
        "users.messages.get"
    )


def sync_units(regime: QuotaRegime, report: dict[str, Any]) -> int:
    """Units of one engine.sync() of a new account: profile, labels, the listing, one history page."""
    return (
        regime.cost("users.getProfile")
        + regime.cost("users.labels.list")
        + listing_units(regime, report["full_sync"])
        + regime.cost("users.history.list")
    )


def stats_fields(stats: EmulatorStats) -> dict[str, Any]:
    return {
        "emulator_units_charged": stats.units_charged,
        "emulator_quota_errors": stats.quota_errors,
        "emulator_quota_errors_user": stats.quota_errors_user,
        "emulator_quota_errors_project": stats.quota_errors_project,
        "emulator_http_requests": stats.http_requests,
        "emulator_batch_requests": stats.batch_requests,
        "emulator_calls": stats.requests_per_method,
    }


# -- single: one account, legacy quota -----------------------------------------------------------


async def bench_single(args: argparse.Namespace) -> None:
    regime = REGIMES["legacy"]
    email = f"single-{uuid.uuid4().hex[:8]}@bench.test"
    source = "corpus" if args.mailbox else f"generated {args.messages}"
    async with (
        scratch_database("single") as database_url,
        emulator_process(
            email, quota="legacy", generate=0 if args.mailbox else args.messages, mailbox=args.mailbox
        ) as (base_url, admin),
    ):
        expected = next(u["messagesTotal"] for u in await admin.users() if u["email"] == email)
        with tempfile.TemporaryDirectory(prefix="mailray-bench-") as data_dir:
            env = bench_settings(base_url, database_url, Path(data_dir), MAILRAY_GMAIL__QUOTA_REGIME="legacy")
            services = await open_services(load_settings(environ=env))
            try:
                account_id, _ = await connect_account(services, admin, email)
                client = await open_account_client(services, account_id)
                engine = SyncEngine(
                    services, account_id, client, fetch_chunk=fetch_chunk_for(services.settings)
                )
                await admin.reset_stats()
                began = time.perf_counter()
                try:
                    report = await engine.sync()
                finally:
                    await client.close()
                elapsed = time.perf_counter() - began
                stats = await admin.stats()
                stored = (await stored_count(database_url, [account_id]))[account_id]
            finally:
                await services.close()
    full: PassReport = report["full_sync"]
    units = stats.units_charged
    per_s = regime.user_units_per_s
    limit = full.stored / (units / per_s)
    # Gmail's bucket starts full: with its one-window burst the calls could finish this much sooner.
    limit_with_burst = full.stored / (max(units - regime.user_units, 1) / per_s)
    emit(
        "single",
        "full_sync_legacy_quota",
        mailbox=source,
        messages=expected,
        stored=stored,
        seconds=round(elapsed, 2),
        messages_per_s=round(full.stored / elapsed, 2),
        quota_limited_messages_per_s=round(limit, 2),
        fraction_of_quota_limit=round(full.stored / elapsed / limit, 4),
        fraction_of_quota_limit_counting_gmail_burst=round(full.stored / elapsed / limit_with_burst, 4),
        units_expected_from_calls=sync_units(regime, report),
        quota_units_per_s=per_s,
        timed="engine.sync() of a new account: profile, labels, listing, gets, parse, store, history",
        **stats_fields(stats),
    )


# -- many: N accounts at once, 2026 quota ---------------------------------------------------------


async def _prepare_users(admin: EmulatorAdmin, users: Sequence[str], messages: int) -> None:
    for index, email in enumerate(users):
        if index:  # the first came with the command line
            await admin.add_user(email)
            await admin.generate(email, messages, seed=100 + index)


async def bench_many(args: argparse.Namespace) -> None:
    regime = REGIMES["2026"]
    tag = uuid.uuid4().hex[:6]
    users = [f"many{index:03d}-{tag}@bench.test" for index in range(args.accounts)]
    async with (
        scratch_database("many") as database_url,
        emulator_process(users[0], quota="2026", generate=args.messages, seed=100) as (base_url, admin),
    ):
        await _prepare_users(admin, users, args.messages)
        with tempfile.TemporaryDirectory(prefix="mailray-bench-") as data_dir:
            env = bench_settings(
                base_url,
                database_url,
                Path(data_dir),
                MAILRAY_GMAIL__QUOTA_REGIME="2026",
                MAILRAY_DATABASE__POOL_MAX_SIZE=str(args.pool_max),
                **({"MAILRAY_SYNC__FETCH_CHUNK": str(args.fetch_chunk)} if args.fetch_chunk else {}),
            )
            services = await open_services(load_settings(environ=env))
            try:
                shared: Principal | None = None
                account_ids: list[UUID] = []
                for email in users:
                    account_id, principal = await connect_account(services, admin, email, shared)
                    if args.shared_workspace:
                        shared = principal
                    account_ids.append(account_id)
                await admin.reset_stats()
                if args.mode == "actors":
                    try:
                        results, overall = await _many_actors(args, env, account_ids)
                    except ConnectionBudgetError as error:
                        emit("many", "per_account_fraction_of_quota_2026", mode="actors", skipped=str(error))
                        return
                else:
                    results, overall = await _many_asyncio(
                        services, account_ids, warm_workspace=not args.no_warm_workspace
                    )
                stats = await admin.stats()
                stored = await stored_count(database_url, account_ids)
                errors = await sync_errors(database_url, account_ids)
            finally:
                await services.close()
    per_s = regime.user_units_per_s
    fractions: list[float] = []
    rates: list[float] = []
    failures = [r for r in results if r.get("error")]
    units_total = 0
    for result in results:
        if result.get("error"):
            continue
        units = result["units"]
        units_total += units
        rate = result["messages"] / result["seconds"]
        rates.append(rate)
        fractions.append(rate / (result["messages"] / (units / per_s)))
    incomplete = [str(a) for a, count in stored.items() if count != args.messages]
    summary: dict[str, Any] = {
        "mode": args.mode,
        "accounts": args.accounts,
        "messages_per_account": args.messages,
        "fetch_chunk": args.fetch_chunk or "default",
        "shared_workspace": args.shared_workspace,
        "warm_workspace": args.mode == "asyncio" and not args.no_warm_workspace,
        "failed_accounts": len(failures),
        "first_errors": [r["error"] for r in failures[:3]],
        "accounts_not_fully_stored": len(incomplete),
        "quota_limited_messages_per_s_per_account": round(
            args.messages / ((units_total / max(len(rates), 1)) / per_s), 3
        )
        if rates
        else None,
        "rate_min": round(min(rates), 3) if rates else None,
        "rate_median": round(statistics.median(rates), 3) if rates else None,
        "fraction_min": round(min(fractions), 4) if fractions else None,
        "fraction_median": round(statistics.median(fractions), 4) if fractions else None,
        "fraction_max": round(max(fractions), 4) if fractions else None,
        "accounts_at_or_above_90pct": sum(1 for f in fractions if f >= 0.9),
        "units_expected_from_calls": units_total,
        "timed": "engine.sync() per account"
        if args.mode == "asyncio"
        else "full-sync listing pass per actor (report.seconds)",
        "quota_units_per_s_per_user": per_s,
    }
    emit("many", "per_account_fraction_of_quota_2026", **summary, **errors, **overall, **stats_fields(stats))


async def _many_asyncio(
    services: Services, account_ids: Sequence[UUID], *, warm_workspace: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    regime = REGIMES["2026"]

    async def one(account_id: UUID) -> dict[str, Any]:
        client = await open_account_client(services, account_id)
        engine = SyncEngine(services, account_id, client, fetch_chunk=fetch_chunk_for(services.settings))
        if warm_workspace:
            # SyncEngine._begin_full_sync asks the pool for a second connection (_workspace()) while
            # it holds one: N engines sharing a pool of fewer than N + 1 connections can all hold
            # one and wait for another until PoolTimeout. Resolving the workspace first avoids it.
            await engine._workspace()
        began = time.perf_counter()
        try:
            report = await engine.sync()
        except Exception as error:
            return {"error": f"{type(error).__name__}: {error}"[:300]}
        finally:
            await client.close()
        full: PassReport = report["full_sync"]
        return {
            "messages": full.stored,
            "seconds": time.perf_counter() - began,
            "units": sync_units(regime, report),
        }

    began = time.perf_counter()
    results = list(await asyncio.gather(*(one(a) for a in account_ids)))
    wall = time.perf_counter() - began
    total = sum(r.get("messages", 0) for r in results)
    overall = {"wall_s": round(wall, 2), "aggregate_messages_per_s": round(total / wall, 2)}
    return results, overall


async def _many_actors(
    args: argparse.Namespace, env: dict[str, str], account_ids: Sequence[UUID]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import ray

    from actors.account_sync import AccountSync, actor_name

    regime = REGIMES["2026"]
    worker = {
        **env,
        "MAILRAY_SYNC__POLL_INTERVAL_S": "3600",
        # Each actor has a pool of its own. 2 at most: with 1, SyncEngine._begin_full_sync (which asks
        # for a second connection while it holds one) waits until PoolTimeout, every round.
        "MAILRAY_DATABASE__POOL_MIN_SIZE": "1",
        "MAILRAY_DATABASE__POOL_MAX_SIZE": str(ACTOR_POOL_MAX),
    }
    now, most = await server_connections()
    needed = len(account_ids) * ACTOR_POOL_MAX
    if now + needed > most - CONNECTIONS_LEFT_FOR_OTHERS:
        raise ConnectionBudgetError(
            f"{len(account_ids)} actors x {ACTOR_POOL_MAX} connections = {needed}, with {now} in use, "
            f"leaves fewer than {CONNECTIONS_LEFT_FOR_OTHERS} of max_connections={most} for anyone else"
        )
    namespace = f"mailray-bench-{uuid.uuid4().hex[:6]}"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace=namespace,
        log_to_driver=False,
        runtime_env={"env_vars": worker},
    )
    handles: list[Any] = []
    try:
        began = time.perf_counter()
        for account_id in account_ids:
            handle = AccountSync.options(name=actor_name(account_id)).remote(str(account_id))  # type: ignore[attr-defined]
            handles.append(handle)
        await asyncio.gather(*(h.ensure_running.remote() for h in handles))
        started = time.perf_counter() - began
        note(f"{len(handles)} actors running after {started:.1f} s")
        done: dict[int, dict[str, Any]] = {}
        finished_at: dict[int, float] = {}
        deadline = time.monotonic() + args.timeout * 0.8
        next_kick = time.monotonic() + SUPERVISE_INTERVAL_S
        peak_connections = 0
        statuses: list[dict[str, Any]] = []
        while len(done) < len(handles) and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            statuses = list(await asyncio.gather(*(h.status.remote() for h in handles)))
            for index, status in enumerate(statuses):
                if index not in done and "full_sync" in status["last_report"]:
                    done[index] = status
                    finished_at[index] = time.perf_counter() - began
            peak_connections = max(peak_connections, (await server_connections())[0])
            if time.monotonic() >= next_kick:  # as the SyncSupervisor does: restart a loop that ended
                await asyncio.gather(
                    *(h.ensure_running.remote() for i, h in enumerate(handles) if i not in done)
                )
                next_kick = time.monotonic() + SUPERVISE_INTERVAL_S
        wall = max(finished_at.values(), default=0.0)
        rss = [float(s["rss_mb"]) for s in done.values()]
        results: list[dict[str, Any]] = []
        for index in range(len(handles)):
            final = done.get(index)
            if final is None:
                results.append({"error": "not synced before the deadline"})
                continue
            full: PassReport = final["last_report"]["full_sync"]
            results.append(
                {"messages": full.stored, "seconds": full.seconds, "units": listing_units(regime, full)}
            )
        total = sum(r.get("messages", 0) for r in results)
        overall = {
            "actors_started_s": round(started, 2),
            "wall_s_to_last_synced": round(wall, 2),
            "aggregate_messages_per_s": round(total / wall, 2) if wall else None,
            "actor_rss_mb_min": min(rss) if rss else None,
            "actor_rss_mb_median": statistics.median(rss) if rss else None,
            "actor_rss_mb_max": max(rss) if rss else None,
            "actor_last_errors": [s["last_error"] for s in statuses if s["last_error"]][:3],
            "postgres_client_connections_peak": peak_connections,
        }
        return results, overall
    finally:
        for handle in handles:
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
        ray.shutdown()


# -- quota-off: end to end vs parse + COPY ---------------------------------------------------------


def corpus_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            yield path


_BASE_COLUMNS = (
    "workspace_id", "account_id", "provider_message_id", "message_id", "in_reply_to", "reference_ids",
    "subject", "from_email", "from_name", "to_emails", "cc_emails", "snippet", "labels", "email_date",
    "raw_size", "parse_errors",
)  # fmt: skip
# The engine tells psycopg its columns' types; so does the baseline.
_BASE_TYPES = (
    "uuid", "uuid", "text", "text", "text", "text[]", "text", "text", "text", "text[]", "text[]", "text",
    "text[]", "timestamptz", "integer", "text[]",
)  # fmt: skip
_FALLBACK_DATE = datetime(2002, 1, 1, tzinfo=UTC)


def _utc(when: datetime | None) -> datetime | None:
    """As mail.sync.store does: Date headers carry offsets Postgres refuses (the corpus has -16:00)."""
    return when.astimezone(UTC) if when is not None else None


async def baseline(database_url: str, root: Path, *, index: bool, chunk: int = 500) -> tuple[int, float]:
    """Read, parse and COPY every corpus message into `emails`, `chunk` rows per transaction; with
    `index`, also each message's search row with the engine's tsvector, in the same transaction."""
    workspace, account = uuid.uuid4(), uuid.uuid4()
    paths = list(corpus_files(root))
    began = time.perf_counter()
    count = 0
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        for start in range(0, len(paths), chunk):
            rows: list[tuple[Any, ...]] = []
            texts: list[str] = []
            for path in paths[start : start + chunk]:
                parsed = parse_message(read_corpus_message(path))
                sender = parsed.from_address
                rows.append((
                    workspace, account, path.name, parsed.message_id, parsed.in_reply_to, parsed.references,
                    parsed.subject, sender.email if sender else None, sender.name if sender else None,
                    [a.email for a in parsed.to], [a.email for a in parsed.cc], parsed.snippet, ["INBOX"],
                    _utc(parsed.date) or _FALLBACK_DATE, parsed.raw_size, parsed.parse_errors,
                ))  # fmt: skip
                texts.append((parsed.text_body or parsed.snippet or "")[:SEARCH_TEXT_LIMIT])
            if index:
                cursor = await conn.execute(
                    "SELECT nextval('emails_id_seq') FROM generate_series(1, %s)", (len(rows),)
                )
                ids = [row[0] for row in await cursor.fetchall()]
                numbered = [(i, *r) for i, r in zip(ids, rows, strict=True)]
                await copy_rows(
                    conn, "emails", ("id", *_BASE_COLUMNS), numbered, types=("bigint", *_BASE_TYPES)
                )
                await conn.execute(
                    "INSERT INTO email_search (email_id, email_date, workspace_id, account_id, search_vector) "
                    "SELECT v.id, v.date, %s, %s, setweight(to_tsvector('english', coalesce(v.subject, '')), 'A') || "
                    "to_tsvector('english', coalesce(v.from_name, '') || ' ' || coalesce(v.from_email, '') || ' ' || v.text) "
                    "FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[]) "
                    "AS v(id, date, subject, from_name, from_email, text)",
                    (workspace, account, ids, [r[13] for r in rows], [r[6] for r in rows], [r[8] for r in rows],
                     [r[7] for r in rows], texts),
                )  # fmt: skip
            else:
                await copy_rows(conn, "emails", _BASE_COLUMNS, rows, types=_BASE_TYPES)
            await conn.commit()
            count += len(rows)
    return count, time.perf_counter() - began


async def _engine_run(
    base_url: str, admin: EmulatorAdmin, email: str, *, profile: bool, parse_worker: str = "auto"
) -> tuple[dict[str, Any], float, int, cProfile.Profile | None]:
    worker = (
        {} if parse_worker == "auto" else {"MAILRAY_SYNC__PARSE_WORKER": str(parse_worker == "on").lower()}
    )
    async with scratch_database("off") as database_url:
        with tempfile.TemporaryDirectory(prefix="mailray-bench-") as data_dir:
            env = bench_settings(
                base_url, database_url, Path(data_dir), MAILRAY_GMAIL__QUOTA_REGIME="off", **worker
            )
            services = await open_services(load_settings(environ=env))
            profiler = cProfile.Profile() if profile else None
            try:
                account_id, _ = await connect_account(services, admin, email)
                client = await open_account_client(services, account_id)
                engine = SyncEngine(
                    services, account_id, client, fetch_chunk=fetch_chunk_for(services.settings)
                )
                began = time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                try:
                    report = await engine.sync()
                    elapsed = time.perf_counter() - began
                    if profiler is not None:
                        profiler.disable()
                    began = time.perf_counter()
                    report["indexed"] = await engine.index_search()
                    report["index_seconds"] = time.perf_counter() - began
                finally:
                    if profiler is not None:
                        profiler.disable()
                    await client.close()
                stored = (await stored_count(database_url, [account_id]))[account_id]
            finally:
                await services.close()
    return report, elapsed, stored, profiler


async def _fetch_only(base_url: str, admin: EmulatorAdmin, email: str, chunk: int) -> tuple[int, float]:
    """The engine's fetching alone: list every page, get its messages `chunk` at a time; no parse, no store."""
    async with scratch_database("fetch") as database_url:
        with tempfile.TemporaryDirectory(prefix="mailray-bench-") as data_dir:
            env = bench_settings(base_url, database_url, Path(data_dir), MAILRAY_GMAIL__QUOTA_REGIME="off")
            services = await open_services(load_settings(environ=env))
            try:
                account_id, _ = await connect_account(services, admin, email)
                client = await open_account_client(services, account_id)
                count = 0
                began = time.perf_counter()
                try:
                    token: str | None = None
                    while True:
                        page = await client.list_messages(page_token=token, max_results=LIST_PAGE_SIZE)
                        ids = [ref.id for ref in page.messages]
                        for start in range(0, len(ids), chunk):
                            count += len(await client.get_messages(ids[start : start + chunk]))
                        token = page.next_page_token
                        if not token:
                            break
                finally:
                    await client.close()
                elapsed = time.perf_counter() - began
            finally:
                await services.close()
    return count, elapsed


def _parse_only(root: Path) -> tuple[int, float]:
    raws = [read_corpus_message(path) for path in corpus_files(root)]
    began = time.perf_counter()
    for raw in raws:
        parse_message(raw)
    return len(raws), time.perf_counter() - began


async def bench_quota_off(args: argparse.Namespace) -> None:
    email = f"off-{uuid.uuid4().hex[:8]}@bench.test"
    root = Path(args.mailbox)
    engine_s: list[float] = []
    searchable_s: list[float] = []
    base_s: dict[bool, list[float]] = {False: [], True: []}
    fetch_s: list[float] = []
    async with emulator_process(email, quota="off", mailbox=str(root)) as (base_url, admin):
        expected = next(u["messagesTotal"] for u in await admin.users() if u["email"] == email)
        # Rounds alternate engine and bare loop, so both meet the same state of a shared machine;
        # a first round of each, not counted, warms the emulator, the parse worker and the page cache.
        for round_number in range(args.rounds + 1):
            await admin.reset_stats()
            report, elapsed, stored, _ = await _engine_run(
                base_url, admin, email, profile=False, parse_worker=args.parse_worker
            )
            stats = await admin.stats()
            base: dict[bool, tuple[int, float]] = {}
            for index in (False, True):
                async with scratch_database("base") as database_url:
                    base[index] = await baseline(database_url, root, index=index)
            if round_number == 0:
                continue
            engine_s.append(elapsed)
            searchable_s.append(elapsed + report["index_seconds"])
            for index in (False, True):
                count, seconds = base[index]
                if count != expected:
                    raise SystemExit(f"the bare loop stored {count} messages of {expected}")
                base_s[index].append(seconds)
        chunk = fetch_chunk_for(load_settings(environ={"MAILRAY_GMAIL__QUOTA_REGIME": "off"}))
        for _ in range(args.rounds):
            fetched, seconds = await _fetch_only(base_url, admin, email, chunk)
            fetch_s.append(seconds)
        profiler = None
        if args.profile:
            _, profiled_s, _, profiler = await _engine_run(
                base_url, admin, email, profile=True, parse_worker=args.parse_worker
            )
            note(f"profiled run: {profiled_s:.1f} s (cProfile slows it)")
    full: PassReport = report["full_sync"]
    engine_rate = full.stored / min(engine_s)
    searchable_rate = full.stored / min(searchable_s)
    emit(
        "quota_off",
        "engine_end_to_end",
        mailbox=str(root),
        messages=expected,
        stored=stored,
        rounds=args.rounds,
        seconds_best=round(min(engine_s), 2),
        seconds_all=[round(x, 2) for x in engine_s],
        messages_per_s=round(engine_rate, 1),
        parse_worker=args.parse_worker,
        timed="engine.sync() of a new account (best round): list, batched get over HTTP, parse, encrypt, "
        "store (threads, contacts, attachments, search rows pending)",
        emulator_http_requests=stats.http_requests,
        emulator_batch_requests=stats.batch_requests,
    )
    emit(
        "quota_off",
        "engine_stored_and_indexed",
        messages=expected,
        indexed=report["indexed"],
        seconds_best=round(min(searchable_s), 2),
        seconds_all=[round(x, 2) for x in searchable_s],
        index_seconds=round(report["index_seconds"], 2),
        messages_per_s=round(searchable_rate, 1),
        timed="engine.sync() then engine.index_search() (decrypt text bodies, tsvector into email_search)",
    )
    emit(
        "quota_off",
        "stage_fetch_only",
        messages=fetched,
        seconds_best=round(min(fetch_s), 2),
        messages_per_s=round(fetched / min(fetch_s), 1),
        timed=f"GmailClient list + get_messages in chunks of {chunk} from the emulator process, "
        "no parse, no store (best round)",
    )
    parsed, parse_s = min((_parse_only(root) for _ in range(args.rounds)), key=lambda r: r[1])
    emit(
        "quota_off",
        "stage_parse_only",
        messages=parsed,
        seconds_best=round(parse_s, 2),
        messages_per_s=round(parsed / parse_s, 1),
        timed="mail.mime.parse_message over the corpus already in memory (best round)",
    )
    for index in (False, True):
        runs = base_s[index]
        ours_s = searchable_s if index else engine_s
        rate = expected / min(runs)
        ours = searchable_rate if index else engine_rate
        emit(
            "quota_off",
            "baseline_parse_copy_index" if index else "baseline_parse_copy",
            messages=expected,
            seconds_best=round(min(runs), 2),
            seconds_all=[round(r, 2) for r in runs],
            messages_per_s=round(rate, 1),
            compared_with="engine_stored_and_indexed" if index else "engine_end_to_end",
            engine_fraction_of_baseline=round(ours / rate, 4),
            # Each round's engine against the bare loop run right after it.
            paired_fractions_median=round(
                statistics.median(b / e for b, e in zip(runs, ours_s, strict=True)), 4
            ),
            timed="read_corpus_message + parse_message + copy_rows"
            + (" + the engine's tsvector into email_search, same transaction" if index else "")
            + ", 500 rows per transaction, one process (best round)",
        )
    if profiler is not None:
        out = io.StringIO()
        stats_view = pstats.Stats(profiler, stream=out).strip_dirs()
        stats_view.sort_stats("tottime").print_stats(args.profile_lines)
        stats_view.sort_stats("cumulative").print_stats(args.profile_lines)
        print(out.getvalue(), file=sys.stderr, flush=True)


# -- command line ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timeout", type=float, default=280.0, help="seconds each part may take")
    parts = parser.add_subparsers(dest="part")
    single = parts.add_parser("single", help="one account, legacy quota")
    single.add_argument("--messages", type=int, default=3000, help="generated messages")
    single.add_argument("--mailbox", help="load this corpus instead of generating")
    many = parts.add_parser("many", help="many accounts at once, 2026 quota")
    many.add_argument("--accounts", type=int, default=50)
    many.add_argument("--messages", type=int, default=150, help="generated messages per account")
    many.add_argument("--mode", choices=("asyncio", "actors"), default="asyncio")
    many.add_argument("--shared-workspace", action="store_true", help="all accounts in one workspace")
    many.add_argument("--fetch-chunk", type=int, help="settings sync.fetch_chunk (default: the setting's)")
    many.add_argument("--pool-max", type=int, default=10, help="Postgres pool of this process (asyncio)")
    many.add_argument(
        "--no-warm-workspace",
        action="store_true",
        help="asyncio: do not resolve each engine's workspace before its sync (shows the pool deadlock)",
    )
    off = parts.add_parser("quota-off", help="end to end without quota vs parse + COPY")
    off.add_argument("--mailbox", default=str(CORPUS))
    off.add_argument("--rounds", type=int, default=3, help="runs of each figure; the best counts")
    off.add_argument("--profile", action="store_true", help="also profile the engine (stderr)")
    off.add_argument(
        "--parse-worker",
        choices=("auto", "on", "off"),
        default="auto",
        help="settings sync.parse_worker (auto: a worker process when quota is off)",
    )
    off.add_argument("--profile-lines", type=int, default=35)
    parts.add_parser("all", help="single, many (asyncio) and quota-off with their defaults")
    args = parser.parse_args(argv)
    if args.part is None:
        args.part = "all"
    return args


async def run(args: argparse.Namespace) -> None:
    parts = {"single": bench_single, "many": bench_many, "quota-off": bench_quota_off}
    if args.part != "all":
        await asyncio.wait_for(parts[args.part](args), timeout=args.timeout)
        return
    for name in parts:
        part_args = parse_args(["--timeout", str(args.timeout), name])
        await asyncio.wait_for(parts[name](part_args), timeout=args.timeout)


if __name__ == "__main__":
    asyncio.run(run(parse_args()))
