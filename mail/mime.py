"""Read a raw RFC 822 message once: headers, bodies, attachments, snippet (models.mail).

`parse_message` never raises: whatever cannot be read is left out and said in `parse_errors`
(the caller keeps the raw bytes beside the result). The message is parsed once with the fast
compat32 policy and its headers are decoded here (mail.mime_charsets): on the SpamAssassin corpus
that reads about 4,300 messages/s on one core, policy.default reading the same fields about 950
(benchmarks/mime_parse.py).

Part ids are Gmail's partIds: "" for the message itself, "0", "1", ... for the parts of a
multipart, "1.0", ... below them; a message/rfc822 part is one attachment (not descended into),
its content the attached message written back by the compat32 generator.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import parsedate_to_datetime
from io import BytesIO
from pathlib import Path
from typing import TypeVar

from selectolax.lexbor import LexborHTMLParser

from mail.mime_charsets import (
    address,
    clean_line,
    decode_text,
    decode_words,
    in_reply_to,
    mailboxes,
    message_id,
    references,
    surrogates_to_text,
)
from models.mail import Address, ParsedAttachment, ParsedMessage

_T = TypeVar("_T")

SNIPPET_CHARS = 200
MAX_DEPTH = 64  # MIME nesting deeper than this is not walked (reported)
_FLATTEN_POLICY = compat32.clone(max_line_length=None)  # re-serialise without refolding

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTENT_TYPE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+/[a-z0-9!#$%&'*+.^_`|~-]+")
_LOOKS_HTML = re.compile(rb"<(?:html|body|head|div|p|table|br|font)\b", re.IGNORECASE)
_INVISIBLE = re.compile("[\u00ad\u034f\u200b-\u200f\u2060\ufeff]")
_NOT_VISIBLE_TAGS = ["script", "style", "head", "title", "noscript", "template"]


def read_corpus_message(path: str | Path) -> bytes:
    """A message file of the corpora as a mailbox stores it: without an mbox `From ` line."""
    raw = Path(path).read_bytes()
    if raw.startswith(b"From "):
        newline = raw.find(b"\n")
        return b"" if newline < 0 else raw[newline + 1 :]
    return raw


def parse_message(raw: bytes) -> ParsedMessage:
    """Everything mailray reads from one raw message; never raises."""
    try:
        return _Reader(bytes(raw)).read()
    except Exception as exc:  # the last resort: a message is never lost to a parser bug
        size = len(raw) if isinstance(raw, bytes | bytearray | memoryview) else 0
        return ParsedMessage(
            message_id=None, in_reply_to=None, references=[], subject="", from_address=None,
            to=[], cc=[], bcc=[], reply_to=[], date=None, text_body=None, html_body=None,
            snippet="", attachments=[], raw_size=size,
            parse_errors=[f"unreadable message: {type(exc).__name__}: {str(exc)[:200]}"],
        )  # fmt: skip


def _clean_text(value: str) -> str:
    """Body text storable as Postgres text / UTF-8: no NULs, no lone surrogates, LF line ends."""
    value = value.replace("\r\n", "\n")
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _content_type(part: Message) -> str:
    ctype = part.get_content_type()
    if _CONTENT_TYPE.fullmatch(ctype):
        return ctype
    found = _CONTENT_TYPE.match(ctype.strip())  # "text/plain\n charset=..." without the ";"
    return found.group(0) if found else "application/octet-stream"


def _fold_spaces(text: str) -> str:
    return " ".join(_INVISIBLE.sub("", text).split())


def _snippet(text: str | None, html: str | None) -> str:
    visible = ""
    if text:
        visible = _fold_spaces(text[: SNIPPET_CHARS * 20]) or _fold_spaces(text)
    if not visible and html:
        tree = LexborHTMLParser(html)
        tree.strip_tags(_NOT_VISIBLE_TAGS)
        node = tree.body or tree.root
        visible = _fold_spaces(node.text(separator=" ")) if node is not None else ""
    if len(visible) <= SNIPPET_CHARS:
        return visible
    cut = visible[:SNIPPET_CHARS]
    space = cut.rfind(" ")
    return cut[:space] if space > SNIPPET_CHARS * 3 // 4 else cut


class _Reader:
    """One message being read; collects what went wrong instead of raising."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.errors: list[str] = []
        self.text_body: str | None = None
        self.html_body: str | None = None
        self.attachments: list[ParsedAttachment] = []
        self.headers: dict[str, list[str]] = {}
        self.charset: str | None = None  # of the first text part that declares one

    def error(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)

    def read(self) -> ParsedMessage:
        try:
            msg, structure = message_from_bytes(self.raw, policy=compat32), True
        except Exception as exc:  # RecursionError: MIME nested thousands deep; MemoryError
            self.error(f"MIME structure unreadable ({type(exc).__name__}); headers only")
            msg, structure = BytesParser(policy=compat32).parsebytes(self.raw, headersonly=True), False
        for name, value in msg.raw_items():
            self.headers.setdefault(str(name).strip().lower(), []).append(str(value))
        try:
            if structure:
                self._walk(msg, "", 0)
        except Exception as exc:
            self.error(f"MIME structure: {type(exc).__name__}: {str(exc)[:200]}")
        try:
            snippet = _snippet(self.text_body, self.html_body)
        except Exception as exc:
            snippet = ""
            self.error(f"snippet: {type(exc).__name__}: {str(exc)[:200]}")
        from_addresses = self._addresses("from")
        return ParsedMessage(
            message_id=self._field("message-id", message_id),
            in_reply_to=self._field("in-reply-to", in_reply_to),
            references=self._field("references", references) or [],
            subject=self._decoded("subject"),
            from_address=from_addresses[0] if from_addresses else None,
            to=self._addresses("to"),
            cc=self._addresses("cc"),
            bcc=self._addresses("bcc"),
            reply_to=self._addresses("reply-to"),
            date=self._date(),
            text_body=self.text_body,
            html_body=self.html_body,
            snippet=snippet,
            attachments=self.attachments,
            raw_size=len(self.raw),
            parse_errors=self.errors,
        )

    # -- headers --------------------------------------------------------------------------------

    def _header(self, name: str) -> str | None:
        """The first `name` header, unfolded, 8-bit bytes read as text; not RFC 2047-decoded."""
        values = self.headers.get(name)
        return _FOLD.sub("", surrogates_to_text(values[0], self.charset)) if values else None

    def _field(self, name: str, read: Callable[[str], _T]) -> _T | None:
        value = self._header(name)
        if value is None:
            return None
        try:
            return read(clean_line(value))
        except Exception as exc:
            self.error(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
            return None

    def _words(self, name: str, value: str) -> str:
        """`value` with its encoded words decoded, on one line; problems reported under `name`."""
        problems: list[str] = []
        text = clean_line(decode_words(value, problems)).strip()
        for problem in problems:
            self.error(f"{name}: {problem}")
        return text

    def _decoded(self, name: str) -> str:
        value = self._header(name)
        return "" if value is None else self._words(name, value)

    def _addresses(self, name: str) -> list[Address]:
        values = [_FOLD.sub("", surrogates_to_text(v, self.charset)) for v in self.headers.get(name, [])]
        pairs: list[tuple[str, str]] = []
        for value in values:
            try:
                pairs.extend(mailboxes(clean_line(value)))
            except Exception as exc:
                self.error(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
        addresses = []
        for display, addr in pairs:
            problems: list[str] = []
            email = address(addr, problems)
            for problem in problems:
                self.error(f"{name}: {problem}")
            if email:
                addresses.append(Address(email=email, name=self._words(name, display) or None))
        return addresses

    def _date(self) -> datetime | None:
        value = self._header("date")
        if value is None or not value.strip():
            return None
        try:
            date = parsedate_to_datetime(clean_line(value))
        except Exception:
            self.error(f"date: unreadable {value.strip()[:80]!r}")
            return None
        # In UTC: real mail carries offsets like -1900 that Postgres (and others) refuse.
        return date.astimezone(UTC) if date.tzinfo is not None else date.replace(tzinfo=UTC)

    # -- MIME tree ------------------------------------------------------------------------------

    def _walk(self, part: Message, part_id: str, depth: int) -> None:
        ctype = _content_type(part)
        if not (ctype.startswith("multipart/") and part.is_multipart()):
            try:
                self._leaf(part, part_id, ctype)
            finally:
                self._defects(part, part_id)
            return
        self._defects(part, part_id)
        if depth >= MAX_DEPTH:
            self.error(f"{_where(part_id)}: MIME nesting deeper than {MAX_DEPTH} parts; not read")
            return
        for index, child in enumerate(part.get_payload()):
            child_id = f"{part_id}.{index}" if part_id else str(index)
            try:
                if isinstance(child, Message):
                    self._walk(child, child_id, depth + 1)
            except Exception as exc:
                self.error(f"{_where(child_id)}: {type(exc).__name__}: {str(exc)[:200]}")

    def _defects(self, part: Message, part_id: str) -> None:
        for defect in part.defects:
            self.error(f"{_where(part_id)}: {type(defect).__name__}")

    def _leaf(self, part: Message, part_id: str, ctype: str) -> None:
        if ctype.startswith("multipart/"):  # its boundary is missing or never occurs: read as text
            head = _payload_bytes(part)[:4096]
            read_as = "text/html" if _LOOKS_HTML.search(head) else "text/plain"
            self.error(f"{_where(part_id)}: {ctype} without readable parts; read as {read_as}")
            ctype = read_as
        disposition = part.get_content_disposition()
        filename = self._filename(part, part_id)
        content_id = _raw_header(part, "content-id")
        content_id = message_id(clean_line(content_id)) if content_id is not None else None
        if ctype in ("text/plain", "text/html") and disposition != "attachment":
            # The first unnamed text/plain and text/html are the bodies. A named text part is a
            # file, and the body too when no body came before it (a message that is one inline
            # "offer.html"). Further unnamed text (a list's footer) is neither, unless it has a
            # Content-ID for HTML to refer to.
            empty = self.text_body is None if ctype == "text/plain" else self.html_body is None
            if empty and not (filename and (self.text_body is not None or self.html_body is not None)):
                if ctype == "text/plain":
                    self.text_body = self._text(part, part_id)
                else:
                    self.html_body = self._text(part, part_id)
                if not filename:
                    return
            elif not filename and content_id is None:
                return
        content = self._content(part)
        self.attachments.append(
            ParsedAttachment(
                part_id=part_id,
                filename=filename,
                content_type=ctype,
                size=len(content),
                sha256=hashlib.sha256(content).digest(),
                content_id=content_id,
                is_inline=disposition == "inline" or (disposition is None and content_id is not None),
                content=content,
            )
        )

    def _filename(self, part: Message, part_id: str) -> str:
        name = part.get_filename()
        if not name:
            return ""
        return self._words(f"{_where(part_id)} filename", surrogates_to_text(str(name), self.charset))

    def _text(self, part: Message, part_id: str) -> str:
        charset = part.get_content_charset()
        self.charset = self.charset or charset
        text, problem = decode_text(_payload_bytes(part), charset)
        if problem is not None:
            self.error(f"{_where(part_id)}: {problem}")
        return _clean_text(text)

    def _content(self, part: Message) -> bytes:
        if not part.is_multipart():
            return _payload_bytes(part)
        # message/rfc822 and message/delivery-status arrive parsed: write them back as bytes.
        linesep = "\r\n" if b"\r\n" in self.raw[:4096] else "\n"
        blocks = [_flatten(block, linesep) for block in part.get_payload() if isinstance(block, Message)]
        if _content_type(part) == "message/delivery-status":
            blocks = [block.removesuffix(linesep.encode()) for block in blocks]
        content = linesep.encode().join(blocks)
        encoding = str(_raw_header(part, "content-transfer-encoding") or "").strip().lower()
        if encoding == "base64":  # not allowed for message/*, but written: decode it anyway
            return binascii.a2b_base64(content)
        if encoding == "quoted-printable":
            return binascii.a2b_qp(content)
        return content


def _where(part_id: str) -> str:
    return f"part {part_id}" if part_id else "message"


def _raw_header(part: Message, name: str) -> str | None:
    """The first `name` header of a part as written (8-bit bytes read as text), unfolded."""
    for key, value in part.raw_items():
        if str(key).strip().lower() == name:
            return _FOLD.sub("", surrogates_to_text(str(value)))
    return None


def _payload_bytes(part: Message) -> bytes:
    """A leaf part's content, its Content-Transfer-Encoding decoded."""
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _flatten(message: Message, linesep: str) -> bytes:
    """A parsed (sub)message written back as bytes; 8-bit bytes come back as they were."""
    buffer = BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False, policy=_FLATTEN_POLICY).flatten(message, linesep=linesep)
    except Exception:  # it refuses headers the parser took ("\n" + a control character): by hand
        newline = linesep.encode()
        head = b"".join(
            f"{name}: {value}".encode("utf-8", "surrogateescape") + newline
            for name, value in message.raw_items()
        )
        return head + newline + (b"" if message.is_multipart() else _payload_bytes(message))
    return buffer.getvalue()
