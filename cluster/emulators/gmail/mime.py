"""What the Gmail API derives from a message's raw bytes: headers for threading and dates, the
`payload` tree of format=full, the snippet, attachments.

Parsing uses `email` with policy.compat32 (about 8x faster than policy.default); raw bytes are
never rewritten, so format=raw always returns exactly what was stored.
"""

from __future__ import annotations

import contextlib
import email
import email.utils
import re
from collections.abc import Iterator
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from typing import Any

import msgspec
from selectolax.lexbor import LexborHTMLParser

from cluster.emulators.gmail.encoding import b64url

SNIPPET_CHARS = 200

_ID_RE = re.compile(rb"<([^<>\s]+)>")
_HEADER_LINE_RE = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)
_FOLD_RE = re.compile(r"\r?\n(?=[ \t])")
_SPACE_RE = re.compile(r"\s+")
_ADDRESS_RE = re.compile(r"[^\s<>,;:@\"]+@[^\s<>,;:@\"]+")


class HeaderInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The few headers the emulator needs at insert time (threading, internalDate, recipients)."""

    message_id: str | None
    parent_ids: tuple[str, ...]  # In-Reply-To, then References from the newest back
    date_ms: int | None
    has_recipients: bool
    has_date: bool
    has_from: bool


def header_block(raw: bytes) -> bytes:
    """The bytes before the first empty line (all of `raw` when there is none)."""
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n")
    ends = [end for end in (crlf, lf) if end >= 0]
    return raw[: min(ends)] if ends else raw


def _unfolded_headers(block: bytes) -> dict[bytes, bytes]:
    """Lower-cased name -> first value, folded lines joined. Fast: no email.parser."""
    found: dict[bytes, bytes] = {}
    name: bytes | None = None
    value: list[bytes] = []
    for line in block.splitlines():
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value.append(line.strip())
            continue
        if name is not None and name not in found:
            found[name] = b" ".join(value)
        head, colon, rest = line.partition(b":")
        if colon and head and b" " not in head.strip():
            name, value = head.strip().lower(), [rest.strip()]
        else:
            name, value = None, []
    if name is not None and name not in found:
        found[name] = b" ".join(value)
    return found


def header_info(raw: bytes) -> HeaderInfo:
    headers = _unfolded_headers(header_block(raw))
    message_ids = _ID_RE.findall(headers.get(b"message-id", b""))
    message_id = message_ids[0].decode("ascii", "replace") if message_ids else None
    parents: list[str] = []
    for found in _ID_RE.findall(headers.get(b"in-reply-to", b"")):
        parents.append(found.decode("ascii", "replace"))
    for found in reversed(_ID_RE.findall(headers.get(b"references", b""))):
        text = found.decode("ascii", "replace")
        if text not in parents:
            parents.append(text)
    date_ms: int | None = None
    date = headers.get(b"date")
    if date:
        try:
            parsed = email.utils.parsedate_to_datetime(date.decode("ascii", "replace"))
            if parsed.tzinfo is not None:
                stamp = int(parsed.timestamp() * 1000)
                if 0 < stamp < 32503680000000:  # before the year 3000
                    date_ms = stamp
        except (TypeError, ValueError, IndexError, OverflowError):
            date_ms = None
    recipients = b" ".join(headers.get(name, b"") for name in (b"to", b"cc", b"bcc"))
    return HeaderInfo(
        message_id=message_id,
        parent_ids=tuple(parents),
        date_ms=date_ms,
        has_recipients=b"@" in recipients,
        has_date=b"date" in headers,
        has_from=b"from" in headers,
    )


def looks_like_message(raw: bytes) -> bool:
    """Whether `raw` starts with a header line (a README or a JSON file does not)."""
    return _HEADER_LINE_RE.match(raw[:1000]) is not None


def _clean(text: str) -> str:
    """Surrogate-escaped bytes (8-bit headers) back to text: UTF-8 if they are, else Latin-1."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogateescape")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def decode_header_value(value: str) -> str:
    """A header value as Gmail shows it: unfolded, RFC 2047 encoded-words decoded."""
    value = _FOLD_RE.sub("", _clean(str(value))).strip()
    if "=?" in value:
        with contextlib.suppress(Exception):  # a broken encoded-word: show the value as it is
            value = str(make_header(decode_header(value)))
    return value


def recipients_of(raw: bytes) -> list[str]:
    headers = _unfolded_headers(header_block(raw))
    text = b" ".join(headers.get(name, b"") for name in (b"to", b"cc", b"bcc")).decode("latin-1")
    return _ADDRESS_RE.findall(text)


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=compat32)


def _part_bytes(part: Message) -> bytes:
    """The part's content after Content-Transfer-Encoding."""
    payload = part.get_payload()
    if isinstance(payload, list):  # message/rfc822, message/delivery-status: serialise the content
        try:
            chunks = [
                item.as_bytes(policy=compat32) if isinstance(item, Message) else str(item).encode()
                for item in payload
            ]
        except Exception:
            return b""
        return b"\n".join(chunks)
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    return str(payload).encode("utf-8", "surrogateescape")


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        return ""
    return decode_header_value(str(name)) if name else ""


def _children(part: Message) -> list[Message]:
    if part.get_content_maintype() != "multipart":
        return []
    payload = part.get_payload()
    return [child for child in payload if isinstance(child, Message)] if isinstance(payload, list) else []


def iter_parts(message: Message) -> Iterator[tuple[str, Message]]:
    """(partId, part) depth-first; partIds as Gmail numbers them: "", "0", "1", "1.0", ..."""
    stack: list[tuple[str, Message]] = [("", message)]
    while stack:
        part_id, part = stack.pop()
        yield part_id, part
        children = _children(part)
        for index in range(len(children) - 1, -1, -1):
            stack.append((f"{part_id}.{index}" if part_id else str(index), children[index]))


def find_part(message: Message, part_id: str) -> Message | None:
    for found_id, part in iter_parts(message):
        if found_id == part_id:
            return part
    return None


def headers_of(part: Message, only: set[str] | None = None) -> list[dict[str, str]]:
    headers = []
    for name, value in part.items():
        if only is not None and name.lower() not in only:
            continue
        headers.append({"name": _clean(name), "value": decode_header_value(value)})
    return headers


def payload_tree(message: Message, attachment_id: Any) -> dict[str, Any]:
    """format=full's `payload`; `attachment_id(part_id)` names a part that has a filename."""

    def build(part: Message, part_id: str) -> dict[str, Any]:
        node: dict[str, Any] = {
            "partId": part_id,
            "mimeType": part.get_content_type(),
            "filename": _filename(part),
            "headers": headers_of(part),
        }
        children = _children(part)
        if part.get_content_maintype() == "multipart":
            node["body"] = {"size": 0}
            node["parts"] = [
                build(child, f"{part_id}.{index}" if part_id else str(index))
                for index, child in enumerate(children)
            ]
            return node
        data = _part_bytes(part)
        if node["filename"]:
            node["body"] = {"attachmentId": attachment_id(part_id), "size": len(data)}
        elif data:
            node["body"] = {"size": len(data), "data": b64url(data, pad=False)}
        else:
            node["body"] = {"size": 0}
        return node

    return build(message, "")


def metadata_payload(message: Message, only: set[str] | None) -> dict[str, Any]:
    return {
        "partId": "",
        "mimeType": message.get_content_type(),
        "filename": "",
        "headers": headers_of(message, only),
        "body": {"size": 0},
    }


def _text_of(part: Message) -> str:
    data = _part_bytes(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("latin-1")


def _html_text(html: str) -> str:
    try:
        tree = LexborHTMLParser(html)
        tree.strip_tags(["script", "style", "head"])
        return tree.text(separator=" ")
    except Exception:
        return re.sub(r"<[^>]*>", " ", html)


def _escape(text: str) -> str:
    # Gmail's snippets are HTML-escaped, apostrophes as &#39;.
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def make_snippet(text: str) -> str:
    return _escape(_SPACE_RE.sub(" ", text).strip()[:SNIPPET_CHARS].rstrip())


def snippet_of(message: Message) -> str:
    html: Message | None = None
    for _, part in iter_parts(message):
        if part.get_content_maintype() == "multipart" or _filename(part):
            continue
        content_type = part.get_content_type()
        if content_type == "text/plain":
            return make_snippet(_text_of(part))
        if content_type == "text/html" and html is None:
            html = part
    return make_snippet(_html_text(_text_of(html))) if html is not None else ""


def attachment_bytes(message: Message, part_id: str) -> bytes | None:
    part = find_part(message, part_id)
    if part is None or part.get_content_maintype() == "multipart":
        return None
    return _part_bytes(part)


def has_attachment(message: Message) -> bool:
    return any(
        _filename(part) for _, part in iter_parts(message) if part.get_content_maintype() != "multipart"
    )


def header_text(message: Message, name: str) -> str:
    return " ".join(decode_header_value(value) for value in message.get_all(name) or [])
