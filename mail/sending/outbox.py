"""The outbox: `campaign_recipients` rows, claimed by senders and moved through their states.

    held ──(A/B decision)──> queued ──claim──> sending ──> sent | failed | bounced | suppressed
                               ^                  │
                               └── retry (4xx) ───┤
                               └── take back (the sender's lease ran out: uncertain) ─┘

Claiming is one UPDATE over `FOR UPDATE SKIP LOCKED` rows of campaigns that are sending, so any
number of senders share the outbox and no row is claimed twice. An address suppressed after the
outbox was written is caught at claim time and recorded as `suppressed`, never sent.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

Conn = Any


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    campaign_id: UUID
    workspace_id: UUID
    variant_id: UUID | None
    contact_id: UUID | None
    email: str
    attempts: int
    uncertain: bool


_CLAIM = """
WITH due AS (
    SELECT r.id FROM campaign_recipients r JOIN campaigns c ON c.id = r.campaign_id
    WHERE r.state = 'queued' AND r.send_after <= now() AND c.status = 'sending'
    ORDER BY r.send_after, r.id LIMIT %(limit)s
    FOR UPDATE OF r SKIP LOCKED
), ruled_out AS (
    UPDATE campaign_recipients r SET state = 'suppressed', updated_at = now(),
        last_error = 'suppressed after the campaign started'
    FROM due WHERE r.id = due.id AND EXISTS (
        SELECT 1 FROM suppressions s WHERE s.workspace_id = r.workspace_id AND s.email = lower(r.email))
    RETURNING r.id
)
UPDATE campaign_recipients r SET state = 'sending', claimed_by = %(sender)s, claimed_at = now(),
    attempts = r.attempts + 1, updated_at = now()
FROM due WHERE r.id = due.id AND r.id NOT IN (SELECT id FROM ruled_out)
RETURNING r.id, r.campaign_id, r.workspace_id, r.variant_id, r.contact_id, r.email, r.attempts, r.uncertain
"""


async def claim(conn: Conn, sender: str, limit: int) -> list[Claimed]:
    """Claim up to `limit` due rows for `sender` (committed by the caller's transaction)."""
    cursor = await conn.execute(_CLAIM, {"limit": limit, "sender": sender})
    return [
        Claimed(id=r[0], campaign_id=r[1], workspace_id=r[2], variant_id=r[3], contact_id=r[4], email=r[5],
                attempts=r[6], uncertain=r[7])
        for r in await cursor.fetchall()
    ]  # fmt: skip


async def mark_sent(
    conn: Conn, row_id: int, sender: str, message_id: str, provider_message_id: str | None
) -> bool:
    """Record the server's acceptance; False when the row is no longer this sender's (taken back)."""
    cursor = await conn.execute(
        "UPDATE campaign_recipients SET state = 'sent', sent_at = now(), message_id = %s, provider_message_id = %s, "
        "uncertain = false, last_error = NULL, updated_at = now() "
        "WHERE id = %s AND state = 'sending' AND claimed_by = %s",
        (message_id, provider_message_id, row_id, sender),
    )
    return bool(cursor.rowcount)


def backoff_s(attempts: int, base_s: float) -> float:
    """Full jitter: uniform in [0, base * 2^(attempts-1)] (jitter guards nothing: not crypto)."""
    return random.uniform(0, base_s * 2 ** max(0, attempts - 1))  # noqa: S311


async def mark_retry(conn: Conn, row_id: int, sender: str, error: str, delay_s: float) -> None:
    await conn.execute(
        "UPDATE campaign_recipients SET state = 'queued', send_after = now() + make_interval(secs => %s), "
        "last_error = %s, claimed_by = NULL, updated_at = now() WHERE id = %s AND claimed_by = %s",
        (delay_s, error[:1000], row_id, sender),
    )


async def defer(conn: Conn, row_ids: list[int], sender: str, reason: str, delay_s: float) -> None:
    """Rows a rate limit holds back (a sending account's daily cap) go back to the queue until
    `delay_s` from now, unsent: the claim's attempt is given back."""
    await conn.execute(
        "UPDATE campaign_recipients SET state = 'queued', send_after = now() + make_interval(secs => %s), "
        "attempts = greatest(0, attempts - 1), last_error = %s, claimed_by = NULL, updated_at = now() "
        "WHERE id = ANY(%s) AND state = 'sending' AND claimed_by = %s",
        (delay_s, reason[:1000], row_ids, sender),
    )


async def mark_final(conn: Conn, row_id: int, sender: str, state: str, error: str) -> None:
    """failed (permanent error, attempts spent, uncertain skipped) or bounced (5xx at RCPT)."""
    assert state in ("failed", "bounced", "suppressed")
    await conn.execute(
        "UPDATE campaign_recipients SET state = %s, last_error = %s, updated_at = now() "
        "WHERE id = %s AND claimed_by = %s",
        (state, error[:1000], row_id, sender),
    )


async def take_back(conn: Conn, lease_s: float) -> int:
    """Rows whose sender held them past the lease (it died, or hangs) go back to the queue,
    flagged uncertain: the next sender asks the transport before sending again."""
    cursor = await conn.execute(
        "UPDATE campaign_recipients SET state = 'queued', uncertain = true, claimed_by = NULL, updated_at = now() "
        "WHERE state = 'sending' AND claimed_at < now() - make_interval(secs => %s)",
        (lease_s,),
    )
    return int(cursor.rowcount)


async def fence(conn: Conn, row_ids: list[int], sender: str) -> set[int]:
    """still_mine for a batch at once: the ids this sender still holds (their claims renewed)."""
    cursor = await conn.execute(
        "UPDATE campaign_recipients SET claimed_at = now() WHERE id = ANY(%s) AND state = 'sending' "
        "AND claimed_by = %s RETURNING id",
        (row_ids, sender),
    )
    return {row[0] for row in await cursor.fetchall()}


async def fence_fresh(conn: Conn, row_ids: list[int], sender: str, fresh_s: float) -> set[int]:
    """fence for a batch claimed moments ago: the ids this sender still holds, each with at least
    `fresh_s` of its lease left (take_back cannot have them before then). A claim that old is
    only read: renewing it would rewrite the row and every index of the outbox (claimed_at is
    indexed), once more per message. Older claims are renewed."""
    cursor = await conn.execute(
        "SELECT id, claimed_at > now() - make_interval(secs => %s) FROM campaign_recipients "
        "WHERE id = ANY(%s) AND state = 'sending' AND claimed_by = %s",
        (fresh_s, row_ids, sender),
    )
    held = await cursor.fetchall()
    stale = [row_id for row_id, fresh in held if not fresh]
    return {row_id for row_id, fresh in held if fresh} | (
        await fence(conn, stale, sender) if stale else set()
    )


async def mark_sent_many(conn: Conn, sender: str, sent: list[tuple[int, str, str | None]]) -> int:
    """mark_sent for (row id, Message-ID, provider id) triples in one statement."""
    if not sent:
        return 0
    ids, message_ids, provider_ids = (list(column) for column in zip(*sent, strict=True))
    cursor = await conn.execute(
        "UPDATE campaign_recipients r SET state = 'sent', sent_at = now(), message_id = v.message_id, "
        "provider_message_id = v.provider_id, uncertain = false, last_error = NULL, updated_at = now() "
        "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v(id, message_id, provider_id) "
        "WHERE r.id = v.id AND r.state = 'sending' AND r.claimed_by = %s",
        (ids, message_ids, provider_ids, sender),
    )
    # The rows' tracked emails (mail.sending.campaign_compose), for analytics' sent counts.
    await conn.execute(
        "UPDATE tracked_emails SET status = 'sent', sent_at = now() WHERE recipient_id = ANY(%s) AND status = 'queued'",
        (ids,),
    )
    return int(cursor.rowcount)


async def count_batch(conn: Conn, sender: str, row_ids: list[int]) -> None:
    """At the end of a sender's batch: add the batch's rows that this sender marked sent to their
    campaigns' and variants' sent_count. O(batch), where a recount of the campaign is O(campaign)
    for every batch (quadratic over a send). A row is counted by the batch that sent it only: a
    claim is a row's only batch, and a row another sender took over carries that sender's name.
    A sender that dies between recording and counting leaves its last batch uncounted, and a
    bounce ingested before its row's batch ends is taken off a count it was never in: both until
    the campaign finishes, when refresh_counts recounts."""
    if not row_ids:
        return
    cursor = await conn.execute(
        "SELECT campaign_id, variant_id FROM campaign_recipients WHERE id = ANY(%s) AND state = 'sent' "
        "AND claimed_by = %s",
        (row_ids, sender),
    )
    await add_to_sent_counts(conn, await cursor.fetchall())


async def add_to_sent_counts(conn: Conn, rows: list[tuple[UUID, UUID | None]], sign: int = 1) -> None:
    """Count outbox rows (campaign id, variant id) that became sent (sign 1) or stopped being sent
    (-1: a bounce after acceptance) in their campaigns' and variants' sent_count, in the caller's
    transaction. Campaign rows first, then variants, each in id order: concurrent senders take
    these locks in one order."""
    campaigns = Counter(campaign_id for campaign_id, _ in rows)
    variants = Counter(variant_id for _, variant_id in rows if variant_id is not None)
    for campaign_id, count in sorted(campaigns.items()):
        await conn.execute(
            "UPDATE campaigns SET sent_count = sent_count + %s WHERE id = %s", (sign * count, campaign_id)
        )
    for variant_id, count in sorted(variants.items()):
        await conn.execute(
            "UPDATE campaign_variants SET sent_count = sent_count + %s WHERE id = %s",
            (sign * count, variant_id),
        )


async def still_mine(conn: Conn, row_id: int, sender: str) -> bool:
    """Fence a send: renew this row's claim and say whether the sender still holds it (a sender
    whose claims lapsed must not send what another sender may have claimed since)."""
    cursor = await conn.execute(
        "UPDATE campaign_recipients SET claimed_at = now() WHERE id = %s AND state = 'sending' AND claimed_by = %s",
        (row_id, sender),
    )
    return bool(cursor.rowcount)


async def renew(conn: Conn, sender: str, row_ids: list[int]) -> int:
    """A live sender's heartbeat over the rows its running batch holds: those stay its own however
    long the batch takes. Only those: a claim left behind by an earlier incarnation of the same
    sender (a process Ray had already replaced that still committed a claim) lapses and is taken
    back, instead of being renewed forever by a sender that will never send it."""
    return len(await fence(conn, row_ids, sender)) if row_ids else 0


async def take_back_own(conn: Conn, sender: str) -> int:
    """A sender starting (again, after a crash) takes back what it held: it may have sent any of
    it, so each is uncertain."""
    cursor = await conn.execute(
        "UPDATE campaign_recipients SET state = 'queued', uncertain = true, claimed_by = NULL, updated_at = now() "
        "WHERE state = 'sending' AND claimed_by = %s",
        (sender,),
    )
    return int(cursor.rowcount)


async def release(conn: Conn, sender: str) -> int:
    """A sender stopping in order gives back what it claimed and did not start (not uncertain)."""
    cursor = await conn.execute(
        "UPDATE campaign_recipients SET state = 'queued', claimed_by = NULL, attempts = attempts - 1, "
        "updated_at = now() WHERE state = 'sending' AND claimed_by = %s",
        (sender,),
    )
    return int(cursor.rowcount)


async def finish_campaigns(conn: Conn) -> list[UUID]:
    """Sending campaigns with nothing left to send become sent."""
    cursor = await conn.execute(
        "UPDATE campaigns c SET status = 'sent', sending_completed_at = now(), updated_at = now() "
        "WHERE c.status = 'sending' AND NOT EXISTS (SELECT 1 FROM campaign_recipients r "
        "WHERE r.campaign_id = c.id AND r.state IN ('held', 'queued', 'sending')) RETURNING c.id"
    )
    return [row[0] for row in await cursor.fetchall()]


async def refresh_counts(conn: Conn, campaign_ids: set[UUID]) -> None:
    """campaigns.sent_count and variants' recounted from the outbox: once, when a campaign
    finishes (count_batch keeps them current while it sends)."""
    for campaign_id in sorted(campaign_ids):
        await conn.execute(
            "UPDATE campaigns SET sent_count = (SELECT count(*) FROM campaign_recipients "
            "WHERE campaign_id = %s AND state = 'sent') WHERE id = %s",
            (campaign_id, campaign_id),
        )
        await conn.execute(
            "UPDATE campaign_variants v SET sent_count = (SELECT count(*) FROM campaign_recipients r "
            "WHERE r.campaign_id = v.campaign_id AND r.variant_id = v.id AND r.state = 'sent') "
            "WHERE v.campaign_id = %s",
            (campaign_id,),
        )


async def next_due(conn: Conn) -> datetime | None:
    cursor = await conn.execute(
        "SELECT min(r.send_after) FROM campaign_recipients r JOIN campaigns c ON c.id = r.campaign_id "
        "WHERE r.state = 'queued' AND c.status = 'sending'"
    )
    row = await cursor.fetchone()
    return row[0] if row else None
