"""The mail API in process (FastAPI over ASGI, no Ray): OAuth connection, sync control and status,
diagnostics, emails, threads, search, and the Gmail push webhook with real signed tokens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiohttp import web

from mail import auth
from mail.gmail.account_client import open_account_client
from mail.services import Services
from mail.sync.engine import SyncEngine
from serve.api.app import create_app
from serve.tracking.push import create_push_app
from tests.sync_helpers import emulator_settings, open_test_services

pytestmark = [pytest.mark.integration, pytest.mark.storage]

USER = "lee@api.test"
BASE = "http://mailray.test"


class Setup:
    def __init__(
        self, emulator: Any, services: Services, api: httpx.AsyncClient, tracking: httpx.AsyncClient, key: str
    ) -> None:
        self.emulator, self.services, self.api, self.tracking, self.key = (
            emulator,
            services,
            api,
            tracking,
            key,
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def sync(self, account_id: str) -> None:
        client = await open_account_client(self.services, uuid.UUID(account_id))
        try:
            engine = SyncEngine(self.services, uuid.UUID(account_id), client)
            await engine.sync()
            await engine.index_search()  # as the account's actor does after each round
        finally:
            await client.close()


@pytest.fixture
async def setup(
    gmail_emulator_factory: Any, database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Setup]:
    emulator = await gmail_emulator_factory()
    emulator.add_user(USER)
    emulator.generate(USER, 80, seed=3)
    settings = emulator_settings(
        emulator.base_url, database_url, redis_url, tmp_path,
        MAILRAY_GMAIL__REDIRECT_URI=f"{BASE}/v1/accounts/oauth/callback", MAILRAY_GMAIL__PUSH_AUDIENCE="mailray",
    )  # fmt: skip
    services = await open_test_services(settings)

    async def factory() -> Services:
        return services

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        suffix = uuid.uuid4().hex[:8]
        workspace, owner = await auth.create_workspace(
            conn, f"Api {suffix}", owner_email=f"o-{suffix}@example.com"
        )
        key = await auth.create_api_key(conn, workspace.id, owner.id)
    api_app, tracking_app = create_app(factory), create_push_app(factory)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=api_app), base_url=BASE) as api,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=tracking_app), base_url=BASE) as tracking,
    ):
        yield Setup(emulator, services, api, tracking, key.key)
    await services.close()


async def _connect(setup: Setup) -> str:
    """The real OAuth dance: authorization URL from the API, consent at the emulator, callback."""
    response = await setup.api.get(
        "/v1/accounts/oauth/url", params={"login_hint": USER}, headers=setup.headers
    )
    assert response.status_code == 200
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(response.json()["url"])
    assert consent.status_code == 302
    callback = httpx.URL(consent.headers["location"])
    assert str(callback).startswith(f"{BASE}/v1/accounts/oauth/callback")
    done = await setup.api.get(callback.path, params=dict(callback.params))
    assert done.status_code == 200, done.text
    replay = await setup.api.get(callback.path, params=dict(callback.params))
    assert replay.status_code == 401  # the state is good for one callback only
    accounts = (await setup.api.get("/v1/accounts", headers=setup.headers)).json()
    assert [a["email"] for a in accounts] == [USER]
    assert accounts[0]["status"] == "pending" and accounts[0]["syncEnabled"] is True
    return str(accounts[0]["id"])


async def test_connect_sync_and_read_mail(setup: Setup) -> None:
    account_id = await _connect(setup)
    await setup.sync(account_id)

    state = (await setup.api.get(f"/v1/accounts/{account_id}/sync", headers=setup.headers)).json()
    assert state["phase"] == "incremental" and state["messagesStored"] == 80

    page = (await setup.api.get("/v1/emails", params={"limit": 30}, headers=setup.headers)).json()
    assert len(page["items"]) == 30 and page["nextCursor"]
    seen = {item["id"] for item in page["items"]}
    while page["nextCursor"]:
        page = (
            await setup.api.get(
                "/v1/emails", params={"limit": 30, "cursor": page["nextCursor"]}, headers=setup.headers
            )
        ).json()
        assert not seen & {item["id"] for item in page["items"]}
        seen |= {item["id"] for item in page["items"]}
    assert len(seen) == 80

    detail = (await setup.api.get(f"/v1/emails/{min(seen)}", headers=setup.headers)).json()
    assert detail["bodyText"] or detail["bodyHtml"]  # decrypted for the reader
    assert detail["providerMessageId"] in setup.emulator.state(USER)

    threads = (await setup.api.get("/v1/threads", params={"limit": 100}, headers=setup.headers)).json()[
        "items"
    ]
    assert sum(t["messageCount"] for t in threads) == 80
    biggest = max(threads, key=lambda t: t["messageCount"])
    thread = (await setup.api.get(f"/v1/threads/{biggest['id']}", headers=setup.headers)).json()
    assert len(thread["messages"]) == biggest["messageCount"]

    bad = await setup.api.get("/v1/emails", params={"cursor": "nonsense"}, headers=setup.headers)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"


async def test_search_finds_words_in_bodies_and_applies_filters(setup: Setup) -> None:
    account_id = await _connect(setup)
    message = EmailMessage()
    message["From"] = "Quinn <quinn@example.com>"
    message["To"] = USER
    message["Subject"] = "Quarterly plan"
    message.set_content("The word xylophonic appears only in this body.")
    setup.emulator.add_message(USER, message.as_bytes(), label_ids=("INBOX", "UNREAD"))
    await setup.sync(account_id)
    found = (await setup.api.get("/v1/search", params={"q": "xylophonic"}, headers=setup.headers)).json()[
        "items"
    ]
    assert [item["subject"] for item in found] == ["Quarterly plan"]
    filtered = await setup.api.get(
        "/v1/search", params={"q": "xylophonic", "folder": "spam"}, headers=setup.headers
    )
    assert filtered.json()["items"] == []
    by_sender = await setup.api.get(
        "/v1/search", params={"q": "xylophonic", "from_email": "QUINN@example.com"}, headers=setup.headers
    )
    assert len(by_sender.json()["items"]) == 1
    empty = await setup.api.get("/v1/search", params={"q": "  "}, headers=setup.headers)
    assert empty.status_code == 422


async def test_pause_start_and_diagnostics(setup: Setup, database_url: str) -> None:
    account_id = await _connect(setup)
    await setup.sync(account_id)
    diagnosis = (await setup.api.get(f"/v1/accounts/{account_id}/diagnostics", headers=setup.headers)).json()
    assert diagnosis["healthy"] is True, diagnosis
    assert (
        diagnosis["diagnostics"]["mailbox"]["providerMessages"]
        == diagnosis["diagnostics"]["mailbox"]["storedMessages"]
        == 80
    )

    # Mail the store lost behind sync's back: diagnostics must not call that healthy.
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "DELETE FROM emails WHERE account_id = %s AND id = (SELECT min(id) FROM emails WHERE account_id = %s)",
            (account_id, account_id),
        )
        await conn.commit()
    diagnosis = (await setup.api.get(f"/v1/accounts/{account_id}/diagnostics", headers=setup.headers)).json()
    assert diagnosis["healthy"] is False
    assert diagnosis["diagnostics"]["mailbox"]["status"] == "error" and diagnosis["recommendations"]

    paused = await setup.api.post(f"/v1/accounts/{account_id}/sync/pause", headers=setup.headers)
    assert paused.status_code == 200 and paused.json()["syncEnabled"] is False
    assert (await setup.api.get(f"/v1/accounts/{account_id}/sync", headers=setup.headers)).json()[
        "phase"
    ] == "paused"
    started = await setup.api.post(f"/v1/accounts/{account_id}/sync/start", headers=setup.headers)
    assert started.json()["syncEnabled"] is True
    assert (await setup.api.get(f"/v1/accounts/{account_id}/sync", headers=setup.headers)).json()[
        "phase"
    ] == "incremental"
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT action FROM audit_log WHERE resource_id = %s ORDER BY id", (account_id,)
        )
        actions = [row[0] for row in await cursor.fetchall()]
    assert actions == ["account.connect", "account.sync_pause", "account.sync_start"]


async def test_push_with_a_valid_token_is_accepted_and_anything_else_refused(
    setup: Setup, database_url: str
) -> None:
    account_id = await _connect(setup)
    await setup.sync(account_id)
    received: list[tuple[dict[str, str], bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/push/gmail", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        setup.emulator.set_push(url=f"http://127.0.0.1:{port}/push/gmail", audience="mailray")
        client = await open_account_client(setup.services, uuid.UUID(account_id))
        try:
            await client.watch("projects/mailray-dev/topics/gmail", ["INBOX"])
        finally:
            await client.close()
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.com", USER, "ping"
        message.set_content("ping")
        setup.emulator.add_message(USER, message.as_bytes())
        for _ in range(50):
            if received:
                break
            await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()
    assert received, "the emulator sent no push"
    headers, body = received[0]
    pushed = await setup.tracking.post(
        "/gmail", content=body, headers={"Authorization": headers["Authorization"]}
    )
    assert pushed.status_code == 204
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT last_push_at IS NOT NULL FROM sync_state WHERE account_id = %s", (account_id,)
        )
        assert await cursor.fetchone() == (True,)

    no_token = await setup.tracking.post("/gmail", content=body)
    assert no_token.status_code == 401
    token = headers["Authorization"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert (
        await setup.tracking.post("/gmail", content=body, headers={"Authorization": forged})
    ).status_code == 401
    garbage = await setup.tracking.post("/gmail", content=b"{}", headers={"Authorization": token})
    assert garbage.status_code == 422
