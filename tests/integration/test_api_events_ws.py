"""`/v1/events` over a real WebSocket on the deployed API: tracking events reach the subscribers of
their own workspace only, filtered by type, and a bad key is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mail.services import Services
from mail.tracking.tokens import TokenSigner
from models.events import EmailClicked, EmailOpened, Event, event_decoder
from tests.tracking_helpers import (
    LINKS,
    client_for,
    drain,
    endpoints_for,
    fresh_streams,
    make_tracked_email,
    make_workspace,
    open_tracking_services,
    urls,
)

pytestmark = [pytest.mark.integration, pytest.mark.storage, pytest.mark.slow]

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15"
_POLICY_VIOLATION = 1008


@pytest.fixture
async def services(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    opened = await open_tracking_services(database_url, redis_url, tmp_path)
    await fresh_streams(opened)
    yield opened
    await opened.close()


async def _next_event(socket: aiohttp.ClientWebSocketResponse, timeout_s: float = 10) -> Event:
    message = await socket.receive(timeout=timeout_s)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return event_decoder.decode(message.data)


async def _nothing_within(socket: aiohttp.ClientWebSocketResponse, timeout_s: float = 1.0) -> bool:
    try:
        message = await socket.receive(timeout=timeout_s)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected message: {message}")


async def test_workspace_events_reach_their_own_subscribers_only(
    api_url: str, services: Services, tmp_path: Path
) -> None:
    ws_url = api_url.replace("http://", "ws://") + "/v1/events"
    workspace, _, key = await make_workspace(services.settings.database.url or "")
    other, _, other_key = await make_workspace(services.settings.database.url or "")
    email_id = await make_tracked_email(services, workspace)
    other_email = await make_tracked_email(services, other)
    signer = TokenSigner.from_keyring(services.keyring)
    mine, theirs = urls(signer, email_id), urls(signer, other_email)
    endpoints = endpoints_for(services, tmp_path / "spool")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url, params={"apiKey": key.key}) as everything,
        http.ws_connect(
            ws_url + "?events=email.clicked", headers={"Authorization": f"Bearer {key.key}"}
        ) as clicks,
        http.ws_connect(ws_url, params={"apiKey": other_key.key}) as stranger,
        client_for(endpoints) as client,
    ):
        await asyncio.sleep(0.5)  # the API replica's one pattern subscription is in place
        assert (await client.get(mine["open"], headers={"user-agent": BROWSER})).status_code == 200
        assert (await client.get(mine["clicks"][1], headers={"user-agent": BROWSER})).status_code == 302
        assert await drain(services) == 2

        opened, clicked = await _next_event(everything), await _next_event(everything)
        assert isinstance(opened, EmailOpened) and opened.workspace_id == workspace
        assert opened.data.email_id == email_id and not opened.data.is_machine
        assert isinstance(clicked, EmailClicked) and clicked.data.link_url == LINKS[1]
        only_click = await _next_event(clicks)
        assert isinstance(only_click, EmailClicked) and only_click.data.email_id == email_id
        assert await _nothing_within(clicks)
        assert await _nothing_within(stranger)

        # The other workspace's own event reaches its subscriber, and nobody else.
        assert (await client.get(theirs["open"], headers={"user-agent": BROWSER})).status_code == 200
        assert await drain(services) == 1
        theirs_opened = await _next_event(stranger)
        assert isinstance(theirs_opened, EmailOpened) and theirs_opened.workspace_id == other
        assert await _nothing_within(everything)
    await endpoints.close()


@pytest.mark.parametrize(
    "params", [{}, {"apiKey": "nonsense"}, {"apiKey": "mr_0123456789abcdef_" + "A" * 43}]
)
async def test_a_socket_without_a_valid_key_is_closed(api_url: str, params: dict[str, Any]) -> None:
    ws_url = api_url.replace("http://", "ws://") + "/v1/events"
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(ws_url, params=params) as socket:
                message = await socket.receive(timeout=10)
                assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                assert socket.close_code == _POLICY_VIOLATION
        except aiohttp.WSServerHandshakeError as error:
            # Closing before accept is answered as a refused handshake (403) by the server.
            assert error.status == 403
