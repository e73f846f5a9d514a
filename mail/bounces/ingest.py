"""Acting on bounces: link each failed recipient to the message mailray sent, record it, and
protect the sender's reputation.

Reports come from RFC 3464 reports and text bounces (a maildir the SMTP relay or sink delivers
bounces into, or bounce mail in a synced inbox: `ingest_raw`) and from provider webhooks (Amazon
SES and SendGrid shapes, read by mail.bounces.webhooks into the same BounceReport).

Linking, per failed recipient: the outbox row whose Message-ID is the one the bounce returns
(the Message-ID is deterministic per campaign and recipient), else the row of the campaign its
returned X-Campaign-ID names, else the most recent sent row to that address (a bounce that
quotes no headers, or a provider event without either). When none of that finds the failed
address (mail forwarded on to another), the one recipient the bounce's VERP return path or
Original-Recipient names is looked up the same way.
What follows, by the classifier's kind:
- hard (user unknown, domain gone, ...): the row becomes bounced and the address is suppressed
  for the workspace;
- soft (mailbox full, over quota, ...): the row goes back to the queue with backoff while it has
  attempts left (it was not delivered, so sending again sends nothing twice); an address that
  soft-bounces `sending.soft_bounce_limit` times is suppressed;
- blocked (policy, spam, blocklist: the receiver refused *us*): the row becomes bounced, the
  address stays (it is fine), and an alert goes to the workspace's event channel: blocks are a
  reputation problem that a person must look at.
Each bounce is stored in `bounces`; a report that matches nothing mailray sent is counted as
unmatched and kept nowhere. Delayed notices (Action: delayed) change nothing.

Complaints (an SES Complaint, a SendGrid spamreport, an ARF report from a feedback loop) are
linked the same way; each complainant's address is suppressed (reason `complaint`) and counted
against the campaign it complained about, whose complaint-rate guardrail
(mail.sending.guardrails) then pauses it past `sending.max_complaint_rate`.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio

from mail.bounces.parse import parse_bounce
from mail.errors import ValidationError
from mail.sending import outbox
from models.bounces import BouncedRecipient, BounceReport
from models.events import BounceAlert, BounceAlertData, event_encoder, workspace_channel
from models.settings import SendingSettings

log = logging.getLogger(__name__)

Conn = Any


class IngestResult(msgspec.Struct, kw_only=True):
    reports: int = 0
    not_bounces: int = 0
    recipients: int = 0
    unmatched: int = 0
    hard: int = 0
    soft_retried: int = 0
    soft_final: int = 0
    blocked: int = 0
    delayed: int = 0
    suppressed: int = 0
    complaints: int = 0  # addresses newly suppressed because their recipient marked a message as spam
    alerts: list[BounceAlert] = msgspec.field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        for field in self.__struct_fields__:
            value = getattr(other, field)
            setattr(self, field, getattr(self, field) + value)


class _Sent(msgspec.Struct, frozen=True, kw_only=True):
    row_id: int
    workspace_id: uuid.UUID
    campaign_id: uuid.UUID
    email: str
    attempts: int
    message_id: str | None


_SENT_COLUMNS = "id, workspace_id, campaign_id, email, attempts, message_id"


async def _find_row(
    conn: Conn, recipient: str, report: BounceReport, workspace_id: uuid.UUID | None
) -> _Sent | None:
    """The outbox row to `recipient` that sent the report's Message-ID, else that belongs to the
    campaign its X-Campaign-ID names, else the last row sent to it; only the workspace's rows
    when one is given (a bounce in a synced inbox speaks for its owner)."""
    scope = "" if workspace_id is None else " AND workspace_id = %(workspace)s"
    params = {"recipient": recipient, "workspace": workspace_id}
    row = None
    if report.original_message_id:
        cursor = await conn.execute(
            f"SELECT {_SENT_COLUMNS} FROM campaign_recipients WHERE message_id = %(message_id)s "
            f"AND lower(email) = lower(%(recipient)s){scope} ORDER BY sent_at DESC NULLS LAST LIMIT 1",
            {**params, "message_id": f"<{report.original_message_id.strip('<>')}>"},
        )
        row = await cursor.fetchone()
    if row is None and report.original_campaign_id:
        cursor = await conn.execute(
            f"SELECT {_SENT_COLUMNS} FROM campaign_recipients WHERE campaign_id = %(campaign)s "
            f"AND lower(email) = lower(%(recipient)s){scope}",
            {**params, "campaign": report.original_campaign_id},
        )
        row = await cursor.fetchone()
    if row is None:
        cursor = await conn.execute(
            f"SELECT {_SENT_COLUMNS} FROM campaign_recipients WHERE lower(email) = lower(%(recipient)s) "
            f"AND state = 'sent'{scope} ORDER BY sent_at DESC LIMIT 1",
            params,
        )
        row = await cursor.fetchone()
    if row is None:
        return None
    return _Sent(row_id=row[0], workspace_id=row[1], campaign_id=row[2], email=row[3], attempts=row[4],
                 message_id=row[5])  # fmt: skip


async def ingest_report(
    conn: Conn,
    report: BounceReport,
    settings: SendingSettings,
    *,
    report_key: str | None = None,
    workspace_id: uuid.UUID | None = None,
) -> IngestResult:
    """Act on one report (in the caller's transaction). With a `report_key`, a report seen
    before (same key and recipient) is not acted on again; with a `workspace_id`, only that
    workspace's messages are matched."""
    result = IngestResult(reports=1)
    if report.complained_by:
        await _complaints(conn, report, workspace_id, result)
        return result
    if not report.is_bounce:
        result.not_bounces = 1
        return result
    for failed in report.recipients:
        result.recipients += 1
        if failed.action == "delayed":
            result.delayed += 1
            continue
        sent = await _find_row(conn, failed.recipient, report, workspace_id)
        if sent is None and len(report.original_recipient_hints) == 1:
            # The address failed is not one we sent to (mail forwarded on): the VERP return path
            # (or Original-Recipient) names the one we did.
            sent = await _find_row(conn, report.original_recipient_hints[0], report, workspace_id)
        if sent is None:
            result.unmatched += 1
            continue
        if not await _record(conn, sent, failed, report, report_key):
            continue  # this report was acted on before
        await _act(conn, sent, failed, settings, result)
    return result


async def _record(
    conn: Conn, sent: _Sent, failed: BouncedRecipient, report: BounceReport, report_key: str | None
) -> bool:
    """Store the bounce; False when this report's bounce of this recipient is stored already."""
    cursor = await conn.execute(
        "INSERT INTO bounces (workspace_id, campaign_id, recipient_id, recipient_email, bounce_type, "
        "bounce_subtype, status_code, reply_code, diagnostic_code, action, reporting_mta, source_message_id, "
        "report_key) VALUES (%s, %s, %s, lower(%s), %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (report_key, lower(recipient_email)) WHERE report_key IS NOT NULL DO NOTHING",
        (sent.workspace_id, sent.campaign_id, sent.row_id, sent.email, failed.kind, failed.reason,
         failed.status or None, failed.reply_code or None, failed.diagnostic[:1000] or None,
         failed.action if failed.action in ("failed", "delayed", "delivered") else "failed",
         (failed.remote_mta or report.reporting_mta or None), sent.message_id, report_key),
    )  # fmt: skip
    return bool(cursor.rowcount)


async def _act(
    conn: Conn, sent: _Sent, failed: BouncedRecipient, settings: SendingSettings, result: IngestResult
) -> None:
    if failed.kind == "soft":
        soft_bounces = await _soft_bounces(conn, sent)
        if sent.attempts < settings.max_attempts and soft_bounces < settings.soft_bounce_limit:
            await _requeue(conn, sent, failed, settings)
            result.soft_retried += 1
            return
        result.soft_final += 1
        await _mark_bounced(conn, sent, failed)
        if soft_bounces >= settings.soft_bounce_limit:
            result.suppressed += await _suppress(conn, sent, "soft_limit")
        return
    await _mark_bounced(conn, sent, failed)
    if failed.kind == "hard":
        result.hard += 1
        result.suppressed += await _suppress(conn, sent, "dsn")
        return
    result.blocked += 1
    data = BounceAlertData(
        campaign_id=sent.campaign_id,
        recipient=sent.email,
        reason=failed.reason,
        status=failed.status,
        diagnostic=failed.diagnostic[:300],
    )
    result.alerts.append(BounceAlert(workspace_id=sent.workspace_id, data=data))


async def _soft_bounces(conn: Conn, sent: _Sent) -> int:
    cursor = await conn.execute(
        "SELECT count(*) FROM bounces WHERE workspace_id = %s AND lower(recipient_email) = lower(%s) "
        "AND bounce_type = 'soft'",
        (sent.workspace_id, sent.email),
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _requeue(conn: Conn, sent: _Sent, failed: BouncedRecipient, settings: SendingSettings) -> None:
    """A soft bounce after the relay accepted the message: not delivered, so it is queued again."""
    delay = outbox.backoff_s(sent.attempts, settings.retry_base_s)
    await _leave_state(
        conn, "state = 'queued', claimed_by = NULL, uncertain = false, "
        "send_after = now() + make_interval(secs => %s), last_error = %s", ("sent", "bounced"),
        (delay, f"soft bounce: {failed.status or failed.reply_code} {failed.diagnostic}"[:1000]), sent.row_id,
    )  # fmt: skip


async def _mark_bounced(conn: Conn, sent: _Sent, failed: BouncedRecipient) -> None:
    await _leave_state(
        conn, "state = 'bounced', last_error = %s", ("sent", "queued"),
        (f"{failed.kind} bounce ({failed.reason}): {failed.status or failed.reply_code} {failed.diagnostic}"[:1000],),
        sent.row_id,
    )  # fmt: skip


async def _leave_state(
    conn: Conn, assignments: str, from_states: tuple[str, ...], values: tuple[Any, ...], row_id: int
) -> None:
    """Update the outbox row when it is in one of `from_states`; a row that was sent leaves its
    campaign's sent_count."""
    cursor = await conn.execute(
        "WITH before AS (SELECT id, state FROM campaign_recipients WHERE id = %s FOR UPDATE) "
        f"UPDATE campaign_recipients r SET {assignments}, updated_at = now() FROM before "
        "WHERE r.id = before.id AND r.state = ANY(%s) RETURNING before.state, r.campaign_id, r.variant_id",
        (row_id, *values, list(from_states)),
    )
    row = await cursor.fetchone()
    if row is not None and row[0] == "sent":
        await outbox.add_to_sent_counts(conn, [(row[1], row[2])], sign=-1)


async def _suppress(conn: Conn, sent: _Sent, source: str, reason: str = "hard_bounce") -> int:
    cursor = await conn.execute(
        "INSERT INTO suppressions (workspace_id, email, reason, source, campaign_id) "
        "VALUES (%s, lower(%s), %s, %s, %s) ON CONFLICT DO NOTHING",
        (sent.workspace_id, sent.email, reason, source, sent.campaign_id),
    )
    return int(cursor.rowcount)


async def _complaints(
    conn: Conn, report: BounceReport, workspace_id: uuid.UUID | None, result: IngestResult
) -> None:
    """Each complainant's address is suppressed for the workspace of the message complained
    about, attributed to its campaign (whose complaint-rate guardrail counts it). A complaint
    reported again finds the address suppressed and changes nothing."""
    for address in report.complained_by:
        result.recipients += 1
        sent = await _find_row(conn, address, report, workspace_id)
        if sent is None:
            result.unmatched += 1
            continue
        added = await _suppress(conn, sent, report.source or "complaint", reason="complaint")
        result.complaints += added
        result.suppressed += added


async def ingest_raw(
    conn: Conn, raw: bytes, settings: SendingSettings, *, workspace_id: uuid.UUID | None = None
) -> IngestResult:
    """Read a message (parse_bounce) and act on it if it is a bounce, once per message content."""
    key = "sha256:" + hashlib.sha256(raw).hexdigest()
    return await ingest_report(conn, parse_bounce(raw), settings, report_key=key, workspace_id=workspace_id)


async def publish_alerts(client: redis.asyncio.Redis, alerts: Sequence[BounceAlert]) -> None:
    for alert in alerts:
        log.warning("campaign %s: blocked by the receiver of %s: %s", alert.data.campaign_id,
                    alert.data.recipient, alert.data.reason)  # fmt: skip
    if not alerts:
        return
    async with client.pipeline(transaction=False) as pipe:
        for alert in alerts:
            pipe.publish(workspace_channel(alert.workspace_id), event_encoder.encode(alert))
        await pipe.execute()


async def ingest_maildir(
    pool: Any, client: redis.asyncio.Redis, directory: Path, settings: SendingSettings
) -> IngestResult:
    """Every message in a maildir's new/: each acted on in its own transaction, then moved to cur/
    (a crash between the two reads it again, and its report key makes that a no-op)."""
    new, cur = directory / "new", directory / "cur"
    if not new.is_dir():
        raise ValidationError(f"{directory}: not a maildir (it has no new/ folder)", field="maildir")
    total = IngestResult()
    cur.mkdir(parents=True, exist_ok=True)
    for path in sorted(new.iterdir()):
        if not path.is_file():
            continue
        async with pool.connection() as conn, conn.transaction():
            result = await ingest_raw(conn, path.read_bytes(), settings)
        await publish_alerts(client, result.alerts)
        path.rename(cur / f"{path.name}:2,S")
        total.add(result)
    return total
