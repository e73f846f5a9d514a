"""Gmail's JSON answers, decoded with msgspec and converted into the shapes of models.gmail.

The wire Structs mirror the discovery document's schemas (camelCase names; uint64/int64 fields
such as historyId and internalDate are strings of digits; `raw` and attachment `data` are
base64url, usually without padding). They stay private to mail.gmail: callers see models.gmail.
"""

from __future__ import annotations

import base64
from typing import Any, TypeVar, cast

import msgspec

from mail.errors import TransientError
from models.gmail import (
    GmailMessage,
    HistoryChange,
    HistoryPage,
    HistoryRecord,
    HistoryType,
    Label,
    MessagePage,
    MessageRef,
    Profile,
    WatchResponse,
)

# Gmail writes uint64/int64 as strings of digits; a number is accepted as well.
Digits = str | int


class _Wire(msgspec.Struct, rename="camel", kw_only=True):
    """Gmail JSON: camelCase names, unknown fields ignored (the API adds fields over time)."""


class _Profile(_Wire):
    email_address: str
    history_id: Digits
    messages_total: int = 0
    threads_total: int = 0


class _Label(_Wire):
    id: str
    name: str
    type: str = "user"
    messages_total: int | None = None
    messages_unread: int | None = None


class _Labels(_Wire):
    labels: list[_Label] = msgspec.field(default_factory=list)


class _Message(_Wire):
    id: str
    thread_id: str = ""
    label_ids: list[str] = msgspec.field(default_factory=list)
    history_id: Digits = "0"
    internal_date: Digits = "0"
    size_estimate: int = 0
    snippet: str = ""
    raw: str | None = None


class _MessageList(_Wire):
    messages: list[_Message] = msgspec.field(default_factory=list)
    next_page_token: str | None = None
    result_size_estimate: int = 0


class _LabelChange(_Wire):
    message: _Message
    label_ids: list[str] = msgspec.field(default_factory=list)


class _MessageChange(_Wire):
    message: _Message


class _History(_Wire):
    id: Digits
    messages_added: list[_MessageChange] = msgspec.field(default_factory=list)
    messages_deleted: list[_MessageChange] = msgspec.field(default_factory=list)
    labels_added: list[_LabelChange] = msgspec.field(default_factory=list)
    labels_removed: list[_LabelChange] = msgspec.field(default_factory=list)


class _HistoryList(_Wire):
    history: list[_History] = msgspec.field(default_factory=list)
    next_page_token: str | None = None
    history_id: Digits = "0"


class _Watch(_Wire):
    history_id: Digits
    expiration: Digits = "0"


class _Attachment(_Wire):
    data: str = ""
    size: int = 0
    attachment_id: str | None = None


_T = TypeVar("_T")
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {
    wire: msgspec.json.Decoder(wire)
    for wire in (_Profile, _Labels, _Message, _MessageList, _HistoryList, _Watch, _Attachment)
}


def _decode(wire: type[_T], body: bytes, what: str) -> _T:
    try:
        return cast(_T, _DECODERS[wire].decode(body))
    except msgspec.DecodeError as exc:
        # A 2xx answer we cannot read is the server's fault, and worth another try.
        raise TransientError(f"Gmail {what}: unreadable response: {exc}") from exc


def _int(digits: Digits, what: str) -> int:
    if isinstance(digits, int):
        return digits
    try:
        return int(digits)
    except ValueError as exc:
        raise TransientError(f"Gmail: {what} is not a number: {digits[:40]!r}") from exc


def decode_base64url(data: str) -> bytes:
    """base64url with or without padding, as Gmail sends `raw` and attachment data."""
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except ValueError as exc:
        raise TransientError(f"Gmail: bad base64url data: {exc}") from exc


def encode_base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _ref(message: _Message) -> MessageRef:
    return MessageRef(id=message.id, thread_id=message.thread_id)


def profile(body: bytes) -> Profile:
    wire = _decode(_Profile, body, "users.getProfile")
    return Profile(
        email_address=wire.email_address,
        messages_total=wire.messages_total,
        threads_total=wire.threads_total,
        history_id=_int(wire.history_id, "historyId"),
    )


def labels(body: bytes) -> list[Label]:
    return [
        Label(
            id=label.id,
            name=label.name,
            type="system" if label.type == "system" else "user",
            messages_total=label.messages_total,
            messages_unread=label.messages_unread,
        )
        for label in _decode(_Labels, body, "users.labels.list").labels
    ]


def message_page(body: bytes) -> MessagePage:
    wire = _decode(_MessageList, body, "users.messages.list")
    return MessagePage(
        messages=[_ref(message) for message in wire.messages],
        next_page_token=wire.next_page_token or None,
        result_size_estimate=wire.result_size_estimate,
    )


def message(body: bytes) -> GmailMessage:
    wire = _decode(_Message, body, "users.messages.get")
    return GmailMessage(
        id=wire.id,
        thread_id=wire.thread_id,
        label_ids=wire.label_ids,
        history_id=_int(wire.history_id, "historyId"),
        internal_date_ms=_int(wire.internal_date, "internalDate"),
        size_estimate=wire.size_estimate,
        snippet=wire.snippet,
        raw=None if wire.raw is None else decode_base64url(wire.raw),
    )


def message_ref(body: bytes) -> MessageRef:
    return _ref(_decode(_Message, body, "users.messages.send"))


def _changes(record: _History) -> list[HistoryChange]:
    changes: list[HistoryChange] = []
    kinds: tuple[tuple[HistoryType, list[_MessageChange]], ...] = (
        ("messageAdded", record.messages_added),
        ("messageDeleted", record.messages_deleted),
    )
    for kind, added_or_deleted in kinds:
        changes += (
            HistoryChange(kind=kind, message=_ref(change.message), label_ids=change.message.label_ids)
            for change in added_or_deleted
        )
    label_kinds: tuple[tuple[HistoryType, list[_LabelChange]], ...] = (
        ("labelAdded", record.labels_added),
        ("labelRemoved", record.labels_removed),
    )
    for kind, label_changes in label_kinds:
        changes += (
            HistoryChange(kind=kind, message=_ref(change.message), label_ids=change.label_ids)
            for change in label_changes
        )
    return changes


def history_page(body: bytes) -> HistoryPage:
    wire = _decode(_HistoryList, body, "users.history.list")
    return HistoryPage(
        records=[
            HistoryRecord(id=_int(record.id, "history id"), changes=_changes(record))
            for record in wire.history
        ],
        next_page_token=wire.next_page_token or None,
        history_id=_int(wire.history_id, "historyId"),
    )


def watch_response(body: bytes) -> WatchResponse:
    wire = _decode(_Watch, body, "users.watch")
    return WatchResponse(
        history_id=_int(wire.history_id, "historyId"),
        expiration_ms=_int(wire.expiration, "expiration"),
    )


def attachment_data(body: bytes) -> bytes:
    return decode_base64url(_decode(_Attachment, body, "users.messages.attachments.get").data)
