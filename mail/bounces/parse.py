"""`parse_bounce(raw)`: one entry point for any message that may be a bounce.

In order: an Amazon SES notification delivered by email (JSON in the body), an RFC 3464 report
(mail.bounces.dsn), DSN fields pasted into a text notice, then a text bounce
(mail.bounces.heuristics). A DSN's per-recipient fields decide who failed; its notice for people
still gives each recipient's words when the Diagnostic-Code is missing, and says where in the SMTP
conversation the refusal came ("in reply to MAIL FROM command"), which the fields never do.

An ARF feedback report (RFC 5965) is no bounce: it is read as a complaint (`complained_by`).

A bounce sometimes arrives inside another message (a relay returns the bounce it could not
deliver, a user forwards one); when a message names no failed recipient itself, the message it
carries is read the same way, to a small depth.
"""

from __future__ import annotations

import re
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

import msgspec

from mail.bounces import dsn, heuristics
from mail.bounces.classify import classify_failure
from mail.bounces.diagnostics import EVIDENCE_CHARS, Failure, campaign_id, codes, one_line, smtp_stage
from mail.bounces.webhooks import is_ses_notification, parse_ses_notification
from mail.errors import ValidationError
from mail.mime_charsets import message_id, surrogates_to_text
from models.bounces import BouncedRecipient, BounceReport, BounceSource

MAX_NESTED = 3  # a bounce of a bounce of a bounce: deeper than this is not looked into
MAX_RECIPIENTS = 1000

_RETURNED_TYPES = frozenset({"message/rfc822", "message/global"})
_HEADER_TYPES = frozenset({"text/rfc822-headers", "message/global-headers"})
_MESSAGE_ID_LINE = re.compile(r"(?im)^message-id:[ \t]*(<[^>\s]+>|\S+)")
_CAMPAIGN_ID_LINE = re.compile(r"(?im)^x-campaign-id:[ \t]*(\S+)")
_TO_LINE = re.compile(r"(?im)^to:[ \t]*(.+)$")
_FEEDBACK_TYPE = "message/feedback-report"
# VERP: the return path names the recipient, bounces+user=example.org@our.domain.
_VERP = re.compile(r"[+-](?P<user>[^+=@\s<>]+)=(?P<domain>[A-Za-z0-9.-]+\.[A-Za-z]{2,})@", re.IGNORECASE)
_VERP_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to")
_EMBEDDED_START = re.compile(r"(?im)^(?:from mailer-daemon .*\n)?(?=(?:return-path|received|from|date):)")


def parse_bounce(raw: bytes) -> BounceReport:
    """What `raw` (an RFC 822 message) says as a bounce; is_bounce False when it is not one.

    Raises ValidationError for input that is not a message at all (not bytes) or that the email
    parser cannot take apart (MIME nested thousands deep), never anything else.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ValidationError(f"a bounce is bytes, not {type(raw).__name__}", field="raw")
    try:
        return _read(bytes(raw), depth=0)
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError("unreadable bounce: MIME structure nested too deep", field="raw") from None
    except Exception as exc:  # the last resort: a bounce parser bug must not take a worker down
        raise ValidationError(
            f"unreadable bounce: {type(exc).__name__}: {str(exc)[:200]}", field="raw"
        ) from exc


class _Reading(msgspec.Struct, frozen=True, kw_only=True):
    """What a delivery report in the message says (nothing, when `decided` is False)."""

    failures: list[Failure]
    source: BounceSource
    reporting_mta: str = ""
    original_recipients: list[str] = msgspec.field(default_factory=list)
    decided: bool = False  # a report named recipients: True even if all were delivered


def _read(raw: bytes, depth: int) -> BounceReport:
    msg = message_from_bytes(raw, policy=compat32)
    text, rest = heuristics.notice_text(msg)
    if is_ses_notification(text):
        try:
            return parse_ses_notification(text)
        except ValidationError:
            pass  # an email that merely starts like SES JSON: read it as mail
    complaint = _feedback_report(msg, rest)
    if complaint is not None:
        return complaint
    notice = heuristics.Notice(text)
    reading = _from_report(msg, notice)
    if not reading.decided and heuristics.looks_like_bounce(msg, text):
        failures = heuristics.read_failures(msg, notice, exclude=_not_recipients(msg))
        if heuristics.is_delay(text):
            failures = [msgspec.structs.replace(failure, action="delayed") for failure in failures]
        reading = _Reading(failures=failures, source="heuristic")
    if not reading.failures and not reading.decided and depth < MAX_NESTED:
        nested = _nested_bounce(msg, rest, depth)
        if nested is not None:
            return nested
    if not reading.failures:
        return BounceReport(is_bounce=False, original_message_id=_original_message_id(msg, rest))
    recipients = _unique([classify_failure(failure) for failure in reading.failures[:MAX_RECIPIENTS]])
    return BounceReport(
        is_bounce=True,
        recipients=recipients,
        original_message_id=_original_message_id(msg, rest),
        original_campaign_id=_original_campaign_id(msg, rest),
        original_recipient_hints=_unique_addresses([*_verp_recipients(msg), *reading.original_recipients]),
        reporting_mta=reading.reporting_mta or _sender_host(msg),
        source=reading.source,
    )


def _from_report(msg: Message, notice: heuristics.Notice) -> _Reading:
    """Failures from a delivery-status part, or from DSN fields pasted into the notice."""
    text = ""
    source: BounceSource = "dsn"
    for part in msg.walk():
        if part.get_content_type() in dsn.STATUS_TYPES:
            text = dsn.status_part_text(part)
            break
    whole = "\n".join(notice.lines)
    if not text and dsn.looks_like_fields(whole):
        text, source = whole, "heuristic"
    if not text:
        return _Reading(failures=[], source=source)
    report = dsn.read_report(text)
    if report.recipient_blocks == 0:
        if source == "dsn" and not notice.anchors:
            # "Delivery report unavailable": the returned message's addressees are who failed.
            context = one_line(whole, EVIDENCE_CHARS)
            failures = [Failure(recipient=address, context=context) for address in _returned_recipients(msg)]
            return _Reading(
                failures=failures, source=source, reporting_mta=report.reporting_mta, decided=bool(failures)
            )
        return _Reading(failures=[], source=source, reporting_mta=report.reporting_mta)
    alone = len(report.failures) == 1
    failures = []
    for failure in report.failures:
        words = notice.text_for(failure.recipient)
        if not words and alone:  # the notice names it differently (a pipe, a file): all is about it
            words = notice.whole_text()
        failures.append(_with_notice(failure, words))
    return _Reading(
        failures=failures,
        source=source,
        reporting_mta=report.reporting_mta,
        original_recipients=report.original_recipients,
        decided=True,
    )


def _with_notice(failure: Failure, words: str) -> Failure:
    """A DSN failure completed from the notice: its words when the report has none, the stage."""
    stage = failure.stage or smtp_stage(words)
    if failure.diagnostic or not words.strip():
        return msgspec.structs.replace(failure, stage=stage, context=one_line(words, EVIDENCE_CHARS))
    status, reply = codes(words, failure.status)
    diagnostic = one_line(words, EVIDENCE_CHARS)
    return msgspec.structs.replace(
        failure, status=status, reply_code=reply, diagnostic=diagnostic, stage=stage
    )


def _nested_bounce(msg: Message, rest: str, depth: int) -> BounceReport | None:
    """A bounce carried inside this message: an attached message, or one pasted after the notice."""
    for part in msg.walk():
        if part.get_content_type() in _RETURNED_TYPES:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                report = _read(payload[0].as_bytes(), depth + 1)
                if report.is_bounce:
                    return report
    start = _EMBEDDED_START.search(rest)
    if start is not None:
        report = _read(rest[start.start() :].encode("utf-8", errors="replace"), depth + 1)
        if report.is_bounce:
            return report
    return None


def _returned_recipients(msg: Message) -> list[str]:
    """The To and Cc addresses of the returned message attached to a bounce."""
    for part in msg.walk():
        if part.get_content_type() in _RETURNED_TYPES | _HEADER_TYPES:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                headers: Message = payload[0]
            else:
                headers = HeaderParser(policy=compat32).parsestr(heuristics.part_text(part))
            found: list[str] = []
            for name in ("to", "cc"):
                found += heuristics.addresses_in(heuristics.header_text(headers, name))
            return _unique_addresses(found)
    return []


def _not_recipients(msg: Message) -> set[str]:
    """Addresses a text bounce names that are not failed recipients: its sender and addressee."""
    found: set[str] = set()
    for name in ("from", "to", "reply-to", "return-path"):
        found.update(
            address.lower() for address in heuristics.addresses_in(heuristics.header_text(msg, name))
        )
    return found


def _feedback_report(msg: Message, rest: str) -> BounceReport | None:
    """An ARF report (RFC 5965, what a mailbox provider's feedback loop sends when a recipient
    marks a message as spam): a complaint by Original-Rcpt-To, else by the returned message's To
    (providers often redact the first). None when the message holds no feedback report."""
    part = next((part for part in msg.walk() if part.get_content_type() == _FEEDBACK_TYPE), None)
    if part is None:
        return None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        fields = payload[0]
    else:
        fields = HeaderParser(policy=compat32).parsestr(heuristics.part_text(part))
    recipients = [
        address
        for value in fields.get_all("original-rcpt-to") or []
        for address in heuristics.addresses_in(surrogates_to_text(str(value)))
    ]
    if not recipients:
        recipients = heuristics.addresses_in(_returned_header(msg, rest, "to", _TO_LINE) or "")
    return BounceReport(
        is_bounce=False,
        complained_by=_unique_addresses(recipients),
        feedback_type=surrogates_to_text(str(fields.get("feedback-type") or "")).strip().lower()[:40],
        original_message_id=_original_message_id(msg, rest),
        original_campaign_id=_original_campaign_id(msg, rest),
        source="arf",
    )


def _original_message_id(msg: Message, rest: str) -> str | None:
    """The Message-ID of the returned message."""
    value = _returned_header(msg, rest, "message-id", _MESSAGE_ID_LINE)
    return message_id(value) if value else None


def _original_campaign_id(msg: Message, rest: str) -> str | None:
    """The returned message's X-Campaign-ID (what mailray's campaign messages carry)."""
    return campaign_id(_returned_header(msg, rest, "x-campaign-id", _CAMPAIGN_ID_LINE))


def _returned_header(msg: Message, rest: str, name: str, line: re.Pattern[str]) -> str | None:
    """A header of the returned message: from the attached message or headers, or the text."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in _RETURNED_TYPES:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                value = payload[0].get(name)
                if value:
                    return surrogates_to_text(str(value))
            elif isinstance(payload, str):
                found = line.search(payload)
                if found:
                    return found.group(1)
        elif ctype in _HEADER_TYPES:
            headers = HeaderParser(policy=compat32).parsestr(heuristics.part_text(part))
            value = headers.get(name)
            if value:
                return surrogates_to_text(str(value))
    found = line.search(rest)
    return found.group(1) if found else None


def _verp_recipients(msg: Message) -> list[str]:
    hints = []
    for name in _VERP_HEADERS:
        for value in msg.get_all(name) or []:
            for found in _VERP.finditer(surrogates_to_text(str(value)[:1000])):
                hints.append(f"{found.group('user')}@{found.group('domain')}")
    return hints


def _sender_host(msg: Message) -> str:
    addresses = heuristics.addresses_in(heuristics.header_text(msg, "from"))
    return addresses[0].rsplit("@", 1)[1] if addresses else ""


def _unique(recipients: list[BouncedRecipient]) -> list[BouncedRecipient]:
    seen: set[str] = set()
    kept = []
    for recipient in recipients:
        if recipient.recipient.lower() not in seen:
            seen.add(recipient.recipient.lower())
            kept.append(recipient)
    return kept


def _unique_addresses(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            kept.append(address)
    return kept
