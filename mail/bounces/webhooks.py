"""Bounces that providers report as JSON: Amazon SES notifications and SendGrid's event webhook.

Amazon SES publishes bounces to an SNS topic. What arrives over HTTP (or by email, when the topic
has an email subscription) is an SNS envelope, {"Type": "Notification", "Message": "<json>"},
whose Message is the SES notification; with raw message delivery the notification comes bare.
SES says `bounceType` Permanent (remove the address), Transient or Undetermined, refined by
`bounceSubType` (General, NoEmail, Suppressed, OnAccountSuppressionList, MailboxFull,
MessageTooLarge, ContentRejected, AttachmentRejected); each bounced recipient may carry the
receiver's status and diagnosticCode. Event publishing (configuration sets) writes `eventType`
where SNS notifications write `notificationType`; both are read.

SendGrid posts a JSON array of events, bounces among opens and clicks. A "bounce" event's `type`
tells a bounce from a block ("blocked") or an expiry ("expired"); "dropped" means SendGrid did not
send at all, "deferred" that the receiver asked it to retry later.

The receiver's words are classified like any bounce (mail.bounces.classify); the provider's own
verdict decides where they say nothing. Signatures are not checked here: the push endpoints
(serve/tracking/bounce_push.py) verify them with mail.bounces.webhook_auth first.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import msgspec

from mail.bounces.classify import Verdict, classify, kind_of
from mail.bounces.diagnostics import campaign_id, codes, one_line, smtp_stage
from mail.errors import ValidationError
from mail.mime_charsets import message_id
from models.bounces import BouncedRecipient, BounceKind, BounceReason, BounceReport

MAX_BODY_BYTES = 8 * 1024 * 1024  # SNS messages are at most 256 KiB, SendGrid batches a few MiB


class _SesRecipient(msgspec.Struct, rename="camel"):
    email_address: str
    action: str = ""
    status: str = ""
    diagnostic_code: str = ""


class _SesBounce(msgspec.Struct, rename="camel"):
    bounce_type: str = ""
    bounce_sub_type: str = ""
    bounced_recipients: list[_SesRecipient] = msgspec.field(default_factory=list)
    reporting_mta: str = msgspec.field(default="", name="reportingMTA")


class _SesHeader(msgspec.Struct):
    name: str = ""
    value: str = ""


class _SesCommonHeaders(msgspec.Struct, rename="camel"):
    message_id: str = ""


class _SesMail(msgspec.Struct, rename="camel"):
    message_id: str = ""  # SES's own id for the message
    destination: list[str] = msgspec.field(default_factory=list)
    # The original headers, where the configuration set includes them.
    headers: list[_SesHeader] = msgspec.field(default_factory=list)
    common_headers: _SesCommonHeaders | None = None

    def original_message_id(self) -> str | None:
        """The Message-ID header as SES quotes it, else SES's own id."""
        quoted = self.common_headers.message_id if self.common_headers is not None else ""
        return (message_id(quoted) if quoted else None) or self.message_id or None

    def original_campaign_id(self) -> str | None:
        """The X-Campaign-ID among the original headers."""
        value = next(
            (header.value for header in self.headers if header.name.lower() == "x-campaign-id"), None
        )
        return campaign_id(value)


class _SesComplainant(msgspec.Struct, rename="camel"):
    email_address: str


class _SesComplaint(msgspec.Struct, rename="camel"):
    complained_recipients: list[_SesComplainant] = msgspec.field(default_factory=list)
    complaint_feedback_type: str = ""


class _SesNotification(msgspec.Struct, rename="camel"):
    notification_type: str = ""
    event_type: str = ""
    bounce: _SesBounce | None = None
    complaint: _SesComplaint | None = None
    mail: _SesMail | None = None


class _SendGridEvent(msgspec.Struct):
    email: str = ""
    event: str = ""
    type: str = ""
    status: str = ""
    reason: str = ""
    response: str = ""
    sg_message_id: str = ""
    sg_event_id: str = ""
    bounce_classification: str = ""


# SES sub-types that say why where the receiver's words do not.
_SES_SUBTYPES: Final[dict[str, BounceReason]] = {
    "noemail": "userunknown",
    "suppressed": "suppressed",
    "onaccountsuppressionlist": "suppressed",
    "mailboxfull": "mailboxfull",
    "messagetoolarge": "mesgtoobig",
    "contentrejected": "policyviolation",
    "attachmentrejected": "policyviolation",
}
# SendGrid's bounce_classification (its own reading of the reply).
_SENDGRID_CLASSES: Final[dict[str, BounceReason]] = {
    "invalid address": "userunknown",
    "mailbox unavailable": "suspend",
    "reputation": "badreputation",
    "content": "policyviolation",
    "frequency or volume too high": "speeding",
    "technical": "systemerror",
}
_SENDGRID_EVENTS: Final = frozenset({"bounce", "dropped", "deferred", "blocked"})
_UNDECIDED: Final = frozenset({"undefined", "onhold"})
_SENDMAIL_BREAK: Final = re.compile(r"!\r?\n ")
_OPTED_OUT: Final = re.compile(r"unsubscribe|spam report", re.IGNORECASE)


def _json(body: bytes | str, what: str) -> Any:
    """The first JSON value in `body` (an SNS email carries a footer after it)."""
    if isinstance(body, bytes | bytearray | memoryview):
        if len(body) > MAX_BODY_BYTES:
            raise ValidationError(f"{what}: body over {MAX_BODY_BYTES} bytes", field="body")
        text = bytes(body).decode("utf-8", errors="replace")
    elif isinstance(body, str):
        text = body
    else:
        raise ValidationError(f"{what}: body must be bytes or text, not {type(body).__name__}", field="body")
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValidationError(f"{what}: no JSON in the body", field="body")
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError) as exc:
        # Mailed notifications come with Sendmail's long-line breaks ("!", newline, space) and
        # other raw line breaks inside strings: undo them and read once more, leniently.
        mended = _SENDMAIL_BREAK.sub("", text)
        try:
            value, _ = json.JSONDecoder(strict=False).raw_decode(mended, mended.find(text[start]))
        except (ValueError, RecursionError):
            raise ValidationError(f"{what}: malformed JSON ({str(exc)[:120]})", field="body") from None
    return value


def is_ses_notification(text: str) -> bool:
    """Whether text looks like an SNS envelope or an SES notification (cheap; no parsing)."""
    head = text.lstrip()[:4000]
    return head.startswith("{") and (
        '"notificationType"' in head or '"eventType"' in head or '\\"notificationType\\"' in head
    )


def parse_ses_notification(body: bytes | str) -> BounceReport:
    """An SNS envelope or bare SES notification: a bounce, a complaint (complained_by), or
    neither (deliveries and the rest)."""
    value = _json(body, "SES notification")
    event_id = ""
    if isinstance(value, dict) and isinstance(value.get("Message"), str) and "Type" in value:
        if value.get("Type") != "Notification":  # SubscriptionConfirmation, UnsubscribeConfirmation
            return BounceReport(is_bounce=False)
        event_id = str(value.get("MessageId") or "")
        value = _json(value["Message"], "SES notification in SNS Message")
    try:
        notification = msgspec.convert(value, _SesNotification)
    except msgspec.ValidationError as exc:
        raise ValidationError(f"SES notification: {exc}", field="body") from None
    kind_name = (notification.notification_type or notification.event_type).lower()
    mail = notification.mail or _SesMail()
    if kind_name == "complaint" and notification.complaint is not None:
        complaint = notification.complaint
        return BounceReport(
            is_bounce=False,
            complained_by=[
                entry.email_address for entry in complaint.complained_recipients if entry.email_address
            ],
            feedback_type=complaint.complaint_feedback_type.lower(),
            original_message_id=mail.original_message_id(),
            original_campaign_id=mail.original_campaign_id(),
            source="ses",
            event_id=event_id,
        )
    if kind_name != "bounce":  # Delivery, Send, Open, ...
        return BounceReport(is_bounce=False, original_message_id=mail.original_message_id())
    if notification.bounce is None:
        raise ValidationError("SES notification: a Bounce without its bounce object", field="body")
    bounce = notification.bounce
    permanent = bounce.bounce_type.lower() == "permanent"
    subtype_reason = _SES_SUBTYPES.get(bounce.bounce_sub_type.lower())
    recipients = []
    for entry in bounce.bounced_recipients:
        diagnostic = _untyped(entry.diagnostic_code)
        status, reply = codes(diagnostic, entry.status)
        verdict = classify(
            status, reply, diagnostic, stage=smtp_stage(diagnostic), action=entry.action.lower()
        )
        verdict = _provider_verdict(verdict, subtype_reason, "hard" if permanent else "soft")
        recipients.append(
            BouncedRecipient(
                recipient=entry.email_address,
                kind=verdict.kind,
                reason=verdict.reason,
                status=status,
                reply_code=reply,
                diagnostic=one_line(diagnostic),
                action=entry.action.lower(),
            )
        )
    return BounceReport(
        is_bounce=True,
        recipients=recipients,
        original_message_id=mail.original_message_id(),
        original_campaign_id=mail.original_campaign_id(),
        reporting_mta=_untyped(bounce.reporting_mta),
        source="ses",
        event_id=event_id,
    )


def parse_sendgrid_events(body: bytes | str) -> list[BounceReport]:
    """One report per bounce, block, drop, deferral or spam report in a SendGrid event batch;
    others skipped."""
    value = _json(body, "SendGrid events")
    events = value if isinstance(value, list) else [value]
    reports: list[BounceReport] = []
    for position, item in enumerate(events):
        try:
            event = msgspec.convert(item, _SendGridEvent)
        except msgspec.ValidationError as exc:
            raise ValidationError(f"SendGrid event {position}: {exc}", field="body") from None
        report = sendgrid_report(event)
        if report is not None:
            reports.append(report)
    return reports


def sendgrid_report(event: _SendGridEvent) -> BounceReport | None:
    """The report for one SendGrid event, or None when it is neither a failure nor a complaint."""
    name = event.event.lower()
    if name == "spamreport" and event.email:  # the recipient marked it as spam: a complaint
        return BounceReport(
            is_bounce=False,
            complained_by=[event.email],
            feedback_type="abuse",
            original_message_id=event.sg_message_id or None,
            source="sendgrid",
            event_id=event.sg_event_id,
        )
    if name not in _SENDGRID_EVENTS or not event.email:
        return None
    event_type = (event.type or name).lower()
    diagnostic = event.reason or event.response
    status, reply = codes(diagnostic, event.status)
    action = "delayed" if name == "deferred" else "failed"
    verdict = classify(status, reply, diagnostic, stage=smtp_stage(diagnostic), action=action)
    provider_reason = _SENDGRID_CLASSES.get(event.bounce_classification.lower())
    provider_kind: BounceKind = "hard"
    if name == "deferred":
        provider_kind = "soft"
    elif event_type == "blocked" or name == "blocked":
        provider_reason, provider_kind = provider_reason or "blocked", "blocked"
    elif event_type == "expired":
        provider_reason, provider_kind = "expired", "soft"
    elif name == "dropped":
        if _OPTED_OUT.search(event.reason):
            return None  # not sent because the recipient opted out: not a bounce
        provider_reason = _dropped_reason(event.reason)
        provider_kind = kind_of(provider_reason) if provider_reason else "soft"
    verdict = _provider_verdict(verdict, provider_reason, provider_kind)
    if name == "deferred" and verdict.kind == "hard":  # a deferral is never final
        verdict = Verdict(kind="soft", reason=verdict.reason)
    return BounceReport(
        is_bounce=True,
        recipients=[
            BouncedRecipient(
                recipient=event.email,
                kind=verdict.kind,
                reason=verdict.reason,
                status=status,
                reply_code=reply,
                diagnostic=one_line(diagnostic),
                action=action,
            )
        ],
        original_message_id=event.sg_message_id or None,
        source="sendgrid",
        event_id=event.sg_event_id,
    )


def _dropped_reason(reason: str) -> BounceReason | None:
    """Why SendGrid dropped a message: the address bounced before, or is not an address."""
    lowered = reason.lower()
    if "bounced address" in lowered:
        return "suppressed"
    if "invalid" in lowered and "smtpapi" not in lowered:
        return "userunknown"
    return None


def _provider_verdict(verdict: Verdict, reason: BounceReason | None, kind: BounceKind) -> Verdict:
    """The receiver's words where they say something; the provider's verdict where they do not.

    A provider's "permanent" without any reason is still permanent: kind hard, reason undefined.
    """
    if verdict.reason not in _UNDECIDED:
        return verdict
    if reason is not None:
        return Verdict(kind=kind_of(reason) if kind != "blocked" else "blocked", reason=reason)
    return Verdict(kind=kind, reason=verdict.reason)


def _untyped(value: str) -> str:
    head, separator, rest = value.partition(";")
    if separator and head.strip() and " " not in head.strip():
        return rest.strip()
    return value.strip()
