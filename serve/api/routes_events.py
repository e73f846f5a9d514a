"""`/v1/events`: a WebSocket of the caller's workspace events (email.received, email.opened,
email.clicked, email.unsubscribed), as JSON text messages.

Browsers cannot set headers on a WebSocket, so besides `Authorization: Bearer <key>` the API key
may come as the `apiKey` query parameter. `?events=email.opened,email.clicked` filters by type.
"""

from __future__ import annotations

import asyncio

import msgspec
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from mail import auth
from mail.errors import Unauthorized
from serve.api.deps import ServicesHolder
from serve.api.event_hub import EventHub

router = APIRouter()
_POLICY_VIOLATION = 1008


class _Kind(msgspec.Struct):
    event: str


_kind_decoder = msgspec.json.Decoder(_Kind)


@router.websocket("/v1/events")
async def events(socket: WebSocket) -> None:
    holder: ServicesHolder = socket.app.state.services
    services = await holder.get()
    authorization = socket.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" and token else socket.query_params.get("apiKey")
    try:
        async with services.pool.connection() as conn:
            principal = await auth.authenticate(conn, presented)
    except Unauthorized as error:
        await socket.close(code=_POLICY_VIOLATION, reason=str(error)[:120])
        return
    wanted = {kind for kind in socket.query_params.get("events", "").split(",") if kind}
    hub: EventHub | None = getattr(socket.app.state, "event_hub", None)
    if hub is None:
        hub = socket.app.state.event_hub = EventHub(services.redis)
    await socket.accept()
    async with hub.subscribe(principal.workspace_id) as queue:
        receiver = asyncio.create_task(_drain_client(socket))
        try:
            while not receiver.done():
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                data = getter.result()
                if wanted and _kind_decoder.decode(data).event not in wanted:
                    continue
                await socket.send_text(data.decode())
        except WebSocketDisconnect:
            pass
        finally:
            receiver.cancel()


async def _drain_client(socket: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it goes away."""
    try:
        while True:
            await socket.receive_text()
    except WebSocketDisconnect:
        return
