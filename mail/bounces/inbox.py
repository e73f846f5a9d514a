"""Bounces that arrive in a synced mailbox: the sending account's own inbox receives the reports
for the campaigns it sent (the envelope sender is the account), so sync acts on them.

Sync stores a page of messages in one transaction; the new messages that might be bounces (a
cheap look at what the MIME parser already read: the sender, the report parts, the subject)
are read in full by mail.bounces.parse in that same transaction, and acted on (mail.bounces.
ingest) for the account's own workspace only. A message stored is a bounce acted on, a crash
before the commit leaves neither, and the report key (the message's SHA-256) makes a full
resync that stores it again a no-op.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final
from uuid import UUID

from mail.bounces.ingest import IngestResult, ingest_raw
from models.mail import ParsedMessage
from models.settings import SendingSettings

# Local parts that mail systems send their reports from, without "-", "_" and "." (Gmail:
# mailer-daemon@googlemail.com, Exchange: postmaster@..., qmail and others: MAILER-DAEMON@...).
_REPORTERS: Final = frozenset(
    {"mailerdaemon", "postmaster", "maildeliverysubsystem", "maildelivery", "mdaemon"}
)
# Amazon SES mails its bounce notifications (JSON) from here when the topic has an email subscriber.
_REPORTING_DOMAINS: Final = frozenset({"sns.amazonaws.com"})
# Delivery reports, returned headers, and feedback-loop complaints (ARF, RFC 5965).
_REPORT_PARTS: Final = frozenset(
    {
        "message/delivery-status",
        "message/global-delivery-status",
        "text/rfc822-headers",
        "message/feedback-report",
    }
)
_RETURNED: Final = frozenset({"message/rfc822", "message/global"})
_BOUNCE_SUBJECT: Final = re.compile(
    r"undeliver|delivery (?:status|failure|has failed|notification)|returned mail|failure notice"
    r"|mail delivery (?:failed|system)|non-?delivery|could not be delivered|delivery problem"
    r"|error sending|mail error|エラー",
    re.IGNORECASE,
)
_UNSEPARATED: Final = str.maketrans("", "", "-_.")


def might_be_bounce(parsed: ParsedMessage) -> bool:
    """Whether a synced message is worth reading as a bounce or a complaint (parse_bounce then
    decides)."""
    sender = parsed.from_address.email.lower() if parsed.from_address else ""
    local, _, domain = sender.rpartition("@") if "@" in sender else (sender, "", "")
    local = local.translate(_UNSEPARATED)
    if (
        local in _REPORTERS
        or local.startswith(("mailerdaemon", "postmaster"))
        or domain in _REPORTING_DOMAINS
    ):
        return True
    parts = {part.content_type for part in parsed.attachments}
    if parts & _REPORT_PARTS:
        return True
    if parts & _RETURNED and local.startswith(("noreply", "donotreply")):
        return True  # a message returned by a system that signs with no name
    return bool(_BOUNCE_SUBJECT.search(parsed.subject))


async def ingest_synced(
    conn: Any, workspace_id: UUID, messages: Sequence[tuple[bytes, ParsedMessage]], settings: SendingSettings
) -> IngestResult:
    """Act on the bounces among newly stored messages, in the caller's transaction."""
    total = IngestResult()
    for raw, parsed in messages:
        if raw and might_be_bounce(parsed):
            total.add(await ingest_raw(conn, raw, settings, workspace_id=workspace_id))
    return total
