"""The `q` parameter of users.messages.list and users.threads.list: a subset of Gmail's search.

Supported (terms are ANDed; a leading `-` negates one):
    after:/before:/newer:/older:  epoch seconds, or YYYY/MM/DD (midnight PST, UTC-8, as Gmail documents)
    newer_than:/older_than:       Nd, Nm (months), Ny
    in:inbox|sent|draft|spam|trash|starred|important|unread|anywhere   label:NAME-or-ID
    is:unread|read|starred|important   category:primary|social|promotions|updates|forums
    from: to: cc: bcc: subject: rfc822msgid: (header contains, case-insensitive)
    has:attachment   larger:/smaller: (bytes, or with K/M)   "free text" (in the raw message)
Not supported: OR, braces, parentheses (a ValueError names the term).
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cluster.emulators.gmail import mime
from cluster.emulators.gmail.mailbox import Mailbox, StoredMessage

_PST = timezone(timedelta(hours=-8))
_DATE_RE = re.compile(r"^(\d{4})[/-](\d{1,2})[/-](\d{1,2})$")
_RELATIVE_RE = re.compile(r"^(\d+)([dmy])$")
_SIZE_RE = re.compile(r"^(\d+)([kKmM]?)$")
_IN_LABELS = {
    "inbox": "INBOX",
    "sent": "SENT",
    "draft": "DRAFT",
    "drafts": "DRAFT",
    "spam": "SPAM",
    "trash": "TRASH",
    "starred": "STARRED",
    "important": "IMPORTANT",
    "unread": "UNREAD",
    "chats": "CHAT",
}
_CATEGORIES = {
    "primary": "CATEGORY_PERSONAL",
    "personal": "CATEGORY_PERSONAL",
    "social": "CATEGORY_SOCIAL",
    "promotions": "CATEGORY_PROMOTIONS",
    "updates": "CATEGORY_UPDATES",
    "forums": "CATEGORY_FORUMS",
}
_HEADER_TERMS = {"from", "to", "cc", "bcc", "subject", "rfc822msgid"}

Predicate = Callable[[StoredMessage], bool]


@dataclass
class Query:
    newer_than_ms: int | None = None  # internalDate >= this
    older_than_ms: int | None = None  # internalDate < this
    predicates: list[Predicate] = field(default_factory=list)
    mentions_spam_trash: bool = False  # in:spam, in:trash, in:anywhere, label:spam ... lift the default

    def matches(self, message: StoredMessage) -> bool:
        if self.newer_than_ms is not None and message.internal_date < self.newer_than_ms:
            return False
        if self.older_than_ms is not None and message.internal_date >= self.older_than_ms:
            return False
        return all(predicate(message) for predicate in self.predicates)


def _date_ms(value: str) -> int:
    if value.isdigit():
        return int(value) * 1000
    found = _DATE_RE.match(value)
    if found is None:
        raise ValueError(f"not a date: {value!r} (epoch seconds or YYYY/MM/DD)")
    year, month, day = (int(part) for part in found.groups())
    return int(datetime(year, month, day, tzinfo=_PST).timestamp() * 1000)


def _relative_ms(value: str, now_ms: int) -> int:
    found = _RELATIVE_RE.match(value.lower())
    if found is None:
        raise ValueError(f"not a period: {value!r} (like 2d, 3m, 1y)")
    amount, unit = int(found.group(1)), found.group(2)
    days = {"d": 1, "m": 30, "y": 365}[unit] * amount
    return now_ms - days * 86_400_000


def _size(value: str) -> int:
    found = _SIZE_RE.match(value)
    if found is None:
        raise ValueError(f"not a size: {value!r}")
    return int(found.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[found.group(2).lower()]


def _has_label(label_id: str) -> Predicate:
    return lambda message: label_id in message.label_ids


def parse_query(q: str, mailbox: Mailbox, *, now_ms: int | None = None) -> Query:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    query = Query()
    try:
        terms = shlex.split(q)
    except ValueError as error:
        raise ValueError(f"unbalanced quotes in q: {error}") from None
    for term in terms:
        negate = term.startswith("-") and len(term) > 1
        if negate:
            term = term[1:]
        operator, colon, value = term.partition(":")
        operator = operator.lower() if colon else ""
        predicate: Predicate | None = None
        if operator in {"after", "newer"} and not negate:
            stamp = _date_ms(value)
            query.newer_than_ms = max(stamp, query.newer_than_ms or stamp)
        elif operator in {"before", "older"} and not negate:
            stamp = _date_ms(value)
            query.older_than_ms = min(stamp, query.older_than_ms or stamp)
        elif operator == "newer_than" and not negate:
            stamp = _relative_ms(value, now_ms)
            query.newer_than_ms = max(stamp, query.newer_than_ms or stamp)
        elif operator == "older_than" and not negate:
            stamp = _relative_ms(value, now_ms)
            query.older_than_ms = min(stamp, query.older_than_ms or stamp)
        elif operator in {"after", "before", "newer", "older", "newer_than", "older_than"}:
            raise ValueError(f"negated date terms are not supported: -{term}")
        elif operator == "in" and value.lower() == "anywhere":
            query.mentions_spam_trash = True
            continue
        elif operator in {"in", "is"}:
            wanted = value.lower()
            if operator == "is" and wanted == "read":
                predicate, negate = _has_label("UNREAD"), not negate
            elif wanted in _IN_LABELS:
                predicate = _has_label(_IN_LABELS[wanted])
                query.mentions_spam_trash |= wanted in {"spam", "trash"}
            else:
                raise ValueError(f"unknown {operator}: value {value!r}")
        elif operator == "label":
            label = mailbox.labels.get(value.upper()) or mailbox.labels.get(value)
            label = label or mailbox.label_named(value) or mailbox.label_named(value.replace("-", " "))
            # An unknown label matches nothing, as in Gmail.
            predicate = _has_label(label.id) if label is not None else (lambda message: False)
            query.mentions_spam_trash |= label is not None and label.id in {"SPAM", "TRASH"}
        elif operator == "category":
            if value.lower() not in _CATEGORIES:
                raise ValueError(f"unknown category: {value!r}")
            predicate = _has_label(_CATEGORIES[value.lower()])
        elif operator == "has" and value.lower() == "attachment":
            predicate = lambda message: mime.has_attachment(mailbox.parsed(message))  # noqa: E731
        elif operator in {"larger", "smaller"}:
            predicate = _size_check(_size(value), larger=operator == "larger")
        elif operator in _HEADER_TERMS:
            predicate = _header_contains(mailbox, operator, value)
        elif operator and operator.isidentifier() and value:
            raise ValueError(f"unsupported search operator: {operator}:")
        else:
            predicate = _text_check(term.lower().encode("utf-8"))
        if predicate is None:
            continue
        if negate:
            query.predicates.append(_negated(predicate))
        else:
            query.predicates.append(predicate)
    return query


def _negated(predicate: Predicate) -> Predicate:
    return lambda message: not predicate(message)


def _size_check(size: int, *, larger: bool) -> Predicate:
    if larger:
        return lambda message: len(message.raw) > size
    return lambda message: len(message.raw) < size


def _text_check(needle: bytes) -> Predicate:
    return lambda message: needle in message.raw.lower()


def _header_contains(mailbox: Mailbox, name: str, value: str) -> Predicate:
    header = "message-id" if name == "rfc822msgid" else name
    needle = value.lower().strip("<>")

    def check(message: StoredMessage) -> bool:
        return needle in mime.header_text(mailbox.parsed(message), header).lower()

    return check
