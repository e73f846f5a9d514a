"""The demo `make run` starts: a Gmail emulator with real mail, an account connected through the
OAuth flow, a full sync with a progress bar, and the stack left running to look at.

The mailbox is the SpamAssassin corpus from ../shared/corpora when it is there (3,250 real
messages), otherwise 500 generated ones. The emulator runs with the legacy Gmail quota, so the
sync runs at the rate Gmail would allow (about 50 messages/s).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from mail.config import PROJECT_ROOT, data_dir
from mail.errors import MailrayError
from models.settings import Settings

DEMO_USER = "demo@mailray.test"
DEMO_WORKSPACE = "demo"
EMULATOR_PORT = 8025
CORPUS = PROJECT_ROOT.parent / "shared" / "corpora" / "spamassassin"
_PID_FILE = "emulator.pid"


def emulator_url(port: int = EMULATOR_PORT) -> str:
    return f"http://127.0.0.1:{port}"


def demo_settings(settings: Settings, api_url: str, port: int = EMULATOR_PORT) -> Settings:
    """Settings whose Gmail endpoints are the local emulator's."""
    from cluster.emulators.gmail.client_settings import gmail_settings_for

    gmail = msgspec.structs.replace(
        settings.gmail,
        **gmail_settings_for(emulator_url(port)),
        redirect_uri=f"{api_url}/v1/accounts/oauth/callback",
        push_audience="mailray",
        pubsub_topic="projects/mailray-dev/topics/gmail",
    )
    return msgspec.structs.replace(settings, gmail=gmail)


def _port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_emulator(settings: Settings, api_url: str, port: int = EMULATOR_PORT) -> int:
    """Start `mailray emulator gmail` in the background; return the number of messages it serves."""
    if _port_answers(port):
        raise MailrayError(f"port {port} is taken: stop what runs there (or an old demo: mailray down)")
    mailbox = ["--mailbox", str(CORPUS)] if CORPUS.is_dir() else ["--generate", "500"]
    command = [
        str(Path(sys.executable).with_name("mailray")), "emulator", "gmail", "--port", str(port),
        "--user", DEMO_USER, *mailbox, "--quota", "legacy",
        "--push-url", f"{api_url}/push/gmail", "--push-audience", "mailray",
    ]  # fmt: skip
    directory = data_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    log = (directory / "emulator.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (directory / _PID_FILE).write_text(str(process.pid))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MailrayError(f"the Gmail emulator exited; see {directory / 'emulator.log'}")
        if _port_answers(port):
            return asyncio.run(_message_count(port))
        time.sleep(0.25)
    raise MailrayError("the Gmail emulator did not start within 120 s")


async def _message_count(port: int) -> int:
    from cluster.emulators.gmail.admin_client import EmulatorAdmin

    admin = EmulatorAdmin(emulator_url(port))
    try:
        return len(await admin.state(DEMO_USER))
    finally:
        await admin.close()


def stop_emulator(settings: Settings) -> bool:
    pid_file = data_dir(settings) / _PID_FILE
    if not pid_file.exists():
        return False
    with contextlib.suppress(ProcessLookupError, ValueError):
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    pid_file.unlink(missing_ok=True)
    return True


async def connect_account(settings: Settings, api_url: str) -> tuple[str, str]:
    """Create (or reuse) the demo workspace, get an API key, connect the demo mailbox by OAuth.

    Returns (API key, account id). The OAuth dance is the real one: the API hands out the
    authorization URL, the emulator consents and redirects to the API's callback with a code.
    """
    import psycopg

    from mail import auth
    from mail.errors import NotFound

    assert settings.database.url is not None
    async with await psycopg.AsyncConnection.connect(settings.database.url) as conn:
        try:
            workspace = await auth.find_workspace(conn, DEMO_WORKSPACE)
            owner = await auth.find_user(conn, workspace.id)
        except NotFound:
            workspace, owner = await auth.create_workspace(
                conn, "Demo", owner_email="owner@mailray.test", slug=DEMO_WORKSPACE
            )
        key = await auth.create_api_key(
            conn, workspace.id, owner.id, name="demo", prefix=settings.security.api_key_prefix
        )
    headers = {"Authorization": f"Bearer {key.key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(
            f"{api_url}/v1/accounts/oauth/url", params={"login_hint": DEMO_USER}
        ) as response:
            response.raise_for_status()
            url = (await response.json())["url"]
        async with session.get(url) as response:  # emulator consent -> redirect -> API callback
            if response.status != 200:
                raise MailrayError(f"OAuth callback failed ({response.status}): {await response.text()}")
        async with session.get(f"{api_url}/v1/accounts") as response:
            found = [a for a in await response.json() if a["email"] == DEMO_USER]
    if not found:
        raise MailrayError("the demo account did not connect")
    return key.key, str(found[0]["id"])


async def follow_sync(api_url: str, key: str, account_id: str, total: int) -> dict[str, Any]:
    """A progress bar over the account's sync until the mailbox is fully stored."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    headers = {"Authorization": f"Bearer {key}"}
    state: dict[str, Any] = {}
    with Progress(
        TextColumn("[bold]syncing {task.fields[email]}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f} msg/s"), TimeElapsedColumn(),
    ) as progress:  # fmt: skip
        task = progress.add_task("sync", total=total, email=DEMO_USER, rate=0.0)
        started = time.monotonic()
        async with aiohttp.ClientSession(headers=headers) as session:
            while True:
                async with session.get(f"{api_url}/v1/accounts/{account_id}/sync") as response:
                    state = await response.json()
                stored = int(state.get("messagesStored", 0))
                rate = stored / max(time.monotonic() - started, 0.001)
                progress.update(task, completed=min(stored, total), rate=rate)
                if state.get("phase") == "incremental" and stored >= total:
                    return state
                await asyncio.sleep(0.5)
