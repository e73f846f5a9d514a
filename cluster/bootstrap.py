"""Bring the stack up and down: services, storage, Ray, Serve.

`up` resolves Postgres and Redis (configured URLs, or the embedded ones started in the data
directory), migrates, creates the coming months' partitions, makes sure a keyring exists, starts
a Ray head (or joins RAY_ADDRESS / ray.address) and applies configs/serve.yaml with the resolved
URLs in each application's runtime_env. `down` undoes what `up` started, and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import yaml

from cluster.embedded import read_state, start_embedded, stop_embedded
from mail.config import PROJECT_ROOT, data_dir
from mail.crypto import load_keyring
from mail.errors import ConfigError, MailrayError
from mail.store.migrations import migrate
from mail.store.partitions import ensure_partitions
from models.settings import Settings

log = logging.getLogger(__name__)

RAY_STATE_FILE = "ray.json"


class RayState(msgspec.Struct, frozen=True, kw_only=True):
    address: str
    started_head: bool
    dashboard_url: str | None = None
    # A head started by `ray start` uses token authentication (Ray's default); the token lives in
    # ~/.ray/auth_token and drivers must be told to present it.
    token_auth: bool = False


def _connect(state: RayState, namespace: str) -> None:
    # Ray reads RAY_AUTH_MODE when it is first imported: set it before that.
    if state.token_auth:
        os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    ray.init(address=state.address, namespace=namespace, log_to_driver=False)


class StackInfo(msgspec.Struct, frozen=True, kw_only=True):
    api_url: str
    dashboard_url: str | None
    ray_address: str
    database: str
    redis: str
    embedded_postgres: bool
    embedded_redis: bool


def resolve_services(settings: Settings) -> Settings:
    """Settings whose database and Redis URLs are set: configured ones, or embedded ones started now."""
    directory = data_dir(settings)
    needs_postgres = settings.database.url is None
    needs_redis = settings.redis.url is None
    if not (needs_postgres or needs_redis):
        return settings
    started = start_embedded(directory, postgres=needs_postgres, redis=needs_redis)
    return msgspec.structs.replace(
        settings,
        database=msgspec.structs.replace(
            settings.database, url=settings.database.url or started.database_url
        ),
        redis=msgspec.structs.replace(settings.redis, url=settings.redis.url or started.redis_url),
    )


async def prepare_storage(settings: Settings) -> list[str]:
    """Migrate, create partitions and make sure the keyring loads; return what was done."""
    assert settings.database.url is not None
    done = [f"migration {m.version:04d}_{m.name} applied" for m in await migrate(settings.database.url)]
    import psycopg

    async with await psycopg.AsyncConnection.connect(settings.database.url, autocommit=True) as conn:
        results = await ensure_partitions(
            conn,
            months_behind=settings.database.partition_months_behind,
            months_ahead=settings.database.partition_months_ahead,
        )
    done += [f"partition {r.table} {r.month:%Y-%m} created" for r in results if r.result == "created"]
    keyring = load_keyring(settings)
    done.append(f"keyring ready (newest key {keyring.newest_id})")
    return done


def worker_env(settings: Settings) -> dict[str, str]:
    """Environment every Ray worker and Serve replica of mailray needs to find its services."""
    assert settings.database.url is not None and settings.redis.url is not None
    env = {
        "MAILRAY_DATABASE__URL": settings.database.url,
        "MAILRAY_REDIS__URL": settings.redis.url,
        "MAILRAY_APP__DATA_DIR": str(data_dir(settings)),
        "MAILRAY_APP__MODE": settings.app.mode,
    }
    # Gmail endpoints may point at the emulator (the demo, tests): every worker must agree.
    gmail = settings.gmail
    for key in ("api_endpoint", "oauth_auth_uri", "oauth_token_uri", "oauth_revoke_uri", "oidc_certs_uri",
                "client_id", "client_secret", "redirect_uri", "push_audience", "pubsub_topic", "quota_regime"):  # fmt: skip
        env[f"MAILRAY_GMAIL__{key.upper()}"] = str(getattr(gmail, key))
    # The DNS server that verifies sending domains (the API's replicas ask it).
    if settings.sending.dns_nameserver:
        env["MAILRAY_SENDING__DNS_NAMESERVER"] = settings.sending.dns_nameserver
    # Whatever else the operator overrides in this environment reaches the workers too.
    for key, value in os.environ.items():
        if key.startswith("MAILRAY_"):
            env.setdefault(key, value)
    if "MAILRAY_CONFIG" in os.environ:
        env["MAILRAY_CONFIG"] = str(Path(os.environ["MAILRAY_CONFIG"]).resolve())
    return env


def start_supervisor(settings: Settings) -> None:
    """Start the SyncSupervisor (detached), which starts an AccountSync actor per account."""
    from actors.lookup import start_detached
    from actors.sync_supervisor import SUPERVISOR_NAME, SyncSupervisor

    start_detached(SyncSupervisor, SUPERVISOR_NAME, settings.ray.namespace, worker_env(settings))


def start_writer(settings: Settings) -> None:
    """Start the EventWriter (detached): tracking stream -> Postgres."""
    from actors.event_writer import start_event_writer

    start_event_writer(settings.ray.namespace, worker_env(settings))


def start_analysis(settings: Settings) -> None:
    """Start the AnalysisWorker (detached): new mail -> the Classifier deployment -> Postgres."""
    if not settings.ai.analysis_worker:
        return
    from actors.analysis_worker import start_analysis_worker

    start_analysis_worker(settings.ray.namespace, worker_env(settings))


def start_senders(settings: Settings) -> None:
    """Start the campaign scheduler and the sender pool (detached)."""
    from actors.sender import start_sending_actors

    start_sending_actors(settings.ray.namespace, worker_env(settings), settings.sending.senders)


def _ray_cli() -> str:
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else "ray"


def _write_ray_state(settings: Settings, state: RayState) -> None:
    directory = data_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / RAY_STATE_FILE).write_bytes(msgspec.json.encode(state))


def read_ray_state(settings: Settings) -> RayState | None:
    path = data_dir(settings) / RAY_STATE_FILE
    return msgspec.json.decode(path.read_bytes(), type=RayState) if path.exists() else None


def start_ray(settings: Settings) -> RayState:
    """Join RAY_ADDRESS / ray.address, or start a local head; connect this process as a driver."""
    address = os.environ.get("RAY_ADDRESS") or settings.ray.address
    if address:
        state = RayState(address=address, started_head=False)
        _connect(state, settings.ray.namespace)
    else:
        address = f"127.0.0.1:{settings.ray.gcs_port}"
        command = [
            _ray_cli(), "start", "--head", "--port", str(settings.ray.gcs_port),
            "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
            f"--include-dashboard={str(settings.ray.include_dashboard).lower()}",
            "--dashboard-host", settings.ray.dashboard_host,
            "--dashboard-port", str(settings.ray.dashboard_port),
        ]  # fmt: skip
        if settings.ray.num_cpus is not None:
            command += ["--num-cpus", str(settings.ray.num_cpus)]
        if settings.ray.num_gpus is not None:
            command += ["--num-gpus", str(settings.ray.num_gpus)]
        env = {**os.environ, **worker_env(settings), **serve_env(settings)}
        env["RAY_worker_niceness"] = str(settings.ray.worker_niceness)
        env.pop("RAY_ADDRESS", None)
        # Token auth needs ~/.ray/auth_token; a fresh machine has none until one is generated.
        generated = subprocess.run(
            [_ray_cli(), "get-auth-token", "--generate"], env=env, capture_output=True, text=True, check=False
        )
        if generated.returncode != 0:
            raise MailrayError(f"`ray get-auth-token --generate` failed: {generated.stderr.strip()}")
        # A session of its own: Ctrl-C in the terminal reaches `mailray run`, which stops Ray in order.
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, check=False, start_new_session=True
        )
        if result.returncode != 0:
            raise MailrayError(f"`ray start --head` failed: {result.stderr.strip() or result.stdout.strip()}")
        dashboard = (
            f"http://{settings.ray.dashboard_host}:{settings.ray.dashboard_port}"
            if settings.ray.include_dashboard
            else None
        )
        state = RayState(address=address, started_head=True, dashboard_url=dashboard, token_auth=True)
        _connect(state, settings.ray.namespace)
    _write_ray_state(settings, state)
    return state


def connect_to_cluster(settings: Settings) -> None:
    """Connect this process as a driver to RAY_ADDRESS / ray.address, else to the cluster `mailray up` started."""
    address = os.environ.get("RAY_ADDRESS") or settings.ray.address
    state = RayState(address=address, started_head=False) if address else read_ray_state(settings)
    if state is None:
        raise ConfigError("no Ray cluster to run on: start one with `mailray up` (or set RAY_ADDRESS)")
    _connect(state, settings.ray.namespace)


def serve_env(settings: Settings) -> dict[str, str]:
    # Throughput-optimized Serve runs user code on the replica's own event loop (no thread hop
    # per request): the open pixel went from about 2,050 to 4,550 requests/s on 2 cores.
    env = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    if settings.serve.haproxy_ingress:
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        threads = settings.serve.haproxy_threads or max(1, (os.cpu_count() or 2) // 2)
        env["RAY_SERVE_HAPROXY_NBTHREAD"] = str(threads)
        env["RAY_SERVE_HAPROXY_METRICS_ENABLED"] = "1" if settings.serve.ingress_request_metrics else "0"
    return env


def serve_config(settings: Settings) -> dict[str, Any]:
    """configs/serve.yaml with the HTTP address from settings and worker_env in every runtime_env."""
    path = Path(settings.serve.config_path)
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(
            f"settings: serve.config_path (MAILRAY_SERVE__CONFIG_PATH): cannot read {path}: {error}"
        ) from None
    config.setdefault("http_options", {}).update(host=settings.serve.http_host, port=settings.serve.http_port)
    for application in config.get("applications", []):
        runtime_env = application.setdefault("runtime_env", {})
        runtime_env.setdefault("env_vars", {}).update(worker_env(settings))
        for deployment in application.get("deployments", []):
            options = deployment.get("ray_actor_options", {})
            if options.get("num_gpus") == "auto":
                options["num_gpus"] = 1 if _cluster_gpus() >= 1 else 0
    return dict(config)


def _cluster_gpus() -> float:
    """GPUs in the connected Ray cluster (0 when Ray is not running here)."""
    import ray

    if not ray.is_initialized():
        return 0.0
    resources: Callable[[], dict[str, float]] = ray.cluster_resources
    return float(resources().get("GPU", 0.0))


def deploy_serve(
    settings: Settings,
    *,
    timeout_s: float = 120.0,
    user_configs: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> None:
    """Start Serve on the connected cluster and apply the config; wait until every app runs.

    `user_configs` replaces the user_config of (application, deployment)s: Serve applies such a
    change by calling the replicas' `reconfigure`, without restarting them (new classifier heads)."""
    os.environ.update(serve_env(settings))
    from ray.serve._private import api as serve_private_api
    from ray.serve.schema import ServeDeploySchema

    config = serve_config(settings)
    for (app_name, deployment_name), user_config in (user_configs or {}).items():
        deployments = [
            deployment
            for application in config.get("applications", [])
            if application.get("name") == app_name
            for deployment in application.get("deployments", [])
            if deployment.get("name") == deployment_name
        ]
        if not deployments:
            raise ConfigError(
                f"{settings.serve.config_path}: no deployment {deployment_name} in application {app_name}"
            )
        deployments[0]["user_config"] = user_config
    try:
        schema = ServeDeploySchema.model_validate(config)
    except ValueError as error:
        raise ConfigError(f"{settings.serve.config_path}: {error}".replace("\n", " ")) from None
    client = serve_private_api.serve_start(
        http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location
    )
    client.deploy_apps(schema, _blocking=False)
    _wait_for_apps(settings, {app.name for app in schema.applications}, timeout_s)


def _wait_for_apps(settings: Settings, names: set[str], timeout_s: float) -> None:
    import time
    import urllib.request

    from ray import serve

    deadline = time.monotonic() + timeout_s
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        status = serve.status()
        statuses = {name: str(app.status) for name, app in status.applications.items() if name in names}
        failed = {name: app.message for name, app in status.applications.items() if "FAIL" in str(app.status)}
        if failed:
            raise MailrayError(f"Serve applications failed to deploy: {failed}")
        if len(statuses) == len(names) and all(value.endswith("RUNNING") for value in statuses.values()):
            # The proxy learns routes shortly after the app runs; wait until it answers.
            try:
                with urllib.request.urlopen(f"{api_url(settings)}/healthz", timeout=5) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError:
                pass
        time.sleep(0.5)
    raise MailrayError(f"Serve applications not running after {timeout_s:.0f}s: {statuses}")


def api_url(settings: Settings) -> str:
    return f"http://{settings.serve.http_host}:{settings.serve.http_port}"


def _redact(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # not a libpq URL (Redis)
        return url.split("@")[-1] if "@" in url else url
    parts.pop("password", None)
    return " ".join(f"{key}={value}" for key, value in parts.items())


def up(settings: Settings) -> StackInfo:
    resolved = resolve_services(settings)
    for line in asyncio.run(prepare_storage(resolved)):
        log.info(line)
    ray_state = start_ray(resolved)
    deploy_serve(resolved)
    start_supervisor(resolved)
    start_writer(resolved)
    start_senders(resolved)
    start_analysis(resolved)
    assert resolved.database.url is not None and resolved.redis.url is not None
    return StackInfo(
        api_url=api_url(resolved),
        dashboard_url=ray_state.dashboard_url,
        ray_address=ray_state.address,
        database=_redact(resolved.database.url),
        redis=_redact(resolved.redis.url),
        embedded_postgres=settings.database.url is None,
        embedded_redis=settings.redis.url is None,
    )


def down(settings: Settings) -> list[str]:
    """Shut down Serve, the Ray head if `up` started it, and the embedded services."""
    done: list[str] = []
    ray_state = read_ray_state(settings)
    if ray_state is not None:
        if ray_state.started_head:
            # Disconnect first, or the head's shutdown messages land in this driver's terminal.
            import ray

            ray.shutdown()
            # `ray stop` ends Serve with the head; asking the controller first only adds 30 s.
            subprocess.run([_ray_cli(), "stop"], capture_output=True, check=False)
            done.append("ray head stopped (Serve with it)")
        else:
            _shutdown_serve(ray_state, settings.ray.namespace, done)
        (data_dir(settings) / RAY_STATE_FILE).unlink(missing_ok=True)
    from cluster.demo import stop_emulator

    if stop_emulator(settings):
        done.append("demo Gmail emulator stopped")
    if read_state(data_dir(settings)) is not None:
        stop_embedded(data_dir(settings))
        done.append("embedded services stopped")
    return done


def _shutdown_serve(ray_state: RayState, namespace: str, done: list[str]) -> None:
    """Remove mailray's Serve applications from a cluster that mailray joined but does not own."""
    import ray

    try:
        if not ray.is_initialized():
            _connect(ray_state, namespace)
        from ray import serve

        serve.shutdown()  # type: ignore[no-untyped-call]
        done.append("serve shut down")
    except Exception as error:  # the cluster may be gone already; keep tearing down
        done.append(f"serve: {error}")
    finally:
        ray.shutdown()


def status(settings: Settings) -> dict[str, Any]:
    """What runs now: services, Ray, Serve applications."""
    import urllib.request

    report: dict[str, Any] = {}
    embedded = read_state(data_dir(settings))
    report["postgres"] = (
        (settings.database.url and _redact(settings.database.url))
        or (embedded and embedded.database_url and f"embedded: {_redact(embedded.database_url)}")
        or "not running"
    )
    report["redis"] = (
        settings.redis.url
        or (embedded and embedded.redis_url and f"embedded: {embedded.redis_url}")
        or "not running"
    )
    ray_state = read_ray_state(settings)
    report["ray"] = ray_state.address if ray_state else "not started by mailray"
    report["dashboard"] = ray_state.dashboard_url if ray_state else None
    try:
        with urllib.request.urlopen(f"{api_url(settings)}/healthz", timeout=3) as response:  # noqa: S310
            report["api"] = f"{api_url(settings)} healthz {response.status}"
    except OSError as error:
        report["api"] = f"{api_url(settings)} not answering ({error})"
    if ray_state is not None:
        if ray_state.token_auth:
            os.environ["RAY_AUTH_MODE"] = "token"
        import ray

        try:
            _connect(ray_state, settings.ray.namespace)
            from ray import serve

            report["serve"] = {name: str(app.status) for name, app in serve.status().applications.items()}
            report["resources"] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        except Exception as error:  # status reports; it never fails on what it finds
            report["serve"] = f"unavailable: {error}"
        finally:
            ray.shutdown()
    return report
