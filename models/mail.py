"""A raw RFC 822 message as mailray reads it (mail.mime.parse_message)."""

from __future__ import annotations

from datetime import datetime

import msgspec


class Address(msgspec.Struct, frozen=True, kw_only=True):
    email: str  # as written; compare with .lower()
    name: str | None = None


class ParsedAttachment(msgspec.Struct, frozen=True, kw_only=True):
    part_id: str  # position in the MIME tree, e.g. "1.2" (Gmail's partId shape)
    filename: str
    content_type: str
    size: int
    sha256: bytes  # of the decoded content
    content_id: str | None = None
    is_inline: bool = False
    content: bytes = b""  # decoded; callers store it encrypted, never in plaintext


class ParsedMessage(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str | None  # without angle brackets
    in_reply_to: str | None  # without angle brackets
    references: list[str]  # without angle brackets, in header order
    subject: str
    from_address: Address | None
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    reply_to: list[Address]
    date: datetime | None  # the Date header, timezone-aware; None when absent or unreadable
    text_body: str | None
    html_body: str | None
    snippet: str  # about 200 characters of visible text, whitespace folded
    attachments: list[ParsedAttachment]
    raw_size: int
    # Everything that went wrong while reading; the message is still stored, with these.
    parse_errors: list[str] = msgspec.field(default_factory=list)
