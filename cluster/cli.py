"""The `mailray` command line. Heavy modules are imported inside commands so `--help` is instant."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
import typer

from mail.errors import MailrayError

T = TypeVar("T")

# Locals in tracebacks could print secrets (keys, URLs with passwords): keep them out.
app = typer.Typer(
    help="mailray: the email backend for CRMs, on Ray.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
workspace_app = typer.Typer(help="Workspaces.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
keys_app = typer.Typer(help="Encryption keys.", no_args_is_help=True)
emulator_app = typer.Typer(help="Provider emulators (the demo and the test bed).", no_args_is_help=True)
mutate_app = typer.Typer(help="Change a running Gmail emulator's mailboxes.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")
app.add_typer(apikey_app, name="apikey")
app.add_typer(keys_app, name="keys")
app.add_typer(emulator_app, name="emulator")
emulator_app.add_typer(mutate_app, name="mutate")
bounces_app = typer.Typer(help="Bounces: read DSNs and text bounces, classify them.", no_args_is_help=True)
app.add_typer(bounces_app, name="bounces")
domains_app = typer.Typer(help="Sending domains: DKIM keys, DNS records, verification.", no_args_is_help=True)
app.add_typer(domains_app, name="domains")

# How often `mailray run` makes sure the coming months' partitions exist.
PARTITION_JOB_INTERVAL_S = 6 * 3600


def _settings() -> Any:
    from mail.config import load_settings

    return load_settings()


def _resolved() -> Any:
    from cluster.bootstrap import resolve_services

    return resolve_services(_settings())


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _run(coroutine_factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coroutine_factory()

    return asyncio.run(main())


def _in_workspace(settings: Any, workspace: str, call: Callable[[Any, Any], Awaitable[T]]) -> T:
    """`call(conn, workspace)` on a connection to the settings' database (committed when it
    returns), the workspace found by slug or id."""
    import psycopg

    from mail import auth

    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(settings.database.url) as conn:
            return await call(conn, await auth.find_workspace(conn, workspace))

    return asyncio.run(main())


@app.command()
def up() -> None:
    """Start (or join) Ray, start embedded services where no URL is set, deploy Serve."""
    from cluster.bootstrap import up as bring_up

    settings = _settings()
    _setup_logging(settings.app.log_level)
    info = bring_up(settings)
    _print_info(info)


def _print_info(info: Any) -> None:
    typer.echo(f"API:            {info.api_url}   (try {info.api_url}/healthz)")
    typer.echo(f"Ray dashboard:  {info.dashboard_url or 'off'}   (token auth: ~/.ray/auth_token)")
    typer.echo(f"Ray cluster:    {info.ray_address}")
    typer.echo(f"Postgres:       {'embedded ' if info.embedded_postgres else ''}{info.database}")
    typer.echo(f"Redis:          {'embedded ' if info.embedded_redis else ''}{info.redis}")


@app.command()
def down() -> None:
    """Stop what `mailray up` started: Serve, the Ray head, embedded services."""
    from cluster.bootstrap import down as bring_down

    for line in bring_down(_settings()):
        typer.echo(line)


@app.command()
def status() -> None:
    """Show services, Ray and Serve status."""
    import json

    from cluster.bootstrap import status as stack_status

    typer.echo(json.dumps(stack_status(_settings()), indent=2, default=str))


@app.command()
def run(
    demo: Annotated[
        bool, typer.Option(help="Start the Gmail emulator with real mail, connect it by OAuth and sync it.")
    ] = True,
) -> None:
    """`up` (with the demo), then keep running until Ctrl-C, then `down`."""
    from cluster.bootstrap import api_url, prepare_storage, resolve_services
    from cluster.bootstrap import down as bring_down
    from cluster.bootstrap import up as bring_up

    settings = _settings()
    _setup_logging(settings.app.log_level)
    stopping = False

    def stop(signum: int, _: Any) -> None:
        nonlocal stopping
        stopping = True

    def handle_signals() -> None:
        # Again after `up`: connecting to Ray installs a SIGTERM handler that ends the process at
        # once, and `kill`, `timeout` or a service manager would then skip `down` entirely.
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    handle_signals()
    try:
        total = 0
        if demo:
            from cluster.demo import demo_settings, start_emulator

            settings = demo_settings(settings, api_url(settings))
            total = start_emulator(settings, api_url(settings))
            typer.echo(
                f"Gmail emulator: {settings.gmail.api_endpoint} ({total} messages for demo@mailray.test)"
            )
        info = bring_up(settings)
        handle_signals()
        typer.echo("mailray is running. Ctrl-C stops it.")
        _print_info(info)
        if demo:
            _run_demo(resolve_services(settings), info.api_url, total)
        next_job = time.monotonic() + PARTITION_JOB_INTERVAL_S
        while not stopping:
            time.sleep(0.5)
            if time.monotonic() >= next_job:
                asyncio.run(prepare_storage(resolve_services(settings)))
                next_job = time.monotonic() + PARTITION_JOB_INTERVAL_S
    finally:
        typer.echo("stopping mailray ...")
        for line in bring_down(settings):
            typer.echo(line)


def _run_demo(settings: Any, api: str, total: int) -> None:
    from cluster.demo import connect_account, follow_sync

    key, account_id = asyncio.run(connect_account(settings, api))
    typer.echo(f"connected demo@mailray.test through OAuth as account {account_id}")
    state = asyncio.run(follow_sync(api, key, account_id, total))
    typer.echo(f"synced {state['messagesStored']} messages; incremental sync and push are on.")
    typer.echo(f"""
Look around (API key for the demo workspace: {key}):
  curl -H 'Authorization: Bearer {key}' '{api}/v1/accounts/{account_id}/diagnostics'
  curl -H 'Authorization: Bearer {key}' '{api}/v1/search?q=mortgage&limit=5'
  curl -H 'Authorization: Bearer {key}' '{api}/v1/threads?limit=5'
  curl -H 'Authorization: Bearer {key}' '{api}/v1/emails?folder=spam&limit=5'
Add mail while it runs and watch it arrive through push:
  .venv/bin/mailray emulator mutate --url {settings.gmail.api_endpoint} add --user demo@mailray.test --file some.eml
""")


@app.command("migrate")
def migrate_command() -> None:
    """Apply pending SQL migrations and create the coming months' partitions."""
    from cluster.bootstrap import prepare_storage

    for line in asyncio.run(prepare_storage(_resolved())) or ["nothing to do"]:
        typer.echo(line)


@app.command()
def partitions(
    months_ahead: Annotated[int, typer.Option(help="Months after this one to prepare.")] = 3,
) -> None:
    """Create the next months' partitions of emails and tracking_events."""
    import psycopg

    from mail.store.partitions import ensure_partitions

    settings = _resolved()

    async def job() -> list[Any]:
        async with await psycopg.AsyncConnection.connect(settings.database.url, autocommit=True) as conn:
            return await ensure_partitions(conn, months_behind=0, months_ahead=months_ahead)

    for result in asyncio.run(job()):
        typer.echo(f"{result.table} {result.month:%Y-%m}: {result.result}")


@workspace_app.command("create")
def workspace_create(
    name: str,
    owner_email: Annotated[str, typer.Option(help="The owner's email address.")] = "owner@localhost",
    slug: Annotated[str | None, typer.Option(help="URL-safe name; derived from NAME when omitted.")] = None,
) -> None:
    """Create a workspace with its owner, and print an API key for the owner (shown once)."""
    import psycopg

    from mail import auth

    settings = _resolved()

    async def create() -> tuple[Any, Any, Any]:
        async with await psycopg.AsyncConnection.connect(settings.database.url) as conn:
            workspace, owner = await auth.create_workspace(conn, name, owner_email=owner_email, slug=slug)
            key = await auth.create_api_key(
                conn,
                workspace.id,
                owner.id,
                name="created with the workspace",
                prefix=settings.security.api_key_prefix,
            )
            return workspace, owner, key

    workspace, owner, key = asyncio.run(create())
    typer.echo(f"workspace {workspace.slug} ({workspace.id}) created; owner {owner.email} ({owner.id})")
    typer.echo(f"API key (shown once): {key.key}")


@apikey_app.command("create")
def apikey_create(
    workspace: Annotated[str, typer.Option(help="Workspace slug or id.")],
    user_email: Annotated[str | None, typer.Option(help="Key for this user; the owner when omitted.")] = None,
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
) -> None:
    """Create an API key and print it (shown once)."""
    from mail import auth

    settings = _resolved()

    async def create(conn: Any, found: Any) -> Any:
        user = await auth.find_user(conn, found.id, user_email)
        return await auth.create_api_key(
            conn, found.id, user.id, name=name, prefix=settings.security.api_key_prefix
        )

    key = _in_workspace(settings, workspace, create)
    typer.echo(key.key)


@domains_app.command("add")
def domains_add(
    domain: str,
    workspace: Annotated[str, typer.Option(help="Workspace slug or id.")],
    selector: Annotated[
        str, typer.Option(help="DKIM selector: the key's DNS name is <selector>._domainkey.<domain>.")
    ] = "mailray",
    key_type: Annotated[str, typer.Option(help="rsa (2048 bits) or ed25519.")] = "rsa",
) -> None:
    """Register a sending domain, make its DKIM key, and print the DNS records to publish."""
    from mail.crypto import load_keyring
    from mail.sending import domains

    if key_type not in ("rsa", "ed25519"):
        raise typer.BadParameter("expected rsa or ed25519", param_hint="--key-type")
    settings = _resolved()
    keyring = load_keyring(settings)

    async def add(conn: Any, found: Any) -> Any:
        return await domains.add_domain(
            conn, settings, keyring, found.id, domain, selector=selector,
            key_type=key_type,  # type: ignore[arg-type]
        )  # fmt: skip

    added = _in_workspace(settings, workspace, add)
    state = f"verified {added.verified_at:%Y-%m-%d}" if added.verified_at else "not verified yet"
    typer.echo(f"{added.domain}: selector {added.selector}, {state}. Publish:")
    for record in added.records:
        typer.echo(f'  {record.name} {record.type} "{record.value}"  ({record.purpose})')
    if added.verified_at is None:
        typer.echo(f"then run `mailray domains verify {added.domain} --workspace {workspace}`.")
    section, entry, variable = domains.settings_lines(added.domain, added.selector or selector)
    typer.echo(f"To sign as {added.domain}, the settings file needs\n  {section}\n  {entry}")
    typer.echo(f"or the environment (every signing domain in one table): {variable}")


@domains_app.command("verify")
def domains_verify(
    domain: str,
    workspace: Annotated[str, typer.Option(help="Workspace slug or id.")],
    nameserver: Annotated[
        str | None, typer.Option(help="Ask this DNS server (IP, IP:PORT or [IPv6]:PORT), not the system's.")
    ] = None,
) -> None:
    """Look up the domain's DKIM record; the domain is verified when it publishes the domain's key."""
    from datetime import UTC

    from mail.crypto import load_keyring
    from mail.sending import domains

    settings = _resolved()
    keyring = load_keyring(settings)
    lookup = domains.dns_txt_lookup(nameserver)

    async def verify(conn: Any, found: Any) -> Any:
        return await domains.verify_domain(conn, settings, keyring, found.id, domain, lookup)

    verified = _in_workspace(settings, workspace, verify)
    typer.echo(
        f"{verified.domain}: verified (selector {verified.selector}, since {verified.verified_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
    )


@domains_app.command("list")
def domains_list(workspace: Annotated[str, typer.Option(help="Workspace slug or id.")]) -> None:
    """The workspace's sending domains, their selectors and whether they are verified."""
    from mail.sending import domains

    async def listed(conn: Any, found: Any) -> Any:
        return await domains.list_domains(conn, found.id)

    for item in _in_workspace(_resolved(), workspace, listed):
        state = f"verified {item.verified_at:%Y-%m-%d}" if item.verified_at else "not verified"
        typer.echo(f"{item.domain}\t{item.selector or '-'}\t{state}")


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new random key for security.keys (base64 of 32 bytes)."""
    from mail.crypto import generate_key

    typer.echo(generate_key())


@keys_app.command("rotate")
def keys_rotate(
    new_key: Annotated[
        bool, typer.Option(help="Dev mode: add a new key to the data directory's keyring first.")
    ] = True,
) -> None:
    """Re-encrypt every stored secret under the newest key (add the key to settings first in production)."""
    from mail.config import data_dir
    from mail.crypto import add_dev_key, load_keyring
    from mail.key_rotation import rotate
    from mail.store.encrypted_columns import ENCRYPTED_COLUMNS
    from mail.store.pool import open_pool

    settings = _resolved()
    if new_key and not settings.security.keys:
        if settings.app.mode == "production":
            raise MailrayError(
                "production mode: add the new key to security.keys, then run rotate --no-new-key"
            )
        typer.echo(f"added key {add_dev_key(data_dir(settings))} to the dev keyring")
    keyring = load_keyring(settings)

    async def job() -> Any:
        pool = await open_pool(settings.database.url, max_size=2)
        try:
            return await rotate(pool, keyring, ENCRYPTED_COLUMNS)
        finally:
            await pool.close()

    report = asyncio.run(job())
    for column in report.columns:
        typer.echo(f"{column.table}.{column.column}: {column.rewrapped} re-encrypted of {column.scanned}")
    typer.echo(f"every stored secret is now under key {report.newest_key_id}")


@emulator_app.command("gmail")
def emulator_gmail(
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one).")] = 8025,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    mailbox: Annotated[
        list[str] | None,
        typer.Option(help="A directory of messages, a maildir or an mbox to load into --user (repeatable)."),
    ] = None,
    user: Annotated[
        str, typer.Option(help="The user the mailboxes and generated mail go to.")
    ] = "demo@mailray.test",
    generate: Annotated[int, typer.Option(help="Generated messages to add to --user.")] = 0,
    quota: Annotated[str, typer.Option(help="Quota regime: legacy, 2026 or off.")] = "off",
    fault_rate: Annotated[float, typer.Option(help="Fraction of API calls answered 500/503.")] = 0.0,
    latency_ms: Annotated[float, typer.Option(help="Added to every HTTP request.")] = 0.0,
    drop_rate: Annotated[float, typer.Option(help="Fraction of connections closed without an answer.")] = 0.0,
    push_url: Annotated[str | None, typer.Option(help="Where Pub/Sub push notifications go.")] = None,
    push_audience: Annotated[str, typer.Option(help="The push token's audience.")] = "mailray",
    push_drop_rate: Annotated[float, typer.Option(help="Fraction of push notifications dropped.")] = 0.0,
    token_ttl: Annotated[int, typer.Option(help="Access token lifetime in seconds.")] = 3600,
    history_retention: Annotated[int, typer.Option(help="History records kept per user.")] = 100_000,
    client_id: Annotated[str, typer.Option(help="OAuth client id /token checks.")] = "mailray-dev",
    client_secret: Annotated[
        str, typer.Option(help="OAuth client secret /token checks.")
    ] = "mailray-dev-secret",  # noqa: S107
    seed: Annotated[int, typer.Option(help="Seed of generated mail and injected faults.")] = 0,
) -> None:
    """Run the Gmail API emulator (REST, batch, OAuth, push) until Ctrl-C."""
    from cluster.emulators.gmail.client_settings import gmail_environment
    from cluster.emulators.gmail.config import EmulatorConfig
    from cluster.emulators.gmail.standalone import serve

    if quota not in {"legacy", "2026", "off"}:
        raise MailrayError(f"--quota must be legacy, 2026 or off, not {quota!r}")
    try:
        config = EmulatorConfig(
            host=host,
            port=port,
            quota=quota,  # type: ignore[arg-type]
            fault_rate=fault_rate,
            latency_ms=latency_ms,
            drop_rate=drop_rate,
            push_url=push_url,
            push_audience=push_audience,
            push_drop_rate=push_drop_rate,
            token_ttl_s=token_ttl,
            history_retention=history_retention,
            client_id=client_id,
            client_secret=client_secret,
            seed=seed,
        )
    except ValueError as error:
        raise MailrayError(str(error)) from None

    def ready(emulator: Any, counts: dict[str, int]) -> None:
        base = emulator.base_url
        typer.echo(f"Gmail emulator: {base}   (Ctrl-C stops it)")
        for email, count in counts.items():
            typer.echo(f"user:           {email}   {count} messages")
        typer.echo(f"OAuth:          {base}/o/oauth2/auth   token {base}/token   revoke {base}/revoke")
        typer.echo(f"push:           {config.push_url or 'off'}   audience {config.push_audience}")
        typer.echo(f"admin:          {base}/_emulator/stats")
        typer.echo("mailray settings for this emulator:")
        settings = {
            **gmail_environment(base, config),
            "MAILRAY_GMAIL__PUSH_AUDIENCE": config.push_audience,
            "MAILRAY_GMAIL__PUBSUB_TOPIC": f"projects/{config.project}/topics/gmail",
            "MAILRAY_GMAIL__QUOTA_REGIME": config.quota if config.quota != "off" else "legacy",
        }
        for key, value in settings.items():
            typer.echo(f"  {key}={value}")

    try:
        asyncio.run(serve(config, user=user, mailboxes=mailbox or [], generate=generate, on_ready=ready))
    except (OSError, ValueError) as error:
        raise MailrayError(f"gmail emulator: {error}") from None


@emulator_app.command("smtp")
def emulator_smtp(
    store: Annotated[str, typer.Option(help="Maildir the accepted messages are written to.")],
    port: Annotated[int, typer.Option(help="SMTP port to listen on (0: a free one).")] = 2525,
    host: Annotated[str, typer.Option(help="Address to listen on (SMTP and admin).")] = "127.0.0.1",
    admin_port: Annotated[int, typer.Option(help="Port of the admin HTTP API (0: a free one).")] = 8026,
    dsn_maildir: Annotated[
        str | None, typer.Option(help="Maildir the DSNs of bounce: rules are delivered to.")
    ] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(
            help="PATTERN=REPLY or PATTERN=bounce:REPLY, repeatable; a reply ending in @N fails only the first"
            " N attempts per address. E.g. '*@unknown.test=550 5.1.1 user unknown'."
        ),
    ] = None,
    auth: Annotated[
        str | None, typer.Option(help="user:password; AUTH PLAIN/LOGIN is then required before MAIL.")
    ] = None,
    hostname: Annotated[str, typer.Option(help="Name in the greeting and in DSNs.")] = "sink.mailray.test",
    bounce_delay: Annotated[float, typer.Option(help="Seconds between accepting and bouncing.")] = 0.0,
) -> None:
    """Run the SMTP sink (stores mail, failure rules, async bounces as DSNs) until Ctrl-C."""
    from cluster.emulators.smtp.config import SinkConfig
    from cluster.emulators.smtp.standalone import serve

    config = SinkConfig(
        store=store,
        host=host,
        port=port,
        admin_port=admin_port,
        dsn_maildir=dsn_maildir,
        rules=rule or [],
        credentials=auth,
        hostname=hostname,
        bounce_delay_s=bounce_delay,
    )

    def ready(sink: Any) -> None:
        typer.echo(f"SMTP sink: smtp://{sink.host}:{sink.port}   (Ctrl-C stops it)")
        typer.echo(f"admin:     {sink.admin_url}   (GET /messages/count, /messages, /stats)")
        typer.echo(f"store:     {config.store}")
        typer.echo(f"DSNs:      {config.dsn_maildir or 'off'}")
        typer.echo(f"AUTH:      {'PLAIN, LOGIN (required)' if config.credentials else 'off'}")
        for source in config.rules:
            typer.echo(f"rule:      {source}")
        typer.echo("mailray settings for this sink:")
        typer.echo(f"  MAILRAY_SENDING__SMTP_HOST={sink.host}")
        typer.echo(f"  MAILRAY_SENDING__SMTP_PORT={sink.port}")
        typer.echo(f"  MAILRAY_SENDING__DELIVERY_PROBE_URL={sink.admin_url}/delivered")

    try:
        asyncio.run(serve(config, on_ready=ready))
    except OSError as error:
        raise MailrayError(f"smtp sink: {error}") from None


@mutate_app.callback()
def emulator_mutate(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(help="The emulator's base URL.")] = "http://127.0.0.1:8025",
) -> None:
    """Change a running Gmail emulator (a mailbox change records history and triggers push)."""
    ctx.obj = url


def _admin_call(ctx: typer.Context, operation: Callable[[Any], Awaitable[T]]) -> T:
    from cluster.emulators.gmail.admin_client import EmulatorAdmin, EmulatorAdminError

    async def run() -> T:
        async with EmulatorAdmin(str(ctx.obj)) as admin:
            return await operation(admin)

    try:
        return asyncio.run(run())
    except KeyError as error:
        raise MailrayError(f"gmail emulator: {error.args[0] if error.args else error}") from None
    except (EmulatorAdminError, OSError) as error:
        raise MailrayError(f"gmail emulator at {ctx.obj}: {error}") from None


@mutate_app.command("add")
def emulator_mutate_add(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="The mailbox's user.")],
    file: Annotated[str, typer.Option(help="An RFC 822 message file.")],
    label: Annotated[
        list[str] | None, typer.Option(help="Label id (repeatable; default INBOX, UNREAD).")
    ] = None,
) -> None:
    """Deliver a message; prints its id."""
    from pathlib import Path

    path = Path(file)
    if not path.is_file():
        raise MailrayError(f"no such file: {file}")
    raw = path.read_bytes()
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    labels = label or ["INBOX", "UNREAD"]
    typer.echo(_admin_call(ctx, lambda admin: admin.add_message(user, raw, labels)))


@mutate_app.command("delete")
def emulator_mutate_delete(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="The mailbox's user.")],
    id: Annotated[str, typer.Option("--id", help="The message id.")],
) -> None:
    """Delete a message for good."""
    _admin_call(ctx, lambda admin: admin.delete_message(user, id))
    typer.echo(f"deleted {id}")


@mutate_app.command("label")
def emulator_mutate_label(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="The mailbox's user.")],
    id: Annotated[str, typer.Option("--id", help="The message id.")],
    add: Annotated[list[str] | None, typer.Option(help="Label id to add (repeatable).")] = None,
    remove: Annotated[list[str] | None, typer.Option(help="Label id to remove (repeatable).")] = None,
) -> None:
    """Add and remove labels of a message."""
    _admin_call(ctx, lambda admin: admin.modify_labels(user, id, add or [], remove or []))
    typer.echo(f"labels of {id} changed")


@mutate_app.command("expire-history")
def emulator_mutate_expire_history(
    ctx: typer.Context, user: Annotated[str, typer.Option(help="The mailbox's user.")]
) -> None:
    """Drop the user's history: any older startHistoryId answers 404."""
    _admin_call(ctx, lambda admin: admin.expire_history(user))
    typer.echo(f"history of {user} expired")


@mutate_app.command("expire-tokens")
def emulator_mutate_expire_tokens(ctx: typer.Context) -> None:
    """Expire every access token now (refresh tokens keep working)."""
    _admin_call(ctx, lambda admin: admin.expire_access_tokens())
    typer.echo("access tokens expired")


@bounces_app.command("classify")
def bounces_classify(
    files: Annotated[list[str], typer.Argument(help="RFC 822 files (an mbox From line is fine).")],
) -> None:
    """Print one JSON line per file: whether it is a bounce, who failed, and why (hard, soft, blocked).

    Exits 1 when a file could not be read (its line has an "error"); 0 otherwise.
    """
    from mail.bounces.summary import encode_line, summarize_file

    unreadable = 0
    for file in files:
        line, readable = summarize_file(file)
        typer.echo(encode_line(line))
        unreadable += not readable
    if unreadable:
        raise typer.Exit(code=1)


@bounces_app.command("ingest")
def bounces_ingest(
    maildir: Annotated[
        Path, typer.Option(help="A maildir that bounces are delivered to (its new/ is read).")
    ],
) -> None:
    """Act on the bounces in a maildir (link, record, suppress, requeue, alert); print the counts.

    Each message moves to cur/ once acted on; reading one again changes nothing.
    """
    from mail.bounces.ingest import ingest_maildir
    from mail.services import open_services

    settings = _resolved()

    async def job() -> Any:
        services = await open_services(settings)
        try:
            return await ingest_maildir(services.pool, services.redis, maildir, settings.sending)
        finally:
            await services.close()

    result = _run(job)
    typer.echo(msgspec.json.encode(result).decode())


@app.command("reprocess")
def reprocess_command(
    workspace: Annotated[
        UUID | None, typer.Option(help="Only this workspace's mail (default: every workspace).")
    ] = None,
    only_unanalyzed: Annotated[
        bool, typer.Option(help="Only mail never analyzed (default: all of it, again).")
    ] = False,
    actors: Annotated[int | None, typer.Option(help="Model actors (default: one per GPU, else one).")] = None,
) -> None:
    """Analyze stored mail again with Ray Data on the running cluster; an interrupted job resumes where it stopped."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cluster.bootstrap import connect_to_cluster
    from cluster.jobs.reprocess import run_reprocess

    connect_to_cluster(_settings())  # first: without a cluster, start nothing
    settings = _resolved()
    console = Console()
    columns = (TextColumn("ranges of emails"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("reprocess", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = run_reprocess(
            settings,
            workspace_id=workspace,
            only_unanalyzed=only_unanalyzed,
            actors=actors,
            on_progress=progress,
        )
    job = report.job
    state = "finished" if job.finished_at else "unfinished (run the same command again to resume)"
    console.print(
        f"job {job.id}: {state}; {job.ranges_done} of {job.ranges} ranges, {job.emails_done} emails done; "
        f"this run: {report.ranges_run} ranges, {report.emails_run} emails in {report.seconds:.1f} s "
        f"({report.emails_run / max(report.seconds, 1e-9):.1f} emails/s), heads {job.model}"
    )


@app.command("train")
def train_command(
    output: Annotated[
        Path | None,
        typer.Option(help="Where heads.safetensors and MODEL_CARD.md go (default: mail/ai/model, shipped)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds the heads' initial weights; same seed, same heads.")] = 0,
    corpus: Annotated[
        Path | None,
        typer.Option(help="The SpamAssassin corpus folder (default: ../shared/corpora/spamassassin)."),
    ] = None,
) -> None:
    """Train the email classifier's heads on the labelled set; write them and the model card, print the figures."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from mail.ai.dataset import DEFAULT_CORPUS_DIR
    from mail.ai.train import DEFAULT_OUTPUT_DIR, train
    from mail.config import data_dir

    console = Console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                label = "embedding new texts" if stage == "embed" else "choosing L2 strength"
                tasks[stage] = bar.add_task(label, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        report = train(
            output or DEFAULT_OUTPUT_DIR,
            seed=seed,
            cache_dir=data_dir(_settings()) / "ai",
            corpus_dir=corpus or DEFAULT_CORPUS_DIR,
            progress=progress,
        )

    table = Table(title=f"held-out figures, heads {report.version}")
    for column in ("head", "macro F1", "accuracy", "examples", "L2"):
        table.add_column(column, justify="left" if column == "head" else "right")
    for head in report.heads:
        table.add_row(
            head.head, f"{head.macro_f1:.3f}", f"{head.accuracy:.3f}", str(head.examples), str(head.l2)
        )
    console.print(table)
    if report.spam is not None:
        spam = report.spam
        console.print(
            f"spam vs ham ({spam.examples} held-out corpus messages): precision {spam.precision:.3f}, "
            f"recall {spam.recall:.3f}, F1 [bold]{spam.f1:.3f}[/bold]"
        )
    console.print(
        f"{report.examples_train} examples trained on, {report.examples_held_out} held out; "
        f"embedded {report.embedded} new texts in {report.embed_seconds:.1f} s, fit in {report.fit_seconds:.1f} s"
    )
    console.print(f"wrote {report.heads_path} and {report.model_card_path}")


def main() -> None:
    """Entry point: a MailrayError prints one line and exits 2; anything else is a bug and shows a trace."""
    try:
        app()
    except MailrayError as error:
        typer.echo(f"mailray: {error.message}", err=True)
        sys.exit(2)
