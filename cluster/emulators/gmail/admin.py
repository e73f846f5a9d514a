"""The admin API under /_emulator/: the GmailEmulator's Python methods over HTTP, for an emulator
in another process (Ray actor tests, benchmarks, the demo). cluster.emulators.gmail.admin_client
is its client. JSON in and out; an unknown user or message answers 404, bad input 400.

    GET    /_emulator/users                              users with message counts and history ids
    POST   /_emulator/users                              {"email"}
    POST   /_emulator/users/{email}/load                 {"source": path on the emulator's machine}
    POST   /_emulator/users/{email}/generate             {"count", "seed"}
    POST   /_emulator/users/{email}/messages             {"raw": base64url, "labelIds", "internalDate"}
    DELETE /_emulator/users/{email}/messages/{id}
    POST   /_emulator/users/{email}/messages/{id}/labels {"add": [...], "remove": [...]}
    GET    /_emulator/users/{email}/messages/{id}/raw    the raw bytes (message/rfc822)
    POST   /_emulator/users/{email}/labels               {"name"} -> {"id"}
    POST   /_emulator/users/{email}/history/expire
    GET    /_emulator/users/{email}/state                {"historyId", "messages": {id: {...}}}
    POST   /_emulator/users/{email}/tokens               {"scopes"?} -> what /token answers
    POST   /_emulator/tokens/expire | /_emulator/tokens/revoke {"token"}
    POST   /_emulator/faults                             {"fault_rate", "latency_ms", "drop_rate", "push_drop_rate"}
    POST   /_emulator/quota                              {"regime": "legacy" | "2026" | "off"}
    POST   /_emulator/push                               {"url", "audience"}
    GET    /_emulator/stats, POST /_emulator/stats/reset, GET /_emulator/config
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from cluster.emulators.gmail.encoding import b64url_decode

if TYPE_CHECKING:
    from cluster.emulators.gmail.server import GmailEmulator

PREFIX = "/_emulator"
AdminHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message}}, status=status)


def _guarded(handler: AdminHandler) -> AdminHandler:
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except KeyError as error:
            return _problem(404, str(error.args[0]) if error.args else "not found")
        except (ValueError, TypeError, msgspec.DecodeError) as error:
            return _problem(400, str(error))
        except FileNotFoundError as error:
            return _problem(400, str(error))

    return run


async def _body(request: web.Request) -> dict[str, Any]:
    data = await request.read()
    if not data.strip():
        return {}
    body = msgspec.json.decode(data)
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body


def _strings(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name} must be a list of strings")
    return value


def _optional_float(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def add_routes(router: web.UrlDispatcher, emulator: GmailEmulator) -> None:
    def user(request: web.Request) -> str:
        return request.match_info["email"]

    async def users(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "users": [
                    {
                        "email": mailbox.email,
                        "messagesTotal": len(mailbox.messages),
                        "historyId": mailbox.history_id,
                    }
                    for mailbox in emulator.mailboxes.values()
                ]
            }
        )

    async def add_user(request: web.Request) -> web.StreamResponse:
        email = (await _body(request)).get("email")
        if not isinstance(email, str):
            raise ValueError("email is required")
        emulator.add_user(email)
        return web.json_response({"email": email})

    async def load(request: web.Request) -> web.StreamResponse:
        source = (await _body(request)).get("source")
        if not isinstance(source, str):
            raise ValueError("source is required")
        return web.json_response({"count": emulator.load_mailbox(user(request), source)})

    async def generate(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        count, seed = body.get("count"), body.get("seed", 0)
        if not isinstance(count, int) or not isinstance(seed, int):
            raise ValueError("count and seed must be integers")
        return web.json_response({"count": emulator.generate(user(request), count, seed=seed)})

    async def add_message(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        raw = body.get("raw")
        if not isinstance(raw, str):
            raise ValueError("raw (base64url) is required")
        internal = body.get("internalDate")
        if internal is not None and not isinstance(internal, int):
            raise ValueError("internalDate must be epoch milliseconds")
        label_ids = _strings(body, "labelIds") if "labelIds" in body else ["INBOX"]
        message_id = emulator.add_message(user(request), b64url_decode(raw), label_ids, internal)
        return web.json_response({"id": message_id})

    async def delete_message(request: web.Request) -> web.StreamResponse:
        emulator.delete_message(user(request), request.match_info["id"])
        return web.Response(status=204)

    async def labels(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        emulator.modify_labels(
            user(request), request.match_info["id"], _strings(body, "add"), _strings(body, "remove")
        )
        return web.json_response({})

    async def raw(request: web.Request) -> web.StreamResponse:
        data = emulator.raw(user(request), request.match_info["id"])
        return web.Response(body=data, content_type="message/rfc822")

    async def create_label(request: web.Request) -> web.StreamResponse:
        name = (await _body(request)).get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("name is required")
        return web.json_response({"id": emulator.create_label(user(request), name)})

    async def expire_history(request: web.Request) -> web.StreamResponse:
        emulator.expire_history(user(request))
        return web.json_response({})

    async def state(request: web.Request) -> web.StreamResponse:
        email = user(request)
        return web.json_response({"historyId": emulator.history_id(email), "messages": emulator.state(email)})

    async def tokens(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        email = user(request)
        if "scopes" in body:
            return web.json_response(emulator.issue_tokens(email, _strings(body, "scopes")))
        return web.json_response(emulator.issue_tokens(email))

    async def expire_tokens(request: web.Request) -> web.StreamResponse:
        emulator.expire_access_tokens()
        return web.json_response({})

    async def revoke(request: web.Request) -> web.StreamResponse:
        token = (await _body(request)).get("token")
        if not isinstance(token, str):
            raise ValueError("token is required")
        emulator.revoke(token)
        return web.json_response({})

    async def faults(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        emulator.set_faults(
            fault_rate=_optional_float(body, "fault_rate"),
            latency_ms=_optional_float(body, "latency_ms"),
            drop_rate=_optional_float(body, "drop_rate"),
            push_drop_rate=_optional_float(body, "push_drop_rate"),
        )
        return web.Response(body=msgspec.json.encode(emulator.config), content_type="application/json")

    async def quota(request: web.Request) -> web.StreamResponse:
        regime = (await _body(request)).get("regime")
        if not isinstance(regime, str):
            raise ValueError("regime is required")
        emulator.set_quota(regime)
        return web.json_response({"quota": regime})

    async def push(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        url, audience = body.get("url"), body.get("audience")
        if url is not None and not isinstance(url, str):
            raise ValueError("url must be a string")
        if audience is not None and not isinstance(audience, str):
            raise ValueError("audience must be a string")
        emulator.set_push(url=url, audience=audience)
        return web.json_response({})

    async def stats(request: web.Request) -> web.StreamResponse:
        return web.Response(body=msgspec.json.encode(emulator.stats), content_type="application/json")

    async def reset_stats(request: web.Request) -> web.StreamResponse:
        emulator.reset_stats()
        return web.json_response({})

    async def config(request: web.Request) -> web.StreamResponse:
        return web.Response(body=msgspec.json.encode(emulator.config), content_type="application/json")

    routes: list[tuple[str, str, AdminHandler]] = [
        ("GET", "/users", users),
        ("POST", "/users", add_user),
        ("POST", "/users/{email}/load", load),
        ("POST", "/users/{email}/generate", generate),
        ("POST", "/users/{email}/messages", add_message),
        ("DELETE", "/users/{email}/messages/{id}", delete_message),
        ("POST", "/users/{email}/messages/{id}/labels", labels),
        ("GET", "/users/{email}/messages/{id}/raw", raw),
        ("POST", "/users/{email}/labels", create_label),
        ("POST", "/users/{email}/history/expire", expire_history),
        ("GET", "/users/{email}/state", state),
        ("POST", "/users/{email}/tokens", tokens),
        ("POST", "/tokens/expire", expire_tokens),
        ("POST", "/tokens/revoke", revoke),
        ("POST", "/faults", faults),
        ("POST", "/quota", quota),
        ("POST", "/push", push),
        ("GET", "/stats", stats),
        ("POST", "/stats/reset", reset_stats),
        ("GET", "/config", config),
    ]
    for method, path, handler in routes:
        router.add_route(method, PREFIX + path, _guarded(handler))
