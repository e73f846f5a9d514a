"""RFC 3464 delivery status notifications: the machine-readable part of a standard bounce.

A DSN is a multipart/report (report-type=delivery-status) of three parts: a notice for people,
a message/delivery-status part, and the returned message (message/rfc822) or its headers
(text/rfc822-headers). The status part is blocks of "Name: value" fields separated by blank
lines: one block about the message (Reporting-MTA, Arrival-Date), then one per recipient
(Final-Recipient, Original-Recipient, Action, Status, Diagnostic-Code, Remote-MTA).

Real reports bend this: blocks without the blank line between them, the per-recipient fields
pasted into the notice as plain text (Amazon WorkMail's "Technical report"), a status part
encoded in base64, RFC 6533's message/global-delivery-status in UTF-8. `field_blocks` reads
all of these from text; a field name seen twice in a block starts the next block.
"""

from __future__ import annotations

import binascii
import quopri
import re
from email.message import Message

import msgspec

from mail.bounces.diagnostics import EVIDENCE_CHARS, Failure, codes, find_addresses, one_line, smtp_stage
from mail.mime_charsets import decode_text, surrogates_to_text

MAX_STATUS_CHARS = 1_000_000  # of a delivery-status part (a few hundred bytes per recipient)
STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
# Actions that report a success; "failed" and "delayed" (and any other) report a failure.
SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded", "deliverable"})

_FIELD = re.compile(r"([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)")
_TYPED = re.compile(r"^[A-Za-z0-9._-]+[ \t]*;[ \t]*")  # "rfc822;", "smtp;", "dns;", "X-Postfix;"
_RECIPIENT_FIELDS = ("final-recipient", "original-recipient", "x-actual-recipient")


class DeliveryReport(msgspec.Struct, frozen=True, kw_only=True):
    """The recipient blocks of one delivery-status part."""

    reporting_mta: str
    failures: list[Failure]
    original_recipients: list[str]  # Original-Recipient values, where they differ
    recipient_blocks: int  # blocks that named a recipient, failed or not


def status_part_text(part: Message) -> str:
    """The text of a delivery-status part, whichever way the parser left it."""
    payload = part.get_payload()
    charset = part.get_content_charset() or "utf-8"
    if isinstance(payload, list):  # compat32 parses each block as a Message of headers
        encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
        if encoding in {"base64", "quoted-printable"}:  # the blocks are still encoded: decode first
            encoded = "\n".join(block.as_string() for block in payload if isinstance(block, Message))
            data = _transfer_decoded(encoded.encode("ascii", "surrogateescape"), encoding)
            return decode_text(data, charset)[0]
        blocks = []
        for block in payload:
            if isinstance(block, Message):
                blocks.append("\n".join(f"{name}: {value}" for name, value in block.items()))
        return surrogates_to_text("\n\n".join(blocks))
    decoded = part.get_payload(decode=True)
    if not isinstance(decoded, bytes):
        return str(payload)
    return decode_text(decoded, charset)[0]


def _transfer_decoded(data: bytes, encoding: str) -> bytes:
    if encoding == "quoted-printable":
        return quopri.decodestring(data)
    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    try:
        return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))
    except binascii.Error:
        return b""


def field_blocks(text: str) -> list[dict[str, str]]:
    """Blocks of fields, names lower-cased, folded lines joined; a repeated name starts a block."""
    blocks: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] = {}
    last_name = ""
    for line in text[:MAX_STATUS_CHARS].replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
            current, last_name = {}, ""
            continue
        if line[0] in " \t" and last_name:  # a folded continuation line
            current[last_name].append(line.strip())
            continue
        found = _FIELD.match(line)
        if found is None:
            last_name = ""
            continue
        name, value = found.group(1).lower(), found.group(2).strip()
        if name in current:
            blocks.append(current)
            current = {}
        current[name] = [value]
        last_name = name
    if current:
        blocks.append(current)
    return [{name: " ".join(parts) for name, parts in block.items()} for block in blocks]


def untyped(value: str) -> str:
    """A typed field's value without its type: "rfc822; a@b" -> "a@b", "smtp; 550 ..." -> "550 ..."."""
    return _TYPED.sub("", value.strip(), count=1).strip()


def address_of(value: str) -> str:
    """The address in a recipient field ("rfc822; <a@b>" -> "a@b"); the bare value when none."""
    bare = untyped(value)
    found = find_addresses(bare)
    return found[0] if found else bare.strip("<> ")


def read_report(text: str) -> DeliveryReport:
    """The per-recipient blocks of a delivery-status text; successes are counted, not returned."""
    reporting_mta = ""
    failures: list[Failure] = []
    original_recipients: list[str] = []
    recipient_blocks = 0
    for block in field_blocks(text):
        if "reporting-mta" in block and not reporting_mta:
            reporting_mta = untyped(block["reporting-mta"])
        named = next((block[name] for name in _RECIPIENT_FIELDS if block.get(name)), None)
        if named is None:
            continue
        recipient_blocks += 1
        recipient = address_of(block.get("final-recipient") or named)
        original = address_of(block["original-recipient"]) if block.get("original-recipient") else ""
        if original and original.lower() != recipient.lower() and "@" in original:
            original_recipients.append(original)
        action = block.get("action", "").strip().lower().split(" ")[0] if block.get("action") else ""
        diagnostic_field = block.get("diagnostic-code", "")
        diagnostic = untyped(diagnostic_field)
        typed = _TYPED.match(diagnostic_field.strip())
        status, reply = codes(diagnostic, block.get("status", ""))
        if action in SUCCESS_ACTIONS or (not action and status.startswith("2")):
            continue
        failures.append(
            Failure(
                recipient=recipient,
                status=status,
                reply_code=reply,
                diagnostic=one_line(diagnostic, EVIDENCE_CHARS),
                action=action,
                remote_mta=untyped(block.get("remote-mta", "")),
                stage=smtp_stage(diagnostic),
                diagnostic_type=typed.group(0).rstrip(" \t;").lower() if typed else "",
            )
        )
    return DeliveryReport(
        reporting_mta=reporting_mta,
        failures=failures,
        original_recipients=original_recipients,
        recipient_blocks=recipient_blocks,
    )


def looks_like_fields(text: str) -> bool:
    """Whether plain text carries per-recipient DSN fields (a report pasted into a notice)."""
    return bool(
        re.search(r"(?im)^[ \t]*(?:final|original)-recipient[ \t]*:", text)
        and re.search(r"(?im)^[ \t]*(?:status|action)[ \t]*:", text)
    )
