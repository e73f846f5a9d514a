"""A bounce as mailray reads it (mail.bounces.parse_bounce and the provider webhooks).

`kind` is what a sender should do about the recipient; `reason` says why, in a fixed vocabulary
taken from sisimai's reason names (https://libsisimai.org/en/reason/), so figures can be compared
with its labelled corpus:

========= ====================================================================================
kind      meaning
========= ====================================================================================
hard      the address itself is dead (no such user or domain, moved, null MX): suppress it
blocked   the receiver refused *us*: our IP or domain reputation, authentication (SPF, DKIM,
          DMARC, reverse DNS), policy or content. The address may be fine; fix the sending side
soft      anything else: a full mailbox, a timeout, a disabled account, a server error, a
          delay. Retry later; count repeats before giving up on the address
========= ====================================================================================
"""

from __future__ import annotations

from typing import Literal

import msgspec

BounceKind = Literal["hard", "soft", "blocked"]
BounceSource = Literal["dsn", "heuristic", "ses", "sendgrid", "arf"]
BounceReason = Literal[
    # the address (kind hard)
    "userunknown",  # no such mailbox
    "hostunknown",  # no such domain, or it has no mail exchanger
    "hasmoved",  # the mailbox has moved, no forwarding address (5.1.6)
    "notaccept",  # the domain accepts no mail (null MX, RFC 7505); hard when permanent
    "suppressed",  # the provider will not send to it: it bounced as unknown before
    # the sender, its message or its reputation (kind blocked)
    "blocked",  # the sending IP or domain is refused (block lists, reputation, access lists)
    "badreputation",  # refused or deferred for the sender's reputation or volume
    "requireptr",  # the sending IP has no (or a mismatching) reverse DNS name
    "authfailure",  # SPF, DKIM or DMARC failed
    "securityerror",  # another security requirement (TLS, authentication) was not met
    "spamdetected",  # the content was judged spam
    "virusdetected",  # the content carried malware
    "policyviolation",  # a local policy refused the message (header, attachment type, ...)
    "notcompliantrfc",  # the message breaks an RFC (duplicate headers, bad line endings)
    "norelaying",  # relaying denied
    "rejected",  # the envelope sender was refused
    # the recipient's mailbox or system, or the delivery (kind soft)
    "mailboxfull",  # over quota
    "exceedlimit",  # bigger than the mailbox's per-message limit
    "mesgtoobig",  # bigger than the system's per-message limit
    "suspend",  # the mailbox is disabled or suspended
    "filtered",  # the recipient's filters or list rules refused it
    "contenterror",  # the media or encoding could not be handled
    "expired",  # delivery time expired: gave up after retrying
    "networkerror",  # DNS, routing or connection trouble
    "toomanyconn",  # too many connections or recipients at once
    "speeding",  # rate limited
    "systemerror",  # the receiving system failed
    "systemfull",  # the receiving system's disk is full
    "mailererror",  # a local delivery program failed
    "syntaxerror",  # an SMTP syntax error, or a malformed address
    "onhold",  # failed, but the reason cannot be told yet
    "undefined",  # failed for a reason this classifier does not know
]


class BouncedRecipient(msgspec.Struct, frozen=True, kw_only=True):
    """One recipient the bounce reports as failed (or delayed)."""

    recipient: str  # as the bounce names it; lower-cased domain not implied
    kind: BounceKind
    reason: BounceReason
    status: str = ""  # the enhanced status code (RFC 3463), "5.1.1"; "" when the bounce has none
    reply_code: str = ""  # the SMTP reply code, "550"; "" when the bounce has none
    diagnostic: str = ""  # the receiver's words, on one line, truncated
    action: str = ""  # the DSN Action: failed, delayed ("" when not a DSN)
    remote_mta: str = ""  # the host that refused it, when the bounce says


class BounceReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one bounce (or provider notification) says about a message mailray sent."""

    is_bounce: bool
    recipients: list[BouncedRecipient] = msgspec.field(default_factory=list)
    original_message_id: str | None = None  # of the message that bounced, without brackets
    # The X-Campaign-ID the returned message carried (a campaign's id), where a bounce quotes it.
    original_campaign_id: str | None = None
    # Recipients named by the return address itself (VERP: bounces+user=example.org@our.host)
    # or by Original-Recipient fields; a sender can match these even when the bounce names a
    # rewritten or forwarded address.
    original_recipient_hints: list[str] = msgspec.field(default_factory=list)
    reporting_mta: str = ""
    source: BounceSource | None = None  # None when it is neither a bounce nor a complaint
    # A complaint instead of a bounce (is_bounce False): the recipients who marked the message as
    # spam (an SES Complaint, a SendGrid spamreport, an ARF feedback report from a mailbox
    # provider's feedback loop), and the feedback type (abuse, fraud, ...) where it says.
    complained_by: list[str] = msgspec.field(default_factory=list)
    feedback_type: str = ""
    # The provider's id of the notification (SNS MessageId, SendGrid sg_event_id): a webhook
    # delivered twice is acted on once.
    event_id: str = ""
