"""The sink's admin API on its own port; cluster.emulators.smtp.admin_client is its client.
JSON in and out; an unknown message answers 404, bad input 400.

    GET  /healthz                    {"ok": true}
    GET  /messages/count             {"count"}
    GET  /messages                   ?after=ID&limit=N&recipient=A&mail_from=A&message_id=M -> MessagePage
    GET  /messages/{id}              the stored bytes (message/rfc822)
    GET  /messages/{id}/envelope     the index entry
    GET  /delivered?message_id=M     {"delivered": bool}: the sender's delivery probe
    POST /reset                      ?keep_files=1 keeps the stored files -> {"forgotten"}
    GET  /stats                      SinkStats
    GET  /rules, POST /rules         {"rules": ["PATTERN=REPLY", ...]}; POST replaces them
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from mail.errors import NotFound, ValidationError

if TYPE_CHECKING:
    from cluster.emulators.smtp.server import SmtpSink

AdminHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_PAGE = 1000


class RulesBody(msgspec.Struct, forbid_unknown_fields=True):
    rules: list[str]


_decode_rules = msgspec.json.Decoder(RulesBody)


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message}}, status=status)


def _json(value: object) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), content_type="application/json")


def _guarded(handler: AdminHandler) -> AdminHandler:
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except NotFound as error:
            return _problem(404, error.message)
        except ValidationError as error:
            return _problem(400, error.message)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            return _problem(400, str(error))

    return run


def _integer(request: web.Request, name: str, default: int, *, low: int, high: int | None = None) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(f"{name} must be an integer", field=name) from None
    if value < low or (high is not None and value > high):
        raise ValidationError(f"{name} must be between {low} and {high or 'any'}", field=name)
    return value


def _message(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise NotFound(f"no message {request.match_info['id']}") from None


def add_routes(router: web.UrlDispatcher, sink: SmtpSink) -> None:
    async def healthz(request: web.Request) -> web.StreamResponse:
        return _json({"ok": True})

    async def count(request: web.Request) -> web.StreamResponse:
        return _json({"count": len(sink.index)})

    async def messages(request: web.Request) -> web.StreamResponse:
        page = sink.index.page(
            after=_integer(request, "after", 0, low=0),
            limit=_integer(request, "limit", 100, low=1, high=MAX_PAGE),
            recipient=request.query.get("recipient") or None,
            mail_from=request.query.get("mail_from"),
            message_id=request.query.get("message_id") or None,
        )
        return _json(page)

    async def raw(request: web.Request) -> web.StreamResponse:
        return web.Response(body=sink.raw(_message(request)), content_type="message/rfc822")

    async def envelope(request: web.Request) -> web.StreamResponse:
        return _json(sink.index.get(_message(request)))

    async def delivered(request: web.Request) -> web.StreamResponse:
        message_id = request.query.get("message_id", "")
        if not message_id.strip():
            raise ValidationError("message_id is required", field="message_id")
        return _json({"delivered": sink.delivered(message_id)})

    async def reset(request: web.Request) -> web.StreamResponse:
        keep_files = request.query.get("keep_files", "") not in {"", "0", "false"}
        return _json({"forgotten": await sink.reset(keep_files=keep_files)})

    async def stats(request: web.Request) -> web.StreamResponse:
        return _json(sink.stats)

    async def rules(request: web.Request) -> web.StreamResponse:
        return _json({"rules": [rule.source for rule in sink.rules.rules]})

    async def set_rules(request: web.Request) -> web.StreamResponse:
        body = _decode_rules.decode(await request.read())
        return _json({"rules": [rule.source for rule in sink.set_rules(body.rules).rules]})

    routes: list[tuple[str, str, AdminHandler]] = [
        ("GET", "/healthz", healthz),
        ("GET", "/messages/count", count),
        ("GET", "/messages", messages),
        ("GET", "/messages/{id}", raw),
        ("GET", "/messages/{id}/envelope", envelope),
        ("GET", "/delivered", delivered),
        ("POST", "/reset", reset),
        ("GET", "/stats", stats),
        ("GET", "/rules", rules),
        ("POST", "/rules", set_rules),
    ]
    for method, path, handler in routes:
        router.add_route(method, path, _guarded(handler))
