"""One user's mailbox: messages (raw bytes kept as given), labels, threads and the history log.

Messages are indexed by id and kept in a sorted list of (-internalDate, -seq), newest first, so
list and page tokens cost a bisection, not a scan. Every change appends a history record with the
next history id; the log keeps `retention` records, and a cursor older than the oldest kept one
is answered 404 (the client must do a full sync).
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from cluster.emulators.gmail import mime
from cluster.emulators.gmail.encoding import b64url
from cluster.emulators.gmail.labels import SPAM_TRASH, Label, system_labels
from cluster.emulators.gmail.threads import ThreadIndex

# Gmail message ids are 16 hex digits; each mailbox gets its own range so ids differ across users.
_ID_BASE = 0x1900_0000_0000_0000
FIRST_HISTORY_ID = 1000

SortKey = tuple[int, int]


def is_message_id(value: str) -> bool:
    """Whether `value` is shaped like a Gmail message id (hex); Gmail answers 400 otherwise."""
    if not value or len(value) > 16:
        return False
    try:
        int(value, 16)
    except ValueError:
        return False
    return True


@dataclass(slots=True, eq=False)
class StoredMessage:
    id: str
    seq: int
    thread_id: str
    raw: bytes
    label_ids: list[str]
    internal_date: int  # epoch ms
    history_id: int
    header_id: str | None  # the RFC 822 Message-ID
    snippet: str | None = None
    _raw_b64: str | None = None

    @property
    def key(self) -> SortKey:
        return (-self.internal_date, -self.seq)

    @property
    def raw_b64(self) -> str:
        """format=raw's `raw` (padded base64url, as Gmail writes it), encoded once."""
        if self._raw_b64 is None:
            self._raw_b64 = b64url(self.raw, pad=True)
        return self._raw_b64

    def ref(self) -> dict[str, Any]:
        return {"id": self.id, "threadId": self.thread_id}

    def ref_with_labels(self) -> dict[str, Any]:
        return {"id": self.id, "threadId": self.thread_id, "labelIds": list(self.label_ids)}


@dataclass(slots=True, frozen=True)
class HistoryRecord:
    id: int
    kind: str  # "messageAdded" | "messageDeleted" | "labelChanged"
    message_id: str
    thread_id: str
    label_ids: tuple[str, ...]  # the message's labels after the change (before, for a deletion)
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def types(self) -> tuple[str, ...]:
        if self.kind != "labelChanged":
            return (self.kind,)
        return (("labelAdded",) if self.added else ()) + (("labelRemoved",) if self.removed else ())

    def touches(self, label_id: str) -> bool:
        return label_id in self.label_ids or label_id in self.added or label_id in self.removed

    def to_json(self, types: frozenset[str] | None = None) -> dict[str, Any]:
        message = {"id": self.message_id, "threadId": self.thread_id}
        with_labels = {**message, "labelIds": list(self.label_ids)}
        record: dict[str, Any] = {"id": str(self.id), "messages": [message]}
        if self.kind == "messageAdded":
            record["messagesAdded"] = [{"message": with_labels}]
        elif self.kind == "messageDeleted":
            record["messagesDeleted"] = [{"message": with_labels}]
        else:
            if self.added and (types is None or "labelAdded" in types):
                record["labelsAdded"] = [{"message": with_labels, "labelIds": list(self.added)}]
            if self.removed and (types is None or "labelRemoved" in types):
                record["labelsRemoved"] = [{"message": with_labels, "labelIds": list(self.removed)}]
        return record


class HistoryExpired(Exception):
    """startHistoryId is older than the oldest record kept."""


@dataclass(slots=True)
class _ParsedCache:
    """The last few parsed messages (format=full of a batch asks for the same message's parts)."""

    limit: int = 256
    entries: dict[str, Message] = field(default_factory=dict)

    def get(self, message: StoredMessage) -> Message:
        found = self.entries.pop(message.id, None)
        if found is None:
            found = mime.parse(message.raw)
            if len(self.entries) >= self.limit:
                del self.entries[next(iter(self.entries))]
        self.entries[message.id] = found
        return found

    def drop(self, message_id: str) -> None:
        self.entries.pop(message_id, None)


ChangeListener = Callable[["Mailbox", HistoryRecord], None]


class Mailbox:
    def __init__(
        self, email: str, *, retention: int = 100_000, listener: ChangeListener | None = None
    ) -> None:
        self.email = email
        self.retention = retention
        self.listener = listener
        self.messages: dict[str, StoredMessage] = {}
        self.labels: dict[str, Label] = system_labels()
        self.threads = ThreadIndex()
        self.history_id = FIRST_HISTORY_ID
        self.history: list[HistoryRecord] = []
        self.history_floor = 0  # records with id <= floor are gone
        self.label_counts: dict[str, int] = {}
        self._order: list[SortKey] = []
        self._by_seq: dict[int, StoredMessage] = {}
        self._next_seq = _ID_BASE + ((zlib.crc32(email.lower().encode()) & 0xFFFFFF) << 28)
        self._next_label = 1
        self._parsed = _ParsedCache()

    # ----------------------------------------------------------------- messages

    def next_message_id(self) -> str:
        return f"{self._next_seq:016x}"

    def add(
        self,
        raw: bytes,
        label_ids: Sequence[str],
        internal_date_ms: int,
        *,
        thread_id: str | None = None,
        snippet: str | None = None,
        info: mime.HeaderInfo | None = None,
    ) -> StoredMessage:
        info = info or mime.header_info(raw)
        seq = self._next_seq
        self._next_seq += 1
        message_id = f"{seq:016x}"
        thread = self.threads.thread_for(info.parent_ids, thread_id) or message_id
        labels = list(dict.fromkeys(label_ids))
        message = StoredMessage(
            id=message_id,
            seq=seq,
            thread_id=thread,
            raw=raw,
            label_ids=labels,
            internal_date=internal_date_ms,
            history_id=0,
            header_id=info.message_id,
            snippet=snippet,
        )
        self.messages[message_id] = message
        self._by_seq[seq] = message
        bisect.insort(self._order, message.key)
        self.threads.add(message_id, thread, info.message_id)
        for label in labels:
            self.label_counts[label] = self.label_counts.get(label, 0) + 1
        self._record(message, "messageAdded")
        return message

    def delete(self, message_id: str) -> StoredMessage:
        message = self.messages.pop(message_id)
        del self._by_seq[message.seq]
        index = bisect.bisect_left(self._order, message.key)
        del self._order[index]
        self.threads.remove(message_id, message.thread_id)
        for label in message.label_ids:
            self.label_counts[label] -= 1
        self._parsed.drop(message_id)
        self._record(message, "messageDeleted")
        return message

    def modify(self, message_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> StoredMessage:
        """Add and remove labels; a change that changes nothing records nothing (as Gmail)."""
        message = self.messages[message_id]
        removing = set(remove)
        added = tuple(label for label in dict.fromkeys(add) if label not in message.label_ids)
        removed = tuple(label for label in message.label_ids if label in removing and label not in added)
        if not added and not removed:
            return message
        message.label_ids = [label for label in message.label_ids if label not in removed] + list(added)
        for label in added:
            self.label_counts[label] = self.label_counts.get(label, 0) + 1
        for label in removed:
            self.label_counts[label] -= 1
        self._record(message, "labelChanged", added, removed)
        return message

    def get(self, message_id: str) -> StoredMessage | None:
        return self.messages.get(message_id)

    def parsed(self, message: StoredMessage) -> Message:
        return self._parsed.get(message)

    def snippet(self, message: StoredMessage) -> str:
        if message.snippet is None:
            message.snippet = mime.snippet_of(self.parsed(message))
        return message.snippet

    def iter_newest_first(
        self,
        *,
        after_key: SortKey | None = None,
        newer_than_ms: int | None = None,
        older_than_ms: int | None = None,
    ) -> Iterator[StoredMessage]:
        """Messages newest first, starting after `after_key` (a page token), within
        [newer_than_ms, older_than_ms) of internalDate when given."""
        start = 0
        if older_than_ms is not None:
            start = bisect.bisect_right(self._order, (-older_than_ms, 0))
        if after_key is not None:
            start = max(start, bisect.bisect_right(self._order, after_key))
        end = len(self._order)
        if newer_than_ms is not None:
            end = bisect.bisect_right(self._order, (-newer_than_ms, 0))
        by_seq = self._by_seq
        order = self._order
        for index in range(start, min(end, len(order))):
            yield by_seq[-order[index][1]]

    def thread_messages(self, thread_id: str) -> list[StoredMessage]:
        """The thread's messages, oldest first (by internalDate, as Gmail shows them)."""
        found = [self.messages[message_id] for message_id in self.threads.members(thread_id)]
        found.sort(key=lambda message: (message.internal_date, message.seq))
        return found

    def visible_total(self) -> int:
        return len(self.messages) - sum(self.label_counts.get(label, 0) for label in SPAM_TRASH)

    # ------------------------------------------------------------------- labels

    def create_label(
        self,
        name: str,
        *,
        message_list_visibility: str | None = "show",
        label_list_visibility: str | None = "labelShow",
        color: dict[str, str] | None = None,
    ) -> Label:
        label_id = f"Label_{self._next_label}"
        self._next_label += 1
        label = Label(
            id=label_id,
            name=name,
            type="user",
            message_list_visibility=message_list_visibility,
            label_list_visibility=label_list_visibility,
            color=color,
        )
        self.labels[label_id] = label
        return label

    def label_named(self, name: str) -> Label | None:
        wanted = name.lower()
        for label in self.labels.values():
            if label.name.lower() == wanted:
                return label
        return None

    def delete_label(self, label_id: str) -> None:
        for message in list(self.messages.values()):
            if label_id in message.label_ids:
                self.modify(message.id, remove=[label_id])
        del self.labels[label_id]
        self.label_counts.pop(label_id, None)

    def label_stats(self, label_id: str) -> dict[str, int]:
        total = unread = 0
        threads: set[str] = set()
        unread_threads: set[str] = set()
        for message in self.messages.values():
            if label_id in message.label_ids:
                total += 1
                threads.add(message.thread_id)
                if "UNREAD" in message.label_ids:
                    unread += 1
                    unread_threads.add(message.thread_id)
        return {
            "messagesTotal": total,
            "messagesUnread": unread,
            "threadsTotal": len(threads),
            "threadsUnread": len(unread_threads),
        }

    # ------------------------------------------------------------------ history

    def _record(
        self, message: StoredMessage, kind: str, added: tuple[str, ...] = (), removed: tuple[str, ...] = ()
    ) -> None:
        self.history_id += 1
        record = HistoryRecord(
            id=self.history_id,
            kind=kind,
            message_id=message.id,
            thread_id=message.thread_id,
            label_ids=tuple(message.label_ids),
            added=added,
            removed=removed,
        )
        message.history_id = self.history_id
        self.history.append(record)
        excess = len(self.history) - self.retention
        if excess > 0:
            self.history_floor = self.history[excess - 1].id
            del self.history[:excess]
        if self.listener is not None:
            self.listener(self, record)

    def expire_history(self) -> None:
        """Drop every kept record: any cursor older than the current history id answers 404."""
        self.history.clear()
        self.history_floor = self.history_id

    def history_after(self, start_history_id: int) -> Iterator[HistoryRecord]:
        """Records with an id above `start_history_id`; HistoryExpired if some were dropped."""
        if start_history_id < self.history_floor:
            raise HistoryExpired(str(start_history_id))
        index = bisect.bisect_right(self.history, start_history_id, key=lambda record: record.id)
        history = self.history
        for position in range(index, len(history)):
            yield history[position]
