"""Shapes of the Gmail API as mailray uses them (decoded from the API's JSON by mail.gmail)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

HistoryType = Literal["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"]


class TokenSet(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str | None
    expires_at: datetime  # timezone-aware
    scopes: list[str] = msgspec.field(default_factory=list)


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    email_address: str
    messages_total: int
    threads_total: int
    history_id: int


class Label(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    type: Literal["system", "user"] = "user"
    messages_total: int | None = None
    messages_unread: int | None = None


class MessageRef(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    thread_id: str


class MessagePage(msgspec.Struct, frozen=True, kw_only=True):
    messages: list[MessageRef]
    next_page_token: str | None
    result_size_estimate: int = 0


class GmailMessage(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    thread_id: str
    label_ids: list[str]
    history_id: int
    internal_date_ms: int
    size_estimate: int
    snippet: str = ""
    raw: bytes | None = None  # decoded from base64url when fetched with format=raw


class MessageFetchError(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a batch that could not be fetched (e.g. deleted meanwhile: status 404)."""

    id: str
    status: int
    reason: str


class HistoryChange(msgspec.Struct, frozen=True, kw_only=True):
    kind: HistoryType
    message: MessageRef
    label_ids: list[str] = msgspec.field(
        default_factory=list
    )  # labels added/removed, or the message's labels


class HistoryRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    changes: list[HistoryChange]


class HistoryPage(msgspec.Struct, frozen=True, kw_only=True):
    records: list[HistoryRecord]
    next_page_token: str | None
    history_id: int  # the mailbox's current history id


class WatchResponse(msgspec.Struct, frozen=True, kw_only=True):
    history_id: int
    expiration_ms: int


class PushNotification(msgspec.Struct, frozen=True, kw_only=True):
    """The decoded `data` of a Pub/Sub push envelope from Gmail."""

    email_address: str = msgspec.field(name="emailAddress")
    history_id: int = msgspec.field(name="historyId")
