"""Guardrails: a sending campaign whose bounce or complaint rate passes its limit pauses itself,
with the reason on the campaign, before it hurts the sender's reputation any further.

Rates count what the outbox and the suppressions know: bounce rate = bounced / (sent + bounced)
(SMTP rejections and bounces ingested later both mark the row bounced), complaint rate =
complaint suppressions attributed to the campaign / sent. Neither is judged before
`guardrail_min_sample` deliveries were attempted: two bounces in the first ten say little.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from models.settings import SendingSettings

Conn = Any


class GuardrailTrip(msgspec.Struct, frozen=True, kw_only=True):
    campaign_id: UUID
    reason: str


_RATES = """
SELECT c.id,
       count(*) FILTER (WHERE r.state = 'sent') AS sent,
       count(*) FILTER (WHERE r.state = 'bounced') AS bounced,
       (SELECT count(*) FROM suppressions s WHERE s.campaign_id = c.id AND s.reason = 'complaint') AS complaints
FROM campaigns c JOIN campaign_recipients r ON r.campaign_id = c.id
WHERE c.status = 'sending'
GROUP BY c.id
"""


def judge(sent: int, bounced: int, complaints: int, limits: SendingSettings) -> str | None:
    """The reason to pause, or None."""
    attempted = sent + bounced
    if attempted < limits.guardrail_min_sample:
        return None
    bounce_rate = bounced / attempted
    if bounce_rate > limits.max_bounce_rate:
        return (
            f"bounce rate {bounce_rate:.1%} over {limits.max_bounce_rate:.1%} "
            f"({bounced} of {attempted} attempted deliveries)"
        )
    complaint_rate = complaints / sent if sent else 0.0
    if complaint_rate > limits.max_complaint_rate:
        return f"complaint rate {complaint_rate:.2%} over {limits.max_complaint_rate:.2%} ({complaints} of {sent} sent)"
    return None


async def enforce(conn: Conn, limits: SendingSettings) -> list[GuardrailTrip]:
    """Pause every sending campaign over a limit; returns what was paused and why."""
    cursor = await conn.execute(_RATES)
    trips = [
        GuardrailTrip(campaign_id=campaign_id, reason=reason)
        for campaign_id, sent, bounced, complaints in await cursor.fetchall()
        if (reason := judge(sent, bounced, complaints, limits)) is not None
    ]
    for trip in trips:
        await conn.execute(
            "UPDATE campaigns SET status = 'paused', pause_reason = %s, updated_at = now() "
            "WHERE id = %s AND status = 'sending'",
            (f"guardrail: {trip.reason}", trip.campaign_id),
        )
    return trips
