"""Deciding a sending A/B test: once its test cohort has been sent and the test's wait is over,
the winner (mail.campaigns.abtest, on human opens or clicks) goes to the held rest.

A test is due when no row of its test cohort is still to send (held, queued or sending) and
`waitHours` have passed since the last of them was sent. Per variant, `sent` counts the test
rows sent and `successes` those whose tracked email has a human open (or click: the test's
`metric`); machine opens (image proxies, Apple's prefetch, scanners) never count. The decision
and its statistics are stored on the campaign (`abDecision`, `winningVariant`), the variants are
marked winner and losers, and the held rows are queued with the winner's content (each at its
own time still, where the campaign sends at local time). Without a winner (fallback `none`) the
decision is stored and the rest stays held until a person chooses the winner (`choose_winner`,
`POST /v1/campaigns/{id}/winner`), which may also end a test early.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from mail.campaigns import repository
from mail.campaigns.abtest import AbDecision, VariantCounts, chosen_by_hand, decide_with
from mail.errors import Conflict, ValidationError
from models.campaigns import Campaign
from models.settings import CampaignSettings
from models.tenancy import Principal

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
    decision = await _measured(conn, settings, campaign)
    await _apply(conn, campaign_id, decision)
    return decision


async def choose_winner(
    conn: Conn, settings: CampaignSettings, principal: Principal, campaign_id: UUID, variant_id: UUID
) -> Campaign:
    """A person's choice of the winner (in the caller's transaction): the held rest is queued
    with that variant, and the decision stored keeps the method's statistics at this moment and
    names the user. Allowed while the test sends or is paused, until a winner is chosen: before
    the scheduler decides (the test ends early; test rows not yet sent keep their variants) or
    after it found none (fallback `none`)."""
    campaign = await repository.locked(conn, principal, campaign_id)
    if not campaign.is_ab_test:
        raise Conflict(f"campaign {campaign_id} is not an A/B test: it has no winner to choose")
    repository.require_status(campaign, ("sending", "paused"), "given a winner")
    names = {variant.id: variant.name for variant in campaign.variants}
    if campaign.winning_variant is not None:
        raise Conflict(
            f"campaign {campaign_id} has its winner already: {names.get(campaign.winning_variant)} "
            f"({campaign.winning_variant})"
        )
    if variant_id not in names:
        known = ", ".join(f"{name} ({known_id})" for known_id, name in names.items())
        raise ValidationError(
            f"variantId: {variant_id} is not a variant of campaign {campaign_id}; its variants are {known}",
            field="variantId",
        )
    measured = await _measured(conn, settings, campaign)
    await _apply(conn, campaign_id, chosen_by_hand(measured, str(variant_id), str(principal.user_id)))
    return await repository.load_campaign(conn, campaign_id)  # `locked` checked the principal


async def _measured(conn: Conn, settings: CampaignSettings, campaign: Campaign) -> AbDecision:
    """What the method decides of the test cohort's sends and successes so far."""
    metric = campaign.ab_test.metric
    cursor = await conn.execute(_COUNTS, {"campaign": campaign.id, "metric": metric})
    by_variant = {variant_id: (sent, successes) for variant_id, sent, successes in await cursor.fetchall()}
    counts = [
        VariantCounts(variant_id=str(variant.id), sent=by_variant.get(variant.id, (0, 0))[0],
                      successes=by_variant.get(variant.id, (0, 0))[1])
        for variant in campaign.variants
    ]  # fmt: skip
    return decide_with(settings, counts, metric)


async def _apply(conn: Conn, campaign_id: UUID, decision: AbDecision) -> None:
    """Store the decision; with a winner, mark the variants and queue the held rest with it."""
    winner = UUID(decision.winner) if decision.winner else None
    await conn.execute(
        "UPDATE campaigns SET ab_decision = %s::jsonb, winning_variant_id = %s, updated_at = now() WHERE id = %s",
        (msgspec.json.encode(decision).decode(), winner, campaign_id),
    )
    if winner is None:
        return  # fallback "none": the rest stays held for a person to decide
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
