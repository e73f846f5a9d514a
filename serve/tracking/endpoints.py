"""The public tracking endpoints as a bare ASGI application: the hot path has no framework.

    GET|HEAD /t/o/{token}.gif   the open pixel (1x1 GIF, never cached)
    GET|HEAD /t/c/{token}       302 to the link's stored URL
    GET      /u/{token}         a confirmation page with a one-click button
    POST     /u/{token}         RFC 8058 one-click unsubscribe (`List-Unsubscribe=One-Click`)

A token that is malformed, forged or altered gets 404 before anything else happens (the MAC is
checked in memory, no lookup). Opens and clicks are answered once the event is in the Redis
stream or the local spool (mail.tracking.intake). The click target is the URL stored for the
token's email and link position, never anything from the request.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from mail.errors import InvalidToken
from mail.services import Services
from mail.tracking import registry
from mail.tracking.intake import EventIntake
from mail.tracking.tokens import TokenKind, TokenSigner, TrackingToken
from serve.forwarded import client_ip

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The design document's 1x1 transparent GIF.
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = [
    (b"cache-control", b"no-store, no-cache, must-revalidate, private"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
]
_GIF_HEADERS = [(b"content-type", b"image/gif"), (b"content-length", str(len(GIF)).encode()), *_NO_STORE]
_NOT_FOUND = b"not found\n"
_NOT_FOUND_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(_NOT_FOUND)).encode())]
_ONE_CLICK = "List-Unsubscribe=One-Click"
_MAX_FORM_BYTES = 4096


class TrackingEndpoints:
    """ASGI callable. `services` and `intake` are opened on first use (a replica's constructor
    cannot await)."""

    def __init__(
        self,
        services: Callable[[], Awaitable[Services]],
        intake: Callable[[Services], EventIntake],
    ) -> None:
        self._services_factory = services
        self._intake_factory = intake
        self._services: Services | None = None
        self._intake: EventIntake | None = None
        self._signer: TokenSigner | None = None

    async def _ready(self) -> tuple[Services, EventIntake, TokenSigner]:
        if self._services is None:
            services = await self._services_factory()
            if self._services is None:
                self._services = services
                self._signer = TokenSigner.from_keyring(services.keyring)
                self._intake = self._intake_factory(services)
                self._intake.start_replaying()
        assert self._intake is not None and self._signer is not None
        return self._services, self._intake, self._signer

    async def close(self) -> None:
        """Close the intake (the services belong to whoever made them)."""
        if self._intake is not None:
            await self._intake.close()

    @property
    def intake(self) -> EventIntake | None:
        return self._intake

    @property
    def services(self) -> Services | None:
        return self._services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and not path.startswith(root):
            path = root + path
        method: str = scope["method"]
        services, intake, signer = await self._ready()
        if path.startswith("/t/o/") and path.endswith(".gif") and method in ("GET", "HEAD"):
            token = _verify(signer, path[5:-4], TokenKind.OPEN)
            if token is None:
                return await _respond(send, 404, _NOT_FOUND_HEADERS, _NOT_FOUND)
            await intake.record(_event(intake, "open", token, scope, method))
            return await _respond(send, 200, _GIF_HEADERS, b"" if method == "HEAD" else GIF)
        if path.startswith("/t/c/") and method in ("GET", "HEAD"):
            token = _verify(signer, path[5:], TokenKind.CLICK)
            if token is None or token.link is None:
                return await _respond(send, 404, _NOT_FOUND_HEADERS, _NOT_FOUND)
            url = await registry.link_target(
                services.redis, services.pool, token.email_id, token.link,
                ttl_s=services.settings.tracking.link_cache_ttl_s,
            )  # fmt: skip
            if url is None:
                return await _respond(send, 404, _NOT_FOUND_HEADERS, _NOT_FOUND)
            await intake.record(_event(intake, "click", token, scope, method))
            headers = [(b"location", url.encode()), (b"content-length", b"0"), *_NO_STORE]
            return await _respond(send, 302, headers, b"")
        if path.startswith("/u/") and method in ("GET", "POST"):
            token = _verify(signer, path[3:].rstrip("/"), TokenKind.UNSUBSCRIBE)
            if token is None:
                return await _respond(send, 404, _NOT_FOUND_HEADERS, _NOT_FOUND)
            if method == "GET":
                return await _confirmation_page(send, path)
            return await self._unsubscribe(services, intake, token, scope, receive, send)
        await _respond(send, 404, _NOT_FOUND_HEADERS, _NOT_FOUND)

    async def _unsubscribe(
        self,
        services: Services,
        intake: EventIntake,
        token: TrackingToken,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        body = await _read_body(receive, _MAX_FORM_BYTES)
        form = parse_qs(body.decode("utf-8", "replace")) if body is not None else {}
        if body is None or form.get("List-Unsubscribe") != ["One-Click"]:
            message = f"expected the form body {_ONE_CLICK} (RFC 8058)\n".encode()
            headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(message)).encode())]
            return await _respond(send, 400, headers, message)
        async with services.pool.connection() as conn, conn.transaction():
            recipient = await registry.recipient_of(conn, token.email_id)
            if recipient is None:
                return await _respond(send, 404, _NOT_FOUND_HEADERS, _NOT_FOUND)
            await registry.unsubscribe(conn, recipient)
        await intake.record(_event(intake, "unsubscribe", token, scope, "POST"))
        page = _page("Unsubscribed", "You will not receive these emails any more.")
        await _respond(send, 200, [(b"content-type", b"text/html; charset=utf-8"), *_length(page)], page)


def _verify(signer: TokenSigner, text: str, kind: TokenKind) -> TrackingToken | None:
    try:
        token = signer.verify(text)
    except InvalidToken:
        return None
    return token if token.kind == kind else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _client_ip(scope: Scope) -> str | None:
    client = scope.get("client")
    return client_ip(_header(scope, b"x-forwarded-for"), str(client[0]) if client else None)


def _event(intake: EventIntake, kind: Any, token: TrackingToken, scope: Scope, method: str) -> Any:
    return intake.event(
        kind, token.email_id, token.recipient_id, token.link,
        ip=_client_ip(scope), user_agent=_header(scope, b"user-agent"), method=method,
    )  # fmt: skip


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _length(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", str(len(body)).encode())]


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it is longer than `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _page(title: str, text: str, form_action: str | None = None) -> bytes:
    form = (
        f'<form method="post" action="{html.escape(form_action)}">'
        f'<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<button type="submit">Unsubscribe</button></form>'
        if form_action
        else ""
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(text)}</p>{form}</body></html>"
    ).encode()


async def _confirmation_page(send: Send, path: str) -> None:
    # GET never unsubscribes: link scanners fetch every URL in a message.
    page = _page("Unsubscribe", "Stop receiving these emails?", form_action=path)
    headers = [(b"content-type", b"text/html; charset=utf-8"), *_length(page), *_NO_STORE]
    await _respond(send, 200, headers, page)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
