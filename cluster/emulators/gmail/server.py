"""The Gmail emulator: an aiohttp server with Gmail's REST paths, the batch endpoint, OAuth 2.0,
signing certificates and the admin API, plus the same operations as Python methods for tests.

    async with GmailEmulator(EmulatorConfig()) as gmail:
        gmail.generate("ana@acme.test", 500)
        tokens = gmail.issue_tokens("ana@acme.test")
        # point google-api-python-client (or mailray's settings) at gmail.base_url

Paths (the discovery document's, under the emulator's root URL):
    /gmail/v1/users/{userId}/...                 the API (discovery `servicePath` + method paths)
    /upload/gmail/v1/users/{userId}/messages...  media uploads (uploadType=media or multipart)
    /batch, /batch/gmail/v1                      batches of up to 100 calls
    /o/oauth2/auth, /token, /revoke              OAuth 2.0 (also /o/oauth2/v2/auth, /o/oauth2/token)
    /oauth2/v1/certs                             certificates that sign push and id tokens
    /discovery/v1/apis/gmail/v1/rest, /$discovery/rest   the discovery document, rootUrl = this server
    /_emulator/...                               admin (see cluster.emulators.gmail.admin)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs

import msgspec
from aiohttp import web

from cluster.emulators.gmail import admin, api_errors, generate, loader
from cluster.emulators.gmail.api import ApiRequest, ApiResponse, GmailApi, discovery_document
from cluster.emulators.gmail.batch import (
    MAX_PARTS,
    BatchFormatError,
    InnerResponse,
    build_batch_response,
    parse_batch,
)
from cluster.emulators.gmail.config import EmulatorConfig, QuotaSetting
from cluster.emulators.gmail.faults import FaultInjector
from cluster.emulators.gmail.mailbox import HistoryRecord, Mailbox
from cluster.emulators.gmail.oauth import DEFAULT_SCOPES, OAuthError, OAuthServer
from cluster.emulators.gmail.push import PushNotifier
from cluster.emulators.gmail.quota import QuotaGate
from cluster.emulators.gmail.signing import process_signing_key
from cluster.emulators.gmail.stats import EmulatorStats

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 50 * 1024 * 1024
_NO_STORE = {"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate", "Pragma": "no-cache"}


def _query(request: web.Request) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for name, value in request.query.items():
        query.setdefault(name, []).append(value)
    return query


def _web(response: ApiResponse) -> web.Response:
    headers = dict(response.headers or {})
    if response.status == 204:
        return web.Response(status=204, headers=headers)
    headers["Content-Type"] = response.content_type
    return web.Response(status=response.status, body=response.body, headers=headers)


def _error(error: api_errors.ApiError) -> web.Response:
    return _web(ApiResponse(error.code, error.body(), headers=error.headers or None))


class GmailEmulator:
    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = msgspec.structs.replace(config) if config is not None else EmulatorConfig()
        self.stats = EmulatorStats()
        self.mailboxes: dict[str, Mailbox] = {}
        self._signing_key = process_signing_key()
        self.faults = FaultInjector(
            fault_rate=self.config.fault_rate,
            latency_ms=self.config.latency_ms,
            drop_rate=self.config.drop_rate,
            seed=self.config.seed,
        )
        self.quota = QuotaGate(self.config.quota, self.config.project)
        self.oauth = OAuthServer(
            client_id=self.config.client_id,
            client_secret=self.config.client_secret,
            token_ttl_s=self.config.token_ttl_s,
            signing_key=self._signing_key,
            stats=self.stats,
            ensure_user=self.add_user,
            default_user=self._default_user,
        )
        self.push = PushNotifier(
            url=self.config.push_url,
            audience=self.config.push_audience,
            drop_rate=self.config.push_drop_rate,
            project=self.config.project,
            signing_key=self._signing_key,
            faults=self.faults,
            stats=self.stats,
            history_id_of=lambda email: self._mailbox(email).history_id,
        )
        self.api = GmailApi(
            mailbox_for=self._mailbox_for_grant,
            oauth=self.oauth,
            quota=self.quota,
            faults=self.faults,
            push=self.push,
            stats=self.stats,
            project=lambda: self.config.project,
        )
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._discovery: dict[str, bytes] = {}

    # ---------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the emulator is not started")
        return self._base_url

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        router = app.router
        router.add_route("*", "/gmail/v1/{tail:.*}", self._handle_api)
        router.add_route("*", "/upload/gmail/v1/{tail:.*}", self._handle_api)
        router.add_route("*", "/resumable/upload/gmail/v1/{tail:.*}", self._handle_api)
        router.add_post("/batch", self._handle_batch)
        router.add_post("/batch/gmail/v1", self._handle_batch)
        for path in ("/o/oauth2/auth", "/o/oauth2/v2/auth"):
            router.add_get(path, self._handle_authorize)
        for path in ("/token", "/o/oauth2/token", "/oauth2/v4/token"):
            router.add_post(path, self._handle_token)
        for path in ("/revoke", "/o/oauth2/revoke"):
            router.add_route("*", path, self._handle_revoke)
        router.add_get("/oauth2/v1/certs", self._handle_certs)
        router.add_get("/discovery/v1/apis/gmail/v1/rest", self._handle_discovery)
        router.add_get("/$discovery/rest", self._handle_discovery)
        admin.add_routes(router, self)
        router.add_route("*", "/{tail:.*}", self._handle_unknown)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            return
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        host = self.config.host if self.config.host not in {"0.0.0.0", "::", ""} else "127.0.0.1"  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        self._base_url = f"http://{host}:{address[1]}"
        self.push.start(asyncio.get_running_loop())

    async def stop(self) -> None:
        await self.push.stop()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._base_url = None

    async def __aenter__(self) -> GmailEmulator:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------- users

    def _default_user(self) -> str | None:
        return next((mailbox.email for mailbox in self.mailboxes.values()), None)

    def _mailbox(self, email: str) -> Mailbox:
        mailbox = self.mailboxes.get(email.lower())
        if mailbox is None:
            raise KeyError(f"no such user: {email}")
        return mailbox

    def _mailbox_for_grant(self, email: str) -> Mailbox:
        self.add_user(email)
        return self._mailbox(email)

    def _on_change(self, mailbox: Mailbox, record: HistoryRecord) -> None:
        self.push.changed(mailbox.email, record)

    def add_user(self, email: str) -> None:
        if "@" not in email:
            raise ValueError(f"not an email address: {email!r}")
        if email.lower() not in self.mailboxes:
            self.mailboxes[email.lower()] = Mailbox(
                email, retention=self.config.history_retention, listener=self._on_change
            )

    def users(self) -> list[str]:
        return [mailbox.email for mailbox in self.mailboxes.values()]

    # ---------------------------------------------------------------- mailboxes

    def load_mailbox(self, email: str, source: str | Path) -> int:
        self.add_user(email)
        return loader.load(self._mailbox(email), source)

    def generate(self, email: str, count: int, *, seed: int = 0) -> int:
        self.add_user(email)
        return generate.generate(self._mailbox(email), count, seed=seed)

    def _check_labels(self, mailbox: Mailbox, label_ids: Sequence[str]) -> None:
        unknown = [label for label in label_ids if label not in mailbox.labels]
        if unknown:
            raise ValueError(
                f"unknown label ids: {', '.join(unknown)} (create user labels with create_label)"
            )

    def add_message(
        self,
        email: str,
        raw: bytes,
        label_ids: Sequence[str] = ("INBOX",),
        internal_date_ms: int | None = None,
    ) -> str:
        """Deliver a message (a mailbox change: recorded in history, pushed to a watcher); its id.
        internalDate defaults to now, as for mail that has just arrived."""
        self.add_user(email)
        mailbox = self._mailbox(email)
        if isinstance(label_ids, str):
            raise TypeError("label_ids must be a sequence of label ids, not a string")
        self._check_labels(mailbox, label_ids)
        internal = int(time.time() * 1000) if internal_date_ms is None else internal_date_ms
        return mailbox.add(bytes(raw), list(label_ids), internal).id

    def delete_message(self, email: str, message_id: str) -> None:
        mailbox = self._mailbox(email)
        if message_id not in mailbox.messages:
            raise KeyError(f"no message {message_id} for {email}")
        mailbox.delete(message_id)

    def modify_labels(
        self, email: str, message_id: str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        mailbox = self._mailbox(email)
        if message_id not in mailbox.messages:
            raise KeyError(f"no message {message_id} for {email}")
        self._check_labels(mailbox, [*add, *remove])
        mailbox.modify(message_id, add, remove)

    def create_label(self, email: str, name: str) -> str:
        """A user label's id (the existing one when the name is taken)."""
        self.add_user(email)
        mailbox = self._mailbox(email)
        existing = mailbox.label_named(name)
        return existing.id if existing is not None else mailbox.create_label(name).id

    def expire_history(self, email: str) -> None:
        self._mailbox(email).expire_history()

    def history_id(self, email: str) -> int:
        return self._mailbox(email).history_id

    def state(self, email: str) -> dict[str, dict[str, Any]]:
        """message id -> {"threadId", "labelIds", "internalDate", "historyId"} for every message."""
        return {
            message.id: {
                "threadId": message.thread_id,
                "labelIds": list(message.label_ids),
                "internalDate": message.internal_date,
                "historyId": message.history_id,
            }
            for message in self._mailbox(email).messages.values()
        }

    def raw(self, email: str, message_id: str) -> bytes:
        message = self._mailbox(email).get(message_id)
        if message is None:
            raise KeyError(f"no message {message_id} for {email}")
        return message.raw

    # ------------------------------------------------------------ OAuth, knobs

    def issue_tokens(self, email: str, scopes: Sequence[str] = DEFAULT_SCOPES) -> dict[str, Any]:
        """Tokens as /token answers a consented authorization code (access_type=offline):
        access_token, refresh_token, expires_in, scope, token_type (and id_token with openid)."""
        return self.oauth.issue(email, tuple(scopes))

    def expire_access_tokens(self) -> None:
        self.oauth.expire_access_tokens()

    def revoke(self, token: str) -> None:
        self.oauth.revoke(token)

    def set_faults(
        self,
        *,
        fault_rate: float | None = None,
        latency_ms: float | None = None,
        drop_rate: float | None = None,
        push_drop_rate: float | None = None,
    ) -> None:
        self.faults.set(fault_rate=fault_rate, latency_ms=latency_ms, drop_rate=drop_rate)
        self.push.set(drop_rate=push_drop_rate)
        self.config.fault_rate = self.faults.fault_rate
        self.config.latency_ms = self.faults.latency_ms
        self.config.drop_rate = self.faults.drop_rate
        self.config.push_drop_rate = self.push.drop_rate

    def set_quota(self, regime: str) -> None:
        self.quota.set_regime(regime)
        self.config.quota = cast(QuotaSetting, self.quota.name)

    def set_push(self, *, url: str | None = None, audience: str | None = None) -> None:
        """Change where pushes go (an empty url: nowhere) and their token's audience."""
        self.push.set(url=url, audience=audience)
        self.config.push_url = self.push.url
        self.config.push_audience = self.push.audience

    def reset_stats(self) -> None:
        for field in msgspec.structs.fields(EmulatorStats):
            value = (
                field.default_factory() if field.default_factory is not msgspec.NODEFAULT else field.default
            )
            setattr(self.stats, field.name, copy.copy(value))

    # ------------------------------------------------------------ HTTP handlers

    async def _before(self, request: web.Request) -> web.Response | None:
        """Latency and dropped connections, for every HTTP request but the admin API's."""
        self.stats.http_requests += 1
        if self.faults.latency_ms > 0:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        if self.faults.drop():
            self.stats.connections_dropped += 1
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        return None

    async def _handle_api(self, request: web.Request) -> web.Response:
        dropped = await self._before(request)
        if dropped is not None:
            return dropped
        body = await request.read()
        path = request.raw_path.split("?", 1)[0]
        response = self.api.dispatch(ApiRequest(request.method, path, _query(request), request.headers, body))
        return _web(response)

    async def _handle_batch(self, request: web.Request) -> web.Response:
        dropped = await self._before(request)
        if dropped is not None:
            return dropped
        body = await request.read()
        self.stats.batch_requests += 1
        try:
            parts = parse_batch(body, request.headers.get("Content-Type", ""))
        except BatchFormatError as error:
            return _error(api_errors.bad_request(str(error)))
        if len(parts) > MAX_PARTS:
            return _error(
                api_errors.bad_request(
                    f"Inner request count exceeds the limit. Received: {len(parts)}, Limit: {MAX_PARTS}"
                )
            )
        if not parts:
            return _error(api_errors.bad_request("Batch request contains no inner requests"))
        outer_authorization = request.headers.get("Authorization")
        responses = []
        for part in parts:
            self.stats.batch_parts += 1
            path, _, query_string = part.target.partition("?")
            headers = part.headers
            if "authorization" not in headers and outer_authorization:
                headers["authorization"] = outer_authorization
            if path.startswith("/gmail/v1/"):
                query = parse_qs(query_string, keep_blank_values=True)
                answer = self.api.dispatch(ApiRequest(part.method, path, query, headers, part.body))
            else:
                missing = api_errors.method_not_found()
                answer = ApiResponse(missing.code, missing.body())
            responses.append(
                InnerResponse(
                    part.content_id, answer.status, answer.body, answer.content_type, answer.headers
                )
            )
        content_type, payload = build_batch_response(responses)
        return web.Response(body=payload, headers={"Content-Type": content_type})

    async def _handle_authorize(self, request: web.Request) -> web.Response:
        self.stats.http_requests += 1
        status, location_or_page = self.oauth.authorize(dict(request.query))
        if status == 302:
            return web.Response(status=302, headers={"Location": location_or_page, **_NO_STORE})
        return web.Response(status=status, text=location_or_page)

    async def _form(self, request: web.Request) -> dict[str, str]:
        form: dict[str, str] = {}
        content_type = request.headers.get("Content-Type", "").lower()
        if content_type.startswith("application/json"):
            try:
                body = msgspec.json.decode(await request.read())
            except msgspec.DecodeError:
                raise OAuthError(400, "invalid_request", "Invalid JSON payload received.") from None
            if isinstance(body, dict):
                form.update({str(key): str(value) for key, value in body.items()})
        else:
            posted = await request.post()
            form.update({key: value for key, value in posted.items() if isinstance(value, str)})
        for key, value in request.query.items():
            form.setdefault(key, value)
        authorization = request.headers.get("Authorization", "")
        if authorization.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(authorization[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError(401, "invalid_client", "Unauthorized") from None
            form.setdefault("client_id", client_id)
            form.setdefault("client_secret", secret)
        return form

    async def _handle_token(self, request: web.Request) -> web.Response:
        self.stats.http_requests += 1
        try:
            answer = self.oauth.token(await self._form(request))
        except OAuthError as error:
            return web.json_response(error.body(), status=error.status, headers=_NO_STORE)
        return web.json_response(answer, headers=_NO_STORE)

    async def _handle_revoke(self, request: web.Request) -> web.Response:
        self.stats.http_requests += 1
        try:
            form = await self._form(request)
        except OAuthError as error:
            return web.json_response(error.body(), status=error.status)
        token = form.get("token", "")
        if not token or not self.oauth.revoke(token):
            return web.json_response(
                {"error": "invalid_token", "error_description": "Token expired or revoked"}, status=400
            )
        return web.json_response({})

    async def _handle_certs(self, request: web.Request) -> web.Response:
        self.stats.http_requests += 1
        return web.json_response(
            self._signing_key.certs(), headers={"Cache-Control": "public, max-age=3600, must-revalidate"}
        )

    async def _handle_discovery(self, request: web.Request) -> web.Response:
        self.stats.http_requests += 1
        root = f"{request.scheme}://{request.host}/"
        body = self._discovery.get(root)
        if body is None:
            document = dict(discovery_document())
            document.update(rootUrl=root, baseUrl=root, mtlsRootUrl=root)
            body = self._discovery[root] = msgspec.json.encode(document)
        return web.Response(body=body, content_type="application/json")

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        self.stats.http_requests += 1
        return _error(api_errors.method_not_found())
