"""The open pixel through the deployed Serve stack vs a bare aiohttp server, with wrk, one run.

    .venv/bin/python benchmarks/tracking_http.py [--duration 10] [--connections 64]

Both servers answer GET /t/o/<token>.gif with the same 1x1 GIF after appending the event to the
same Redis stream (mail.tracking.records.TRACKING_STREAM):
- bare: one aiohttp process; its handler does one XADD per request (no token check);
- serve: `mailray`'s stack as `mailray up` starts it (Ray head, Serve with HAProxy ingress,
  configs/serve.yaml), the Tracking deployment verifying the signed token and recording the
  event through mail.tracking.intake (batched XADDs, spool fallback) before answering; its
  token names a real tracked email, so the EventWriter stores and aggregates every event.
Each is loaded to saturation (wrk, `--connections` connections), then the stack at half its
rate (wrk with a per-connection pause, calibrated) for its latency percentiles. Prints JSON
lines: both rates, the ratio, the latencies, and how long the writer took to store the backlog
the burst left in the stream. Needs wrk (`apt-get install wrk`), Postgres and Redis
(MAILRAY_DATABASE__URL / MAILRAY_REDIS__URL, default this machine's).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("MAILRAY_DATABASE__URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MAILRAY_REDIS__URL", "redis://127.0.0.1:6379/0")
STREAM = "mailray:stream:tracking"  # mail.tracking.records.TRACKING_STREAM

BARE_SERVER = textwrap.dedent(
    """
    import base64, sys, time, uuid
    import redis.asyncio
    from aiohttp import web
    from mail.tracking.records import ENTRY_FIELD, TRACKING_STREAM, RawEvent, encode_batch
    GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
    HEADERS = {"Content-Type": "image/gif", "Cache-Control": "no-store, no-cache, must-revalidate, private"}
    client = redis.asyncio.Redis.from_url(sys.argv[2], max_connections=64)
    async def pixel(request):
        event = RawEvent(uuid.uuid4().bytes, "open", 1, None, None, time.time_ns() // 1000,
                         request.remote, request.headers.get("User-Agent"), "GET")
        await client.xadd(TRACKING_STREAM, {ENTRY_FIELD: encode_batch([event])})
        return web.Response(body=GIF, headers=HEADERS)
    app = web.Application()
    app.router.add_get("/t/o/{token}", pixel)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
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


def stream_length() -> int:
    import redis

    return int(redis.Redis.from_url(REDIS_URL).xlen(STREAM))


def drop_stream() -> None:
    """The bare server's entries name no tracked email: not the stack writer's work to measure."""
    import redis

    redis.Redis.from_url(REDIS_URL).delete(STREAM)


def seconds_to_drain(timeout_s: float = 120.0) -> float | None:
    """How long the EventWriter takes to store what the stream still holds (None: not in time)."""
    started = time.monotonic()
    while stream_length() > 0:
        if time.monotonic() - started > timeout_s:
            return None
        time.sleep(0.1)
    return round(time.monotonic() - started, 1)


def bench_bare(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port), REDIS_URL], cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}/t/o/token.gif"
        wait_http(url)
        return wrk(url, duration=args.duration, connections=args.connections)
    finally:
        process.terminate()
        process.wait()


def start_stack(data_dir: Path) -> tuple[dict[str, str], str]:
    env = {
        **os.environ,
        "MAILRAY_DATABASE__URL": DATABASE_URL,
        "MAILRAY_REDIS__URL": REDIS_URL,
        "MAILRAY_APP__DATA_DIR": str(data_dir),
        "MAILRAY_RAY__INCLUDE_DASHBOARD": "false",
    }
    subprocess.run([str(ROOT / ".venv/bin/mailray"), "up"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    token = subprocess.run([sys.executable, "-c", TRACKED_EMAIL], cwd=ROOT, env=env, check=True,
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return env, token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    bare = bench_bare(args)
    emit("bare_aiohttp_xadd_saturated", connections=args.connections, **bare)
    drop_stream()
    with tempfile.TemporaryDirectory(prefix="mailray-bench-") as data_dir:
        env, token = start_stack(Path(data_dir))
        try:
            url = f"http://127.0.0.1:8000/t/o/{token}.gif"
            wait_http(url)
            wrk(url, duration=3, connections=args.connections)  # warm-up
            serve = wrk(url, duration=args.duration, connections=args.connections)
            emit("serve_pixel_saturated", connections=args.connections, **serve,
                 fraction_of_bare=round(serve["requests_per_s"] / bare["requests_per_s"], 3),
                 writer_backlog_entries=stream_length(), writer_drained_after_s=seconds_to_drain())  # fmt: skip
            half = serve["requests_per_s"] / 2
            connections = 32
            delay_ms = paced_delay_ms(url, connections, half)
            paced = wrk(url, duration=args.duration, connections=connections, delay_ms=delay_ms)
            emit(
                "serve_pixel_half_load",
                target_requests_per_s=round(half, 1),
                connections=connections,
                delay_ms=round(delay_ms, 2),
                **paced,
            )
        finally:
            subprocess.run([str(ROOT / ".venv/bin/mailray"), "down"], cwd=ROOT, env=env, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


if __name__ == "__main__":
    main()
