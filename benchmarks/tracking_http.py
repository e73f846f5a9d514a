"""The open pixel through the deployed Serve stack vs a bare aiohttp server, with wrk, one run.

    .venv/bin/python benchmarks/tracking_http.py [--duration 10] [--connections 64] [--rounds 3]
    .venv/bin/python benchmarks/tracking_http.py --tracking noop    # the control: Serve alone

Both servers answer GET /t/o/<token>.gif with the same 1x1 GIF after appending the event to a
Redis stream of the same Redis server:
- bare: one aiohttp process; its handler does one XADD per request (no token check) to a stream
  of its own (BARE_STREAM);
- serve: `mailray`'s stack as `mailray up` starts it (Ray head, Serve with HAProxy ingress,
  configs/serve.yaml), the Tracking deployment verifying the signed token and recording the
  event through mail.tracking.intake (batched XADDs, spool fallback) before answering; its
  token names a real tracked email, so the EventWriter stores and aggregates every event.
The bare server is loaded alone first (wrk, `--connections` connections, to saturation); then,
with the stack up beside it and at rest, the two are loaded in turn, alternating, `--rounds`
pairs: this machine's speed drifts by tens of % over minutes, and each pair meets the same
drift (the bare server's stream has no reader: the stack's writer does none of its work).
Last, the stack at half its median rate (wrk with a per-connection pause, calibrated),
`--rounds` times, for its latency percentiles. The bare server runs on asyncio's own event loop,
as `web.run_app` does unless told otherwise; `--bare-loop uvloop` runs it on uvloop, the loop Ray
gives the replicas (the stricter comparison). With `--tracking noop` the stack's Tracking
deployment is replaced by a no-op ASGI app that answers the same GIF and records nothing (no
token check, no event): what Serve's own path costs, the control for these figures. Prints
JSON lines: each pair's rates and ratio, their median, the stack against the bare server alone,
the latencies, and how long the writer took to store the backlog each burst left. Needs wrk
(`apt-get install wrk`), Postgres and Redis (MAILRAY_DATABASE__URL / MAILRAY_REDIS__URL, default
this machine's).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("MAILRAY_DATABASE__URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MAILRAY_REDIS__URL", "redis://127.0.0.1:6379/0")
STREAM = "mailray:stream:tracking"  # mail.tracking.records.TRACKING_STREAM
# The bare server's entries: the same XADD to the same Redis, in a stream of their own while the
# stack is up beside it (its events name no tracked email: no work of the stack's writer).
BARE_STREAM = STREAM + ":bare"

BARE_SERVER = textwrap.dedent(
    """
    import base64, sys, time, uuid
    import redis.asyncio
    from aiohttp import web
    from mail.tracking.records import ENTRY_FIELD, RawEvent, encode_batch
    GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
    HEADERS = {"Content-Type": "image/gif", "Cache-Control": "no-store, no-cache, must-revalidate, private"}
    client = redis.asyncio.Redis.from_url(sys.argv[2], max_connections=64)
    async def pixel(request):
        event = RawEvent(uuid.uuid4().bytes, "open", 1, None, None, time.time_ns() // 1000,
                         request.remote, request.headers.get("User-Agent"), "GET")
        await client.xadd(sys.argv[3], {ENTRY_FIELD: encode_batch([event])})
        return web.Response(body=GIF, headers=HEADERS)
    app = web.Application()
    app.router.add_get("/t/o/{token}", pixel)
    loop = None
    if sys.argv[4] == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, loop=loop)
    """
)

# A workspace with one tracked email, and its open token: the writer does its whole work for each
# event (store, classify, aggregate), as it would for a campaign's.
TRACKED_EMAIL = textwrap.dedent(
    """
    import asyncio, uuid
    import psycopg
    from mail import auth
    from mail.config import load_settings
    from mail.crypto import load_keyring
    from mail.tracking import registry
    from mail.tracking.tokens import TokenKind, TokenSigner, TrackingToken
    async def main():
        settings = load_settings()
        async with await psycopg.AsyncConnection.connect(settings.database.url) as conn:
            suffix = uuid.uuid4().hex[:8]
            workspace, _ = await auth.create_workspace(conn, f"bench {suffix}", owner_email=f"b-{suffix}@example.com")
            async with conn.transaction():
                email_id = await registry.create_tracked_email(conn, registry.NewTrackedEmail(
                    workspace_id=workspace.id, recipient_email="reader@example.com", subject="bench"))
        signer = TokenSigner.from_keyring(load_keyring(settings))
        print(signer.sign(TrackingToken(kind=TokenKind.OPEN, email_id=email_id)))
    asyncio.run(main())
    """
)

# The control: the Tracking deployment without mailray's work (`--tracking noop`).
NOOP_PIXEL = textwrap.dedent(
    """
    import base64
    from ray import serve
    GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
    HEADERS = [(b"content-type", b"image/gif"), (b"content-length", str(len(GIF)).encode())]
    async def pixel(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await send({"type": "http.response.body", "body": GIF})
    @serve.deployment(name="Tracking")
    @serve.ingress(lambda: pixel)
    class Tracking:
        pass
    def build(args):
        return Tracking.bind()
    """
)

DELAY_SCRIPT = """
local interval = tonumber(os.getenv("WRK_DELAY_MS"))
function delay() return interval end
"""


def emit(figure: str, **values: Any) -> None:
    print(json.dumps({"benchmark": "tracking_http", "figure": figure, **values,
                      "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}), flush=True)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s:.0f}s")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, *, duration: int, connections: int, delay_ms: float | None = None) -> dict[str, Any]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url]
    env = dict(os.environ)
    script = None
    if delay_ms is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
        script.write(DELAY_SCRIPT)
        script.close()
        command[1:1] = ["-s", script.name]
        env["WRK_DELAY_MS"] = str(max(1, round(delay_ms)))
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    if script is not None:
        os.unlink(script.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = {f"p{m.group(1)}_ms": round(_ms(m.group(2)), 2)
                   for m in re.finditer(r"\s+(50|75|90|99)%\s+(\S+)", output)}  # fmt: skip
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "requests_per_s": round(rate, 1),
        **percentiles,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else None,
    }


def paced_delay_ms(url: str, connections: int, target: float) -> float:
    """The per-connection pause that makes `connections` closed-loop connections offer `target`
    requests/s: each makes 1000 / (pause + latency) requests/s, so measure the latency at a first
    guess of the pause and take it off."""
    guess = connections / target * 1000
    trial = wrk(url, duration=3, connections=connections, delay_ms=guess)
    latency_ms = max(0.0, connections / trial["requests_per_s"] * 1000 - guess)
    return float(max(1.0, guess - latency_ms))


def stream_length(stream: str = STREAM) -> int:
    import redis

    return int(redis.Redis.from_url(REDIS_URL).xlen(stream))


def drop_stream(*streams: str) -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).delete(*streams)


def seconds_to_drain(timeout_s: float = 120.0) -> float | None:
    """How long the EventWriter takes to store what the stream still holds (None: not in time)."""
    started = time.monotonic()
    while stream_length() > 0:
        if time.monotonic() - started > timeout_s:
            return None
        time.sleep(0.1)
    return round(time.monotonic() - started, 1)


def _busy_jiffies() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def wait_quiet(busy_below: float = 0.15, window_s: float = 2.0, timeout_s: float = 90.0) -> float:
    """Wait until the machine's CPUs are mostly idle (what the run before left winding down, such
    as a stack going down, would slow the next measurement); the last window's busy fraction."""
    deadline = time.monotonic() + timeout_s
    while True:
        busy0, total0 = _busy_jiffies()
        time.sleep(window_s)
        busy1, total1 = _busy_jiffies()
        busy = (busy1 - busy0) / max(1, total1 - total0)
        if busy < busy_below or time.monotonic() > deadline:
            return round(busy, 3)


@contextlib.contextmanager
def bare_server(loop: str) -> Iterator[str]:
    """The bare server in a process of its own, on `loop`; its pixel URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", BARE_SERVER, str(port), REDIS_URL, BARE_STREAM, loop], cwd=ROOT
    )
    try:
        url = f"http://127.0.0.1:{port}/t/o/token.gif"
        wait_http(url)
        yield url
    finally:
        process.terminate()
        process.wait()


def stack_environ(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MAILRAY_DATABASE__URL": DATABASE_URL,
        "MAILRAY_REDIS__URL": REDIS_URL,
        "MAILRAY_APP__DATA_DIR": str(data_dir),
        "MAILRAY_RAY__INCLUDE_DASHBOARD": "false",
    }


def noop_config(directory: Path) -> Path:
    """configs/serve.yaml with the tracking application's import path on NOOP_PIXEL."""
    import yaml

    (directory / "noop_pixel.py").write_text(NOOP_PIXEL)
    config = yaml.safe_load((ROOT / "configs/serve.yaml").read_text())
    for application in config["applications"]:
        if application["name"] == "tracking":
            application["import_path"] = "noop_pixel:build"
            application["runtime_env"] = {"env_vars": {"PYTHONPATH": str(directory)}}
    path = directory / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_stack(env: dict[str, str]) -> str:
    """`mailray up` (a failure is stopped by the caller's `mailray down`); a tracked email's token."""
    subprocess.run([str(ROOT / ".venv/bin/mailray"), "up"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    token = subprocess.run([sys.executable, "-c", TRACKED_EMAIL], cwd=ROOT, env=env, check=True,
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="bare/stack pairs, and half-load runs")
    parser.add_argument("--tracking", choices=("mailray", "noop"), default="mailray",
                        help="noop: the Tracking deployment replaced by a GIF-only ASGI app (the control)")  # fmt: skip
    parser.add_argument("--bare-loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the bare server's event loop: asyncio's own (as web.run_app runs), or uvloop "
                             "(the loop Ray gives the replicas)")  # fmt: skip
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    drop_stream(STREAM, BARE_STREAM)
    with bare_server(args.bare_loop) as bare_url:
        # Alone first: what the bare server does with the machine to itself.
        idle = wait_quiet()
        wrk(bare_url, duration=3, connections=args.connections)  # warm-up
        alone = wrk(bare_url, duration=args.duration, connections=args.connections)
        emit("bare_aiohttp_xadd_alone", loop=args.bare_loop, connections=args.connections, busy_before=idle,
             **alone)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="mailray-bench-") as data_dir:
            env = stack_environ(Path(data_dir))
            if args.tracking == "noop":
                env["MAILRAY_SERVE__CONFIG_PATH"] = str(noop_config(Path(data_dir)))
            try:
                token = start_stack(env)
                url = f"http://127.0.0.1:8000/t/o/{token}.gif"
                wait_http(url)
                wrk(url, duration=3, connections=args.connections)  # warm-up
                seconds_to_drain()
                pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
                for round_number in range(args.rounds):
                    # Alternating, each right after the other: this machine's speed drifts by
                    # tens of % over minutes, and both meet the same drift.
                    order = ("bare", "serve") if round_number % 2 == 0 else ("serve", "bare")
                    figures: dict[str, dict[str, Any]] = {}
                    for name in order:
                        wait_quiet(busy_below=0.25)  # a stack at rest ticks (Ray, Serve's controller)
                        target = bare_url if name == "bare" else url
                        figures[name] = wrk(target, duration=args.duration, connections=args.connections)
                        if name == "serve":
                            figures[name]["writer_backlog_entries"] = stream_length(STREAM)
                            figures[name]["writer_drained_after_s"] = seconds_to_drain()
                    pairs.append((figures["bare"], figures["serve"]))
                    emit("pair", round=round_number + 1, bare=figures["bare"], serve=figures["serve"],
                         fraction_of_bare=round(figures["serve"]["requests_per_s"] / figures["bare"]["requests_per_s"], 3))  # fmt: skip
                bare_rates = [b["requests_per_s"] for b, _ in pairs]
                serve_rates = [s["requests_per_s"] for _, s in pairs]
                fractions = [s / b for b, s in zip(bare_rates, serve_rates, strict=True)]
                emit(
                    "serve_pixel_saturated",
                    tracking=args.tracking,
                    bare_loop=args.bare_loop,
                    connections=args.connections,
                    bare_requests_per_s=bare_rates,
                    serve_requests_per_s=serve_rates,
                    fractions_of_bare=[round(f, 3) for f in fractions],
                    fraction_of_bare_median=round(statistics.median(fractions), 3),
                    serve_median_vs_bare_alone=round(
                        statistics.median(serve_rates) / alone["requests_per_s"], 3
                    ),
                    serve_p99_ms=[s["p99_ms"] for _, s in pairs],
                )
                half = statistics.median(serve_rates) / 2
                connections = 32
                delay_ms = paced_delay_ms(url, connections, half)
                paced = []
                for _ in range(args.rounds):
                    wait_quiet(busy_below=0.25)
                    paced.append(wrk(url, duration=args.duration, connections=connections, delay_ms=delay_ms))
                emit(
                    "serve_pixel_half_load",
                    tracking=args.tracking,
                    target_requests_per_s=round(half, 1),
                    connections=connections,
                    delay_ms=round(delay_ms, 2),
                    requests_per_s=[p["requests_per_s"] for p in paced],
                    p50_ms=[p["p50_ms"] for p in paced],
                    p90_ms=[p["p90_ms"] for p in paced],
                    p99_ms=[p["p99_ms"] for p in paced],
                    p99_ms_median=statistics.median(p["p99_ms"] for p in paced),
                    non_2xx=sum(p["non_2xx"] for p in paced),
                )
            finally:
                subprocess.run([str(ROOT / ".venv/bin/mailray"), "down"], cwd=ROOT, env=env, check=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    drop_stream(STREAM, BARE_STREAM)


if __name__ == "__main__":
    main()
