"""Deciding a sending A/B test: once its test cohort has been sent and the test's wait is over,
the winner (mail.campaigns.abtest, on human opens or clicks) goes to the held rest.

A test is due when no row of its test cohort is still to send (held, queued or sending) and
`waitHours` have passed since the last of them was sent. Per variant, `sent` counts the test
rows sent and `successes` those whose tracked email has a human open (or click: the test's
`metric`); machine opens (image proxies, Apple's prefetch, scanners) never count. The decision
and its statistics are stored on the campaign (`abDecision`, `winningVariant`), the variants are
marked winner and losers, and the held rows are queued with the winner's content (each at its
own time still, where the campaign sends at local time). Without a winner (fallback `none`) the
decision is stored and the rest stays held for a person.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from mail.campaigns import repository
from mail.campaigns.abtest import AbDecision, VariantCounts, decide_with
from models.settings import CampaignSettings

Conn = Any

_DUE = """
SELECT c.id FROM campaigns c
WHERE c.status = 'sending' AND c.is_ab_test AND c.ab_decision IS NULL
  AND NOT EXISTS (SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = c.id AND r.cohort = 'test'
                  AND r.state IN ('held', 'queued', 'sending'))
  AND coalesce((SELECT max(r.sent_at) FROM campaign_recipients r WHERE r.campaign_id = c.id AND r.cohort = 'test'),
               c.sending_started_at)
      + make_interval(secs => coalesce((c.ab_test ->> 'waitHours')::float8, 4.0) * 3600) <= now()
ORDER BY c.sending_started_at
FOR UPDATE OF c SKIP LOCKED
"""

_COUNTS = """
SELECT r.variant_id, count(*) AS sent,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM tracked_emails te JOIN email_engagement ee ON ee.email_id = te.id
           WHERE te.recipient_id = r.id AND CASE WHEN %(metric)s = 'click' THEN ee.human_clicks > 0
                                                  ELSE ee.human_opens > 0 END)) AS successes
FROM campaign_recipients r
WHERE r.campaign_id = %(campaign)s AND r.cohort = 'test' AND r.state = 'sent'
GROUP BY r.variant_id
"""


async def decide_due(conn: Conn, settings: CampaignSettings) -> dict[UUID, AbDecision]:
    """Decide every due test (in the caller's transaction); the decisions by campaign."""
    cursor = await conn.execute(_DUE)
    decided: dict[UUID, AbDecision] = {}
    for (campaign_id,) in await cursor.fetchall():
        decided[campaign_id] = await decide_campaign(conn, settings, campaign_id)
    return decided


async def decide_campaign(conn: Conn, settings: CampaignSettings, campaign_id: UUID) -> AbDecision:
    campaign = await repository.load_campaign(conn, campaign_id)
    metric = campaign.ab_test.metric
    cursor = await conn.execute(_COUNTS, {"campaign": campaign_id, "metric": metric})
    by_variant = {variant_id: (sent, successes) for variant_id, sent, successes in await cursor.fetchall()}
    counts = [
        VariantCounts(variant_id=str(variant.id), sent=by_variant.get(variant.id, (0, 0))[0],
                      successes=by_variant.get(variant.id, (0, 0))[1])
        for variant in campaign.variants
    ]  # fmt: skip
    decision = decide_with(settings, counts, metric)
    winner = UUID(decision.winner) if decision.winner else None
    await conn.execute(
        "UPDATE campaigns SET ab_decision = %s::jsonb, winning_variant_id = %s, updated_at = now() WHERE id = %s",
        (msgspec.json.encode(decision).decode(), winner, campaign_id),
    )
    if winner is None:
        return decision  # fallback "none": the rest stays held for a person to decide
    await conn.execute(
        "UPDATE campaign_variants SET status = CASE WHEN id = %s THEN 'winner' ELSE 'loser' END "
        "WHERE campaign_id = %s",
        (winner, campaign_id),
    )
    await conn.execute(
        "UPDATE campaign_recipients SET state = 'queued', variant_id = %s, send_after = greatest(send_after, now()), "
        "updated_at = now() "
        "WHERE campaign_id = %s AND state = 'held'",
        (winner, campaign_id),
    )
    return decision
