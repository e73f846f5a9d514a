"""The Gmail API's methods over the emulator's mailboxes, independent of HTTP.

`GmailApi.dispatch` takes one API call (from an HTTP request or a part of a batch) through what
Google does in front of the mailbox, in this order: route (404), OAuth token (401), userId
(403 delegation denied), scopes from the discovery document (403), quota (429 per user, 403 per
project), injected faults (500/503), then the method itself. It is synchronous: a batch of 50
calls runs without awaiting anything.

Responses follow the discovery document: camelCase fields, ids and historyId/internalDate as
strings, empty lists and missing values left out (as Google's JSON does).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import googleapiclient
import msgspec

from cluster.emulators.gmail import api_errors, mime
from cluster.emulators.gmail.api_errors import ApiError
from cluster.emulators.gmail.batch import BatchFormatError, content_type_parameter, split_multipart
from cluster.emulators.gmail.encoding import b64url, b64url_decode
from cluster.emulators.gmail.faults import FaultInjector
from cluster.emulators.gmail.fields import apply_fields, parse_fields
from cluster.emulators.gmail.labels import SPAM_TRASH, SYSTEM_LABELS, Label
from cluster.emulators.gmail.mailbox import (
    HistoryExpired,
    HistoryRecord,
    Mailbox,
    SortKey,
    StoredMessage,
    is_message_id,
)
from cluster.emulators.gmail.oauth import AccessGrant, OAuthServer
from cluster.emulators.gmail.push import PushNotifier, parse_topic
from cluster.emulators.gmail.quota import QuotaGate
from cluster.emulators.gmail.search import Query, parse_query
from cluster.emulators.gmail.stats import EmulatorStats

log = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=UTF-8"
API_PREFIX = "/gmail/v1/users/"
UPLOAD_PREFIXES = ("/upload/gmail/v1/users/", "/resumable/upload/gmail/v1/users/")
MAX_RESULTS = 500
MAX_BATCH_IDS = 1000
MAX_MESSAGE_BYTES = 36_700_160  # the discovery document's maxSize for uploads
METADATA_SCOPE = "https://www.googleapis.com/auth/gmail.metadata"
DISCOVERY_PATH = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "gmail.v1.json"
_ATTACHMENT_PREFIX = "ANGjdJ"


@functools.cache
def discovery_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DISCOVERY_PATH.read_text())
    return document


@functools.cache
def method_scopes() -> dict[str, frozenset[str]]:
    """users.messages.get -> the scopes that authorize it, from the discovery document."""
    found: dict[str, frozenset[str]] = {}

    def walk(resource: dict[str, Any]) -> None:
        for method in resource.get("methods", {}).values():
            found[method["id"].removeprefix("gmail.")] = frozenset(method.get("scopes", []))
        for child in resource.get("resources", {}).values():
            walk(child)

    walk(discovery_document())
    return found


@dataclass(slots=True)
class ApiRequest:
    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    headers: Mapping[str, str]  # looked up by lower-case name
    body: bytes = b""


@dataclass(slots=True)
class ApiResponse:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] | None = None


@dataclass(slots=True)
class Call:
    request: ApiRequest
    method_id: str
    mailbox: Mailbox
    grant: AccessGrant
    ids: tuple[str, ...]
    upload: bool


Handler = Callable[[Call], "dict[str, Any] | None"]


def _one(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _bool(query: Mapping[str, list[str]], name: str, default: bool) -> bool:
    value = _one(query, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in {"true", "1"}:
        return True
    if lowered in {"false", "0"}:
        return False
    raise api_errors.invalid_value(name, "TYPE_BOOL", value)


def _max_results(query: Mapping[str, list[str]], default: int = 100) -> int:
    value = _one(query, "maxResults")
    if value is None:
        return default
    if not value.isdigit():
        raise api_errors.invalid_value("maxResults", "TYPE_UINT32", value)
    number = int(value)
    return default if number == 0 else min(number, MAX_RESULTS)


def _json_body(request: ApiRequest) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    try:
        body = msgspec.json.decode(request.body)
    except msgspec.DecodeError as error:
        raise api_errors.invalid_json(str(error)) from None
    if not isinstance(body, dict):
        raise api_errors.invalid_json("Expected a JSON object.")
    return body


def _string_list(body: Mapping[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise api_errors.invalid_json(f"Invalid value at '{name}': expected a list of strings.")
    return value


def attachment_id(message_id: str, part_id: str) -> str:
    return _ATTACHMENT_PREFIX + b64url(f"{message_id}:{part_id}".encode(), pad=False)


def _parse_attachment_id(value: str) -> tuple[str, str] | None:
    if not value.startswith(_ATTACHMENT_PREFIX):
        return None
    try:
        message_id, colon, part_id = b64url_decode(value[len(_ATTACHMENT_PREFIX) :]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (message_id, part_id) if colon else None


def _page_token(key: SortKey) -> str:
    return f"{-key[0]}{-key[1]:020d}"


def _parse_page_token(token: str) -> SortKey:
    if not token.isdigit() or len(token) <= 20:
        raise api_errors.invalid_argument("Invalid pageToken", location="pageToken")
    return (-int(token[:-20]), -int(token[-20:]))


class GmailApi:
    def __init__(
        self,
        *,
        mailbox_for: Callable[[str], Mailbox],
        oauth: OAuthServer,
        quota: QuotaGate,
        faults: FaultInjector,
        push: PushNotifier,
        stats: EmulatorStats,
        project: Callable[[], str],
    ) -> None:
        self._mailbox_for = mailbox_for
        self.oauth = oauth
        self.quota = quota
        self.faults = faults
        self.push = push
        self.stats = stats
        self._project = project
        self._scopes = method_scopes()
        self._routes: dict[tuple[str, int], list[tuple[tuple[str, ...], str, Handler]]] = {}
        self._add_routes()

    # ------------------------------------------------------------------ routing

    def _route(self, verb: str, pattern: str, method_id: str, handler: Handler) -> None:
        segments = tuple(pattern.split("/")) if pattern else ()
        self._routes.setdefault((verb, len(segments)), []).append((segments, method_id, handler))

    def _add_routes(self) -> None:
        add = self._route
        add("GET", "profile", "users.getProfile", self.get_profile)
        add("POST", "watch", "users.watch", self.watch)
        add("POST", "stop", "users.stop", self.stop)
        add("GET", "labels", "users.labels.list", self.labels_list)
        add("POST", "labels", "users.labels.create", self.labels_create)
        add("GET", "labels/*", "users.labels.get", self.labels_get)
        add("PUT", "labels/*", "users.labels.update", self.labels_update)
        add("PATCH", "labels/*", "users.labels.patch", self.labels_patch)
        add("DELETE", "labels/*", "users.labels.delete", self.labels_delete)
        add("GET", "messages", "users.messages.list", self.messages_list)
        add("POST", "messages", "users.messages.insert", self.messages_insert)
        add("POST", "messages/send", "users.messages.send", self.messages_send)
        add("POST", "messages/import", "users.messages.import", self.messages_import)
        add("POST", "messages/batchModify", "users.messages.batchModify", self.messages_batch_modify)
        add("POST", "messages/batchDelete", "users.messages.batchDelete", self.messages_batch_delete)
        add("GET", "messages/*", "users.messages.get", self.messages_get)
        add("DELETE", "messages/*", "users.messages.delete", self.messages_delete)
        add("POST", "messages/*/modify", "users.messages.modify", self.messages_modify)
        add("POST", "messages/*/trash", "users.messages.trash", self.messages_trash)
        add("POST", "messages/*/untrash", "users.messages.untrash", self.messages_untrash)
        add("GET", "messages/*/attachments/*", "users.messages.attachments.get", self.attachments_get)
        add("GET", "threads", "users.threads.list", self.threads_list)
        add("GET", "threads/*", "users.threads.get", self.threads_get)
        add("DELETE", "threads/*", "users.threads.delete", self.threads_delete)
        add("POST", "threads/*/modify", "users.threads.modify", self.threads_modify)
        add("POST", "threads/*/trash", "users.threads.trash", self.threads_trash)
        add("POST", "threads/*/untrash", "users.threads.untrash", self.threads_untrash)
        add("GET", "history", "users.history.list", self.history_list)

    def resolve(self, verb: str, path: str) -> tuple[str, Handler, str, tuple[str, ...], bool]:
        """(method id, handler, userId, path ids, is upload) or a 404 ApiError."""
        upload = False
        if path.startswith(API_PREFIX):
            rest = path[len(API_PREFIX) :]
        else:
            for prefix in UPLOAD_PREFIXES:
                if path.startswith(prefix):
                    rest, upload = path[len(prefix) :], True
                    break
            else:
                raise api_errors.method_not_found()
        segments = [unquote(segment) for segment in rest.split("/")]
        user_id, tail = segments[0], segments[1:]
        for pattern, method_id, handler in self._routes.get((verb, len(tail)), ()):
            ids: list[str] = []
            for want, have in zip(pattern, tail, strict=True):
                if want == "*":
                    ids.append(have)
                elif want != have:
                    break
            else:
                if upload and method_id not in {
                    "users.messages.send",
                    "users.messages.insert",
                    "users.messages.import",
                }:
                    break
                return method_id, handler, user_id, tuple(ids), upload
        raise api_errors.method_not_found()

    # ----------------------------------------------------------------- dispatch

    def dispatch(self, request: ApiRequest) -> ApiResponse:
        try:
            return self._dispatch(request)
        except ApiError as error:
            return ApiResponse(error.code, error.body(), headers=error.headers or None)
        except Exception:
            log.exception("gmail emulator: %s %s failed", request.method, request.path)
            internal = api_errors.internal_error()
            return ApiResponse(internal.code, internal.body())

    def _dispatch(self, request: ApiRequest) -> ApiResponse:
        method_id, handler, user_id, ids, upload = self.resolve(request.method, request.path)
        self.stats.count_method(method_id)
        try:
            grant = self.oauth.authenticate(
                request.headers.get("authorization"), _one(request.query, "access_token")
            )
        except ApiError:
            self.stats.auth_failures += 1
            raise
        if user_id != "me" and user_id.lower() != grant.email.lower():
            raise api_errors.delegation_denied(user_id)
        allowed = self._scopes.get(method_id, frozenset())
        granted = grant.scopes & allowed
        if not granted:
            raise api_errors.insufficient_scopes()
        if granted == {METADATA_SCOPE}:
            self._check_metadata_scope(method_id, request)
        units, quota_error = self.quota.charge(
            _one(request.query, "quotaUser") or grant.email.lower(), method_id
        )
        if quota_error is not None:
            self.stats.quota_errors += 1
            if quota_error.code == 429:
                self.stats.quota_errors_user += 1
            else:
                self.stats.quota_errors_project += 1
            raise quota_error
        self.stats.units_charged += units
        fault = self.faults.fault()
        if fault is not None:
            self.stats.faults_injected += 1
            raise fault
        fields = _one(request.query, "fields")
        mask = None
        if fields:
            try:
                mask = parse_fields(fields)
            except ValueError as error:
                raise api_errors.invalid_argument(str(error), location="fields") from None
        call = Call(request, method_id, self._mailbox_for(grant.email), grant, ids, upload)
        result = handler(call)
        if result is None:
            return ApiResponse(204)
        if mask is not None:
            result = apply_fields(result, mask)
        return ApiResponse(200, msgspec.json.encode(result))

    @staticmethod
    def _check_metadata_scope(method_id: str, request: ApiRequest) -> None:
        if _one(request.query, "q") is not None and method_id in {
            "users.messages.list",
            "users.threads.list",
        }:
            raise ApiError(403, "Metadata scope does not support 'q' parameter", reason="forbidden")
        fmt = (_one(request.query, "format") or "full").lower()
        if method_id in {"users.messages.get", "users.threads.get"} and fmt in {"full", "raw"}:
            raise ApiError(403, f"Metadata scope doesn't allow format {fmt.upper()}", reason="forbidden")

    # ------------------------------------------------------------------ helpers

    def _message(self, call: Call, message_id: str) -> StoredMessage:
        if not is_message_id(message_id):
            raise api_errors.invalid_argument("Invalid id value", location="id")
        message = call.mailbox.get(message_id)
        if message is None:
            raise api_errors.not_found()
        return message

    def _check_labels(self, mailbox: Mailbox, label_ids: list[str]) -> None:
        for label_id in label_ids:
            if label_id not in mailbox.labels:
                raise api_errors.invalid_argument(f"Invalid label: {label_id}")

    def message_json(
        self, mailbox: Mailbox, message: StoredMessage, fmt: str, only_headers: set[str] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"id": message.id, "threadId": message.thread_id}
        if message.label_ids:
            body["labelIds"] = list(message.label_ids)
        body["snippet"] = mailbox.snippet(message)
        if fmt == "raw":
            body["raw"] = message.raw_b64
        elif fmt == "full":
            body["payload"] = mime.payload_tree(
                mailbox.parsed(message), functools.partial(attachment_id, message.id)
            )
        elif fmt == "metadata":
            body["payload"] = mime.metadata_payload(mailbox.parsed(message), only_headers)
        body["sizeEstimate"] = len(message.raw)
        body["historyId"] = str(message.history_id)
        body["internalDate"] = str(message.internal_date)
        return body

    @staticmethod
    def _format(call: Call) -> tuple[str, set[str] | None]:
        value = _one(call.request.query, "format") or "full"
        fmt = value.lower()
        if fmt not in {"minimal", "full", "raw", "metadata"}:
            raise api_errors.invalid_value("format", "TYPE_ENUM", value)
        wanted = call.request.query.get("metadataHeaders")
        return fmt, ({name.lower() for name in wanted} if wanted else None)

    @staticmethod
    def _labels_json(message: StoredMessage) -> dict[str, Any]:
        body: dict[str, Any] = {"id": message.id, "threadId": message.thread_id}
        if message.label_ids:
            body["labelIds"] = list(message.label_ids)
        return body

    # ------------------------------------------------------------------ profile

    def get_profile(self, call: Call) -> dict[str, Any]:
        mailbox = call.mailbox
        return {
            "emailAddress": mailbox.email,
            "messagesTotal": len(mailbox.messages),
            "threadsTotal": len(mailbox.threads),
            "historyId": str(mailbox.history_id),
        }

    def watch(self, call: Call) -> dict[str, Any]:
        body = _json_body(call.request)
        topic = body.get("topicName")
        project = self._project()
        parsed = parse_topic(topic) if isinstance(topic, str) else None
        if parsed is None or parsed[0] != project:
            raise api_errors.invalid_argument(f"Invalid topicName does not match projects/{project}/topics/*")
        label_ids = _string_list(body, "labelIds")
        self._check_labels(call.mailbox, label_ids)
        action = body.get("labelFilterBehavior") or body.get("labelFilterAction") or "include"
        if action not in {"include", "exclude"}:
            raise api_errors.invalid_value("labelFilterAction", "TYPE_ENUM", str(action))
        expiration = self.push.watch(call.mailbox.email, str(topic), label_ids, action)
        return {"historyId": str(call.mailbox.history_id), "expiration": str(expiration)}

    def stop(self, call: Call) -> None:
        self.push.unwatch(call.mailbox.email)

    # ------------------------------------------------------------------- labels

    def _label(self, call: Call) -> Label:
        label = call.mailbox.labels.get(call.ids[0])
        if label is None:
            raise api_errors.not_found()
        return label

    def labels_list(self, call: Call) -> dict[str, Any]:
        return {"labels": [label.to_json() for label in call.mailbox.labels.values()]}

    def labels_get(self, call: Call) -> dict[str, Any]:
        label = self._label(call)
        return {**label.to_json(), **call.mailbox.label_stats(label.id)}

    def _label_fields(self, call: Call, body: dict[str, Any], *, require_name: bool) -> dict[str, Any]:
        name = body.get("name")
        if name is None and require_name:
            raise api_errors.invalid_argument("Invalid label name")
        if name is not None:
            if not isinstance(name, str) or not name.strip() or name.strip().upper() in SYSTEM_LABELS:
                raise api_errors.invalid_argument("Invalid label name")
            existing = call.mailbox.label_named(name.strip())
            if existing is not None and (not call.ids or existing.id != call.ids[0]):
                raise ApiError(409, "Label name exists or conflicts", reason="aborted", status="ABORTED")
        fields: dict[str, Any] = {}
        if name is not None:
            fields["name"] = name.strip()
        for key, attribute, allowed in (
            ("messageListVisibility", "message_list_visibility", {"show", "hide"}),
            ("labelListVisibility", "label_list_visibility", {"labelShow", "labelShowIfUnread", "labelHide"}),
        ):
            value = body.get(key)
            if value is not None:
                if value not in allowed:
                    raise api_errors.invalid_value(key, "TYPE_ENUM", str(value))
                fields[attribute] = value
        color = body.get("color")
        if color is not None:
            if not isinstance(color, dict):
                raise api_errors.invalid_argument("Invalid label color")
            fields["color"] = {str(key): str(value) for key, value in color.items()}
        return fields

    def labels_create(self, call: Call) -> dict[str, Any]:
        fields = self._label_fields(call, _json_body(call.request), require_name=True)
        label = call.mailbox.create_label(
            fields["name"],
            message_list_visibility=fields.get("message_list_visibility", "show"),
            label_list_visibility=fields.get("label_list_visibility", "labelShow"),
            color=fields.get("color"),
        )
        return label.to_json()

    def _change_label(self, call: Call, *, require_name: bool) -> dict[str, Any]:
        label = self._label(call)
        if label.type == "system":
            raise api_errors.invalid_argument("Invalid update request")
        for attribute, value in self._label_fields(
            call, _json_body(call.request), require_name=require_name
        ).items():
            setattr(label, attribute, value)
        return label.to_json()

    def labels_update(self, call: Call) -> dict[str, Any]:
        return self._change_label(call, require_name=True)

    def labels_patch(self, call: Call) -> dict[str, Any]:
        return self._change_label(call, require_name=False)

    def labels_delete(self, call: Call) -> None:
        label = self._label(call)
        if label.type == "system":
            raise api_errors.invalid_argument("Invalid delete request")
        call.mailbox.delete_label(label.id)

    # ----------------------------------------------------------------- listing

    def _selection(self, call: Call) -> tuple[list[str], Query | None, bool]:
        query = call.request.query
        label_ids = query.get("labelIds", [])
        q = _one(query, "q")
        parsed = None
        if q is not None and q.strip():
            try:
                parsed = parse_query(q, call.mailbox)
            except ValueError as error:
                raise api_errors.invalid_argument(f"Invalid query: {error}", location="q") from None
        include = _bool(query, "includeSpamTrash", False)
        include = include or any(label in SPAM_TRASH for label in label_ids)
        include = include or (parsed is not None and parsed.mentions_spam_trash)
        return label_ids, parsed, include

    @staticmethod
    def _selected(message: StoredMessage, label_ids: list[str], parsed: Query | None, include: bool) -> bool:
        labels = message.label_ids
        if not include and ("SPAM" in labels or "TRASH" in labels):
            return False
        for label in label_ids:
            if label not in labels:
                return False
        return parsed is None or parsed.matches(message)

    def _scan(
        self, mailbox: Mailbox, parsed: Query | None, after_key: SortKey | None = None
    ) -> Iterator[StoredMessage]:
        return mailbox.iter_newest_first(
            after_key=after_key,
            newer_than_ms=parsed.newer_than_ms if parsed else None,
            older_than_ms=parsed.older_than_ms if parsed else None,
        )

    def messages_list(self, call: Call) -> dict[str, Any]:
        mailbox = call.mailbox
        label_ids, parsed, include = self._selection(call)
        limit = _max_results(call.request.query)
        token = _one(call.request.query, "pageToken")
        after_key = _parse_page_token(token) if token else None
        found: list[StoredMessage] = []
        more = False
        for message in self._scan(mailbox, parsed, after_key):
            if self._selected(message, label_ids, parsed, include):
                if len(found) == limit:
                    more = True
                    break
                found.append(message)
        body: dict[str, Any] = {}
        if found:
            body["messages"] = [{"id": message.id, "threadId": message.thread_id} for message in found]
        if more:
            body["nextPageToken"] = _page_token(found[-1].key)
        if parsed is not None:
            estimate = sum(
                1
                for message in self._scan(mailbox, parsed)
                if self._selected(message, label_ids, parsed, include)
            )
        elif label_ids:
            estimate = min(mailbox.label_counts.get(label, 0) for label in label_ids)
        else:
            estimate = len(mailbox.messages) if include else mailbox.visible_total()
        body["resultSizeEstimate"] = estimate
        return body

    # ------------------------------------------------------------------- get

    def messages_get(self, call: Call) -> dict[str, Any]:
        message = self._message(call, call.ids[0])
        fmt, only = self._format(call)
        return self.message_json(call.mailbox, message, fmt, only)

    def attachments_get(self, call: Call) -> dict[str, Any]:
        message = self._message(call, call.ids[0])
        parsed_id = _parse_attachment_id(call.ids[1])
        if parsed_id is None:
            raise api_errors.invalid_argument("Invalid attachment token", location="id")
        if parsed_id[0] != message.id:
            raise api_errors.not_found()
        data = mime.attachment_bytes(call.mailbox.parsed(message), parsed_id[1])
        if data is None:
            raise api_errors.not_found()
        return {"attachmentId": call.ids[1], "size": len(data), "data": b64url(data, pad=False)}

    # ------------------------------------------------------------- new messages

    def _message_input(self, call: Call) -> tuple[bytes, dict[str, Any]]:
        """(raw bytes, the Message resource's other fields) from JSON or an /upload request."""
        request = call.request
        if len(request.body) > MAX_MESSAGE_BYTES + 1024 * 1024:
            raise ApiError(
                413,
                f"Request payload size exceeds the limit: {MAX_MESSAGE_BYTES} bytes.",
                reason="badRequest",
            )
        if call.upload:
            upload_type = (_one(request.query, "uploadType") or "media").lower()
            content_type = request.headers.get("content-type", "")
            if upload_type == "media":
                if not content_type.lower().startswith("message/"):
                    raise api_errors.bad_request(
                        f"Media type '{content_type}' is not supported. Valid media types: [message/*]"
                    )
                return request.body, {}
            if upload_type == "multipart":
                try:
                    parts = split_multipart(
                        request.body, content_type_parameter(content_type, "boundary") or ""
                    )
                except BatchFormatError as error:
                    raise api_errors.bad_request(str(error)) from None
                if len(parts) != 2:
                    raise api_errors.bad_request("Multipart uploads need a metadata part and a media part")
                metadata = ApiRequest("POST", request.path, {}, {}, parts[0][1])
                return parts[1][1], _json_body(metadata)
            raise api_errors.bad_request(
                f"uploadType={upload_type} is not supported by the emulator; use media or multipart"
            )
        body = _json_body(request)
        raw_value = body.get("raw")
        if not raw_value:
            raise api_errors.invalid_argument(
                "'raw' RFC822 payload message string or uploading message via /upload/* URL required"
            )
        if not isinstance(raw_value, str):
            raise api_errors.invalid_value("message.raw", "TYPE_BYTES", str(raw_value)[:40])
        try:
            raw = b64url_decode(raw_value)
        except ValueError:
            raise ApiError(
                400,
                f"Invalid value at 'message.raw' (TYPE_BYTES), Base64 decoding failed for \"{raw_value[:40]}\"",
                reason="invalid",
            ) from None
        return raw, body

    def _thread_hint(self, fields: Mapping[str, Any]) -> str | None:
        thread = fields.get("threadId")
        return thread if isinstance(thread, str) and thread else None

    def messages_send(self, call: Call) -> dict[str, Any]:
        raw, fields = self._message_input(call)
        mailbox = call.mailbox
        info = mime.header_info(raw)
        if not info.has_recipients:
            raise api_errors.invalid_argument("Recipient address required")
        extra = b""
        now_ms = int(time.time() * 1000)
        newline = b"\r\n" if b"\r\n" in mime.header_block(raw)[:2000] or b"\n" not in raw else b"\n"
        if not info.has_from:
            extra += b"From: " + mailbox.email.encode() + newline
        if not info.has_date:
            extra += b"Date: " + format_datetime(_utc(now_ms)).encode() + newline
        if info.message_id is None:
            extra += f"Message-ID: <{mailbox.next_message_id()}.emulator@mail.gmail.com>".encode() + newline
        if extra:
            raw = extra + raw
            info = mime.header_info(raw)
        labels = ["SENT"]
        if mailbox.email.lower() in (address.lower() for address in mime.recipients_of(raw)):
            labels += ["INBOX", "UNREAD"]
        message = mailbox.add(raw, labels, now_ms, thread_id=self._thread_hint(fields), info=info)
        return self._labels_json(message)

    def _store(self, call: Call, *, default_source: str) -> dict[str, Any]:
        raw, fields = self._message_input(call)
        label_ids = _string_list(fields, "labelIds")
        self._check_labels(call.mailbox, label_ids)
        source = _one(call.request.query, "internalDateSource") or default_source
        if source not in {"receivedTime", "dateHeader"}:
            raise api_errors.invalid_value("internalDateSource", "TYPE_ENUM", source)
        info = mime.header_info(raw)
        internal = int(time.time() * 1000)
        if source == "dateHeader" and info.date_ms is not None:
            internal = info.date_ms
        message = call.mailbox.add(raw, label_ids, internal, thread_id=self._thread_hint(fields), info=info)
        return self._labels_json(message)

    def messages_insert(self, call: Call) -> dict[str, Any]:
        return self._store(call, default_source="receivedTime")

    def messages_import(self, call: Call) -> dict[str, Any]:
        return self._store(call, default_source="dateHeader")

    # ---------------------------------------------------------------- changes

    def _modify_body(self, call: Call) -> tuple[dict[str, Any], list[str], list[str]]:
        body = _json_body(call.request)
        add, remove = _string_list(body, "addLabelIds"), _string_list(body, "removeLabelIds")
        self._check_labels(call.mailbox, add + remove)
        return body, add, remove

    def messages_modify(self, call: Call) -> dict[str, Any]:
        message = self._message(call, call.ids[0])
        _, add, remove = self._modify_body(call)
        return self._labels_json(call.mailbox.modify(message.id, add, remove))

    def _ids(self, body: Mapping[str, Any]) -> list[str]:
        ids = _string_list(body, "ids")
        if len(ids) > MAX_BATCH_IDS:
            raise api_errors.invalid_argument(f"Number of ids cannot exceed {MAX_BATCH_IDS}")
        return ids

    def messages_batch_modify(self, call: Call) -> None:
        body, add, remove = self._modify_body(call)
        for message_id in self._ids(body):
            if message_id in call.mailbox.messages:
                call.mailbox.modify(message_id, add, remove)

    def messages_batch_delete(self, call: Call) -> None:
        for message_id in self._ids(_json_body(call.request)):
            if message_id in call.mailbox.messages:
                call.mailbox.delete(message_id)

    def messages_trash(self, call: Call) -> dict[str, Any]:
        message = self._message(call, call.ids[0])
        return self._labels_json(call.mailbox.modify(message.id, ["TRASH"], ["SPAM"]))

    def messages_untrash(self, call: Call) -> dict[str, Any]:
        message = self._message(call, call.ids[0])
        return self._labels_json(call.mailbox.modify(message.id, [], ["TRASH"]))

    def messages_delete(self, call: Call) -> None:
        message = self._message(call, call.ids[0])
        call.mailbox.delete(message.id)

    # ----------------------------------------------------------------- threads

    def _thread(self, call: Call) -> list[StoredMessage]:
        thread_id = call.ids[0]
        if not is_message_id(thread_id):
            raise api_errors.invalid_argument("Invalid id value", location="id")
        messages = call.mailbox.thread_messages(thread_id)
        if not messages:
            raise api_errors.not_found()
        return messages

    def threads_list(self, call: Call) -> dict[str, Any]:
        mailbox = call.mailbox
        label_ids, parsed, include = self._selection(call)
        limit = _max_results(call.request.query)
        token = _one(call.request.query, "pageToken")
        after_key = _parse_page_token(token) if token else None
        seen: set[str] = set()
        found: list[tuple[str, StoredMessage]] = []
        more = False
        for message in self._scan(mailbox, parsed, after_key):
            if message.thread_id in seen or not self._selected(message, label_ids, parsed, include):
                continue
            seen.add(message.thread_id)
            if after_key is not None and any(
                other.key <= after_key and self._selected(other, label_ids, parsed, include)
                for other in mailbox.thread_messages(message.thread_id)
            ):
                continue  # listed on an earlier page
            if len(found) == limit:
                more = True
                break
            found.append((message.thread_id, message))
        body: dict[str, Any] = {}
        if found:
            threads = []
            for thread_id, newest in found:
                members = mailbox.thread_messages(thread_id)
                threads.append(
                    {
                        "id": thread_id,
                        "snippet": mailbox.snippet(newest),
                        "historyId": str(max(member.history_id for member in members)),
                    }
                )
            body["threads"] = threads
        if more:
            body["nextPageToken"] = _page_token(found[-1][1].key)
        if parsed is None and not label_ids and include:
            body["resultSizeEstimate"] = len(mailbox.threads)
        else:
            body["resultSizeEstimate"] = len(
                {
                    message.thread_id
                    for message in self._scan(mailbox, parsed)
                    if self._selected(message, label_ids, parsed, include)
                }
            )
        return body

    def _thread_json(self, call: Call, messages: list[StoredMessage], *, formatted: bool) -> dict[str, Any]:
        if formatted:
            fmt, only = self._format(call)
            items = [self.message_json(call.mailbox, message, fmt, only) for message in messages]
        else:
            items = [self._labels_json(message) for message in messages]
        return {
            "id": messages[0].thread_id,
            "historyId": str(max(message.history_id for message in messages)),
            "messages": items,
        }

    def threads_get(self, call: Call) -> dict[str, Any]:
        return self._thread_json(call, self._thread(call), formatted=True)

    def threads_modify(self, call: Call) -> dict[str, Any]:
        messages = self._thread(call)
        _, add, remove = self._modify_body(call)
        for message in messages:
            call.mailbox.modify(message.id, add, remove)
        return self._thread_json(call, messages, formatted=False)

    def threads_trash(self, call: Call) -> dict[str, Any]:
        messages = self._thread(call)
        for message in messages:
            call.mailbox.modify(message.id, ["TRASH"], ["SPAM"])
        return self._thread_json(call, messages, formatted=False)

    def threads_untrash(self, call: Call) -> dict[str, Any]:
        messages = self._thread(call)
        for message in messages:
            call.mailbox.modify(message.id, [], ["TRASH"])
        return self._thread_json(call, messages, formatted=False)

    def threads_delete(self, call: Call) -> None:
        for message in self._thread(call):
            call.mailbox.delete(message.id)

    # ----------------------------------------------------------------- history

    def history_list(self, call: Call) -> dict[str, Any]:
        query = call.request.query
        start_value = _one(query, "startHistoryId")
        if start_value is None:
            raise api_errors.required("startHistoryId")
        if not start_value.isdigit():
            raise api_errors.invalid_value("startHistoryId", "TYPE_UINT64", start_value)
        types_wanted = query.get("historyTypes")
        if types_wanted:
            for value in types_wanted:
                if value not in {"messageAdded", "messageDeleted", "labelAdded", "labelRemoved"}:
                    raise api_errors.invalid_value("historyTypes", "TYPE_ENUM", value)
        types = frozenset(types_wanted) if types_wanted else None
        label_id = _one(query, "labelId")
        limit = _max_results(query)
        token = _one(query, "pageToken")
        start = int(start_value)
        if token:
            if not token.isdigit():
                raise api_errors.invalid_argument("Invalid pageToken", location="pageToken")
            start = max(start, int(token))
        mailbox = call.mailbox
        records: list[HistoryRecord] = []
        more = False
        try:
            for record in mailbox.history_after(start):
                if types is not None and not any(kind in types for kind in record.types()):
                    continue
                if label_id is not None and not record.touches(label_id):
                    continue
                if len(records) == limit:
                    more = True
                    break
                records.append(record)
        except HistoryExpired:
            raise api_errors.not_found() from None
        body: dict[str, Any] = {}
        if records:
            body["history"] = [record.to_json(types) for record in records]
        if more:
            body["nextPageToken"] = str(records[-1].id)
        body["historyId"] = str(mailbox.history_id)
        return body


def _utc(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
