"""Analytics of one tracked email and of a campaign, read from the aggregates the writer keeps.

Counters come from email_engagement, campaign_engagement, campaign_engagement_hourly and
tracking_links (mail.tracking.store keeps them in the transaction that stores the events), never
from a scan of the events. Two figures have no aggregate and are read from rows: devices and
clients (human opens in tracking_events grouped, through the tracking_events_email and
tracking_events_campaign indexes) and replies (synced mail in `emails`).

What the figures count:

- sent.count: tracked emails that left, i.e. status sent, delivered or bounced, or queued with a
  sent_at (failed ones never count). bouncedCount: sent emails with status bounced, a bounced_at,
  or a permanent bounce in `bounces` for the tracked email (bounce_type hard or blocked, or
  action failed). deliveredCount = count - bouncedCount: providers rarely confirm delivery, so a
  message counts as delivered unless it bounced. deliveryRate = deliveredCount / count.
- Rates are fractions over sent.deliveredCount (sent and not bounced), 0 when that is 0, and
  capped at 1 (an email that bounced after an open would otherwise push a rate over 1):
  openRate = uniqueOpens / delivered, clickRate = emails clicked / delivered,
  unsubscribeRate = unsubscribes / delivered, replyRate = emails replied to / delivered.
  clickToOpenRate = uniqueClicks / uniqueOpens, also capped at 1 (a click is recorded without an
  open when images are blocked).
- Unique counts count tracked emails (recipients): a campaign's uniqueOpens is its emails with at
  least one open, uniqueClicks its emails with at least one click, unsubscribes its emails with
  at least one unsubscribe event; a link's uniqueClicks is the emails that clicked its URL.
- For one email, uniqueOpens is 0 or 1, uniqueClicks is the number of its distinct links clicked
  (email_engagement.unique_clicked_links; clickRate uses 0 or 1, whether it was clicked), and each
  link's uniqueClicks is 0 or 1.
- `human` repeats the engagement figures over events not marked `is_machine` (proxy opens,
  scanners, HEAD probes, bots left out; see mail.tracking.classify). Human clickRate and
  humanClickToOpenRate use the human unique counts over the same denominators.
- devices and clients count human opens only. Gmail, Yahoo and Apple MPP proxy fetches are
  machine events, so `gmail` there means opens a human made in a Gmail client that did not go
  through the image proxy.
- replies: rows of `emails` in the tracked email's workspace, not deleted, sent by its recipient
  (lower(from_email) = recipient_email), whose In-Reply-To is the tracked Message-ID or whose
  References contain it (angle brackets ignored), dated at most `REPLY_DATE_SLACK` before the
  tracked email was sent (which also lets Postgres skip older partitions). A reply synced into
  two mailboxes of the workspace counts once (by its Message-ID). For an email `count` is reply
  messages; for a campaign it is tracked emails with at least one reply. firstReplyAt is the
  earliest reply's received_at (its Date when not received).
- engagementByHour: per UTC hour, all and human opens and clicks (hours without events left out).
- topLinks: a campaign's clicked URLs (links grouped by URL), most clicked first.
- variants: an A/B campaign's figures per variant (delivery, engagement, click-to-open and
  unsubscribes, as above), over the tracked emails sent with that variant.

For figures taken at one instant, call these in a REPEATABLE READ transaction (the API does).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

import msgspec
import psycopg

from mail.errors import NotFound
from models.analytics import (
    AudienceFigures,
    CampaignAnalytics,
    Clients,
    Devices,
    EmailAnalytics,
    EmailEngagement,
    Engagement,
    HourlyEngagement,
    HumanEngagement,
    LinkClicks,
    Replies,
    SentStats,
    VariantAnalytics,
)

Conn = psycopg.AsyncConnection[Any]

# A reply's Date may run behind the clock of the tracked email's sender; replies dated more
# than this before the tracked email was sent are not looked for.
REPLY_DATE_SLACK: Final = timedelta(days=30)
DEFAULT_TOP_LINKS: Final = 20

# Over `tracked_emails t`.
_SENT = "(t.status IN ('sent', 'delivered', 'bounced') OR (t.status = 'queued' AND t.sent_at IS NOT NULL))"
_BOUNCED = (
    "(t.status = 'bounced' OR t.bounced_at IS NOT NULL OR EXISTS (SELECT 1 FROM bounces b "
    "WHERE b.workspace_id = t.workspace_id AND b.email_id = t.id "
    "AND (b.bounce_type IN ('hard', 'blocked') OR b.action = 'failed')))"
)
_MESSAGE_ID = "btrim(t.message_id, '<> ')"

_DEVICES: Final = frozenset(Devices.__struct_fields__)
_CLIENTS: Final = frozenset(Clients.__struct_fields__)


def rate(part: int, whole: int) -> float:
    """part / whole in [0, 1]; 0 when whole is 0."""
    return min(1.0, part / whole) if whole > 0 else 0.0


class _Delivery:
    __slots__ = ("bounced", "sent", "since")

    def __init__(self, sent: int, bounced: int, since: datetime | None) -> None:
        self.sent, self.bounced, self.since = sent, bounced, since

    @property
    def delivered(self) -> int:
        return self.sent - self.bounced

    def stats(self) -> SentStats:
        return SentStats(
            count=self.sent,
            delivered_count=self.delivered,
            bounced_count=self.bounced,
            delivery_rate=rate(self.delivered, self.sent),
        )


async def _delivery(conn: Conn, where: str, params: Sequence[Any]) -> _Delivery:
    """Sent and bounced counts of the tracked emails `t` that `where` picks, and when the
    earliest of them was sent (or created)."""
    cursor = await conn.execute(
        "SELECT count(*) FILTER (WHERE sent OR bounced), count(*) FILTER (WHERE bounced), "
        "min(coalesce(sent_at, created_at)) "
        f"FROM (SELECT t.sent_at, t.created_at, {_SENT} AS sent, {_BOUNCED} AS bounced "
        f"FROM tracked_emails t WHERE {where}) f",
        params,
    )
    row = await cursor.fetchone()
    assert row is not None
    return _Delivery(int(row[0]), int(row[1]), row[2])


async def _replies(
    conn: Conn, where: str, key: object, since: datetime | None
) -> tuple[int, int, datetime | None]:
    """(tracked emails replied to, reply messages, first reply) for the tracked emails `t` that
    `where` picks (it names its one parameter `%(key)s`)."""
    if since is None:
        return 0, 0, None
    reply_filter = (
        "e.workspace_id = s.workspace_id AND e.deleted_at IS NULL AND lower(e.from_email) = s.recipient_email "
        "AND e.email_date >= %(since)s"
    )
    cursor = await conn.execute(
        f"WITH sent AS (SELECT t.id, t.workspace_id, t.recipient_email, {_MESSAGE_ID} AS message_id "
        f"FROM tracked_emails t WHERE {where} AND {_MESSAGE_ID} <> ''), "
        # Two joins, not one with OR: In-Reply-To has an index (emails_in_reply_to).
        "replies AS ("
        "SELECT s.id AS tracked_id, coalesce(e.message_id, e.id::text) AS reply, "
        "coalesce(e.received_at, e.email_date) AS at "
        f"FROM sent s JOIN emails e ON e.in_reply_to = s.message_id AND {reply_filter} "
        "UNION "
        "SELECT s.id, coalesce(e.message_id, e.id::text), coalesce(e.received_at, e.email_date) "
        f"FROM sent s JOIN emails e ON e.reference_ids @> ARRAY[s.message_id] AND {reply_filter}) "
        "SELECT count(DISTINCT tracked_id), count(DISTINCT (tracked_id, reply)), min(at) FROM replies",
        {"key": key, "since": since - REPLY_DATE_SLACK},
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), row[2]


async def _opens_by_source(conn: Conn, where: str, params: Sequence[Any]) -> tuple[Devices, Clients]:
    """Human opens by device and by client, over the tracking_events rows `where` picks."""
    cursor = await conn.execute(
        "SELECT device, client, count(*) FROM tracking_events "
        f"WHERE {where} AND event_type = 'open' AND NOT is_machine GROUP BY device, client",
        params,
    )
    devices: dict[str, int] = {}
    clients: dict[str, int] = {}
    for device, client, count in await cursor.fetchall():
        device = device if device in _DEVICES else "unknown"
        client = client if client in _CLIENTS else "other"
        devices[device] = devices.get(device, 0) + count
        clients[client] = clients.get(client, 0) + count
    return Devices(**devices), Clients(**clients)


async def email_analytics(conn: Conn, email_id: int) -> EmailAnalytics:
    """One tracked email's analytics; NotFound if there is no such tracked email."""
    cursor = await conn.execute(
        "SELECT t.campaign_id, t.recipient_email, t.subject, t.status, t.sent_at, "
        "coalesce(g.opens, 0), coalesce(g.human_opens, 0), coalesce(g.clicks, 0), coalesce(g.human_clicks, 0), "
        "coalesce(g.unique_clicked_links, 0), coalesce(g.human_unique_clicked_links, 0), "
        "g.first_open_at, g.last_open_at, g.first_human_open_at, g.unsubscribed_at "
        "FROM tracked_emails t LEFT JOIN email_engagement g ON g.email_id = t.id WHERE t.id = %s",
        (email_id,),
    )
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no tracked email {email_id}")
    (
        campaign_id, recipient_email, subject, status, sent_at, opens, human_opens, clicks, human_clicks,
        clicked_links, human_clicked_links, first_open_at, last_open_at, first_human_open_at, unsubscribed_at,
    ) = row  # fmt: skip
    delivery = await _delivery(conn, "t.id = %s", (email_id,))
    delivered = delivery.delivered

    cursor = await conn.execute(
        "SELECT position, url, clicks, human_clicks FROM tracking_links "
        "WHERE email_id = %s AND clicks > 0 ORDER BY position",
        (email_id,),
    )
    links = [
        LinkClicks(
            position=position,
            url=url,
            clicks=link_clicks,
            unique_clicks=1,
            human_clicks=link_human_clicks,
            human_unique_clicks=int(link_human_clicks > 0),
        )
        for position, url, link_clicks, link_human_clicks in await cursor.fetchall()
    ]
    engagement = EmailEngagement(
        unique_opens=int(opens > 0),
        total_opens=opens,
        open_rate=rate(int(opens > 0), delivered),
        first_open_at=first_open_at,
        last_open_at=last_open_at,
        unique_clicks=clicked_links,
        total_clicks=clicks,
        click_rate=rate(int(clicks > 0), delivered),
        human=HumanEngagement(
            unique_opens=int(human_opens > 0),
            total_opens=human_opens,
            open_rate=rate(int(human_opens > 0), delivered),
            first_open_at=first_human_open_at,
            unique_clicks=human_clicked_links,
            total_clicks=human_clicks,
            click_rate=rate(int(human_clicks > 0), delivered),
        ),
        clicked_links=links,
    )
    replied, reply_messages, first_reply_at = await _replies(conn, "t.id = %(key)s", email_id, delivery.since)
    devices, clients = await _opens_by_source(conn, "email_id = %s", (email_id,))
    return EmailAnalytics(
        email_id=email_id,
        campaign_id=campaign_id,
        recipient_email=recipient_email,
        subject=subject,
        status=status,
        sent_at=sent_at,
        unsubscribed_at=unsubscribed_at,
        sent=delivery.stats(),
        engagement=engagement,
        replies=Replies(
            count=reply_messages, first_reply_at=first_reply_at, reply_rate=rate(replied, delivered)
        ),
        devices=devices,
        clients=clients,
    )


async def campaign_analytics(
    conn: Conn, campaign_id: UUID, *, top_links: int = DEFAULT_TOP_LINKS
) -> CampaignAnalytics:
    """A campaign's analytics over its tracked emails; NotFound if there is no such campaign."""
    cursor = await conn.execute("SELECT name, status FROM campaigns WHERE id = %s", (campaign_id,))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no campaign {campaign_id}")
    name, status = row
    delivery = await _delivery(conn, "t.campaign_id = %s", (campaign_id,))
    delivered = delivery.delivered

    cursor = await conn.execute(
        "SELECT opens, unique_opens, human_opens, human_unique_opens, clicks, unique_clicks, human_clicks, "
        "human_unique_clicks, unsubscribes FROM campaign_engagement WHERE campaign_id = %s",
        (campaign_id,),
    )
    counters = await cursor.fetchone() or (0,) * 9
    cursor = await conn.execute(
        "SELECT min(first_open_at), max(last_open_at), min(first_human_open_at) FROM email_engagement "
        "WHERE campaign_id = %s",
        (campaign_id,),
    )
    times = await cursor.fetchone()
    assert times is not None
    engagement = _engagement(counters, times, delivered)
    unsubscribes = int(counters[8])

    cursor = await conn.execute(
        "SELECT hour, opens, clicks, human_opens, human_clicks FROM campaign_engagement_hourly "
        "WHERE campaign_id = %s ORDER BY hour",
        (campaign_id,),
    )
    hourly = [
        HourlyEngagement(hour=hour, opens=o, clicks=c, human_opens=ho, human_clicks=hc)
        for hour, o, c, ho, hc in await cursor.fetchall()
    ]
    cursor = await conn.execute(
        "SELECT url, sum(clicks)::int, (count(DISTINCT email_id) FILTER (WHERE clicks > 0))::int, "
        "sum(human_clicks)::int, (count(DISTINCT email_id) FILTER (WHERE human_clicks > 0))::int "
        "FROM tracking_links WHERE campaign_id = %s GROUP BY url HAVING sum(clicks) > 0 "
        "ORDER BY 2 DESC, url LIMIT %s",
        (campaign_id, top_links),
    )
    links = [
        LinkClicks(url=url, clicks=c, unique_clicks=u, human_clicks=hc, human_unique_clicks=hu)
        for url, c, u, hc, hu in await cursor.fetchall()
    ]
    replied, _, first_reply_at = await _replies(conn, "t.campaign_id = %(key)s", campaign_id, delivery.since)
    devices, clients = await _opens_by_source(conn, "campaign_id = %s", (campaign_id,))
    return CampaignAnalytics(
        **_audience(delivery, engagement, unsubscribes),
        campaign_id=campaign_id,
        name=name,
        status=status,
        replies=Replies(count=replied, first_reply_at=first_reply_at, reply_rate=rate(replied, delivered)),
        devices=devices,
        clients=clients,
        engagement_by_hour=hourly,
        top_links=links,
        variants=await _variants(conn, campaign_id),
    )


def _audience(delivery: _Delivery, engagement: Engagement, unsubscribes: int) -> dict[str, Any]:
    """The AudienceFigures fields of a campaign or variant (its own fields are added to these)."""
    figures = AudienceFigures(
        sent=delivery.stats(),
        engagement=engagement,
        click_to_open_rate=rate(engagement.unique_clicks, engagement.unique_opens),
        human_click_to_open_rate=rate(engagement.human.unique_clicks, engagement.human.unique_opens),
        unsubscribes=unsubscribes,
        unsubscribe_rate=rate(unsubscribes, delivery.delivered),
    )
    return msgspec.structs.asdict(figures)


def _engagement(counters: Sequence[int], times: Sequence[datetime | None], delivered: int) -> Engagement:
    """Engagement from (opens, unique opens, human opens, human unique opens, clicks, unique clicks,
    human clicks, human unique clicks, ...) and (first open, last open, first human open)."""
    (
        opens,
        unique_opens,
        human_opens,
        human_unique_opens,
        clicks,
        unique_clicks,
        human_clicks,
        human_unique_clicks,
    ) = (int(value) for value in counters[:8])
    first_open_at, last_open_at, first_human_open_at = times
    return Engagement(
        unique_opens=unique_opens,
        total_opens=opens,
        open_rate=rate(unique_opens, delivered),
        first_open_at=first_open_at,
        last_open_at=last_open_at,
        unique_clicks=unique_clicks,
        total_clicks=clicks,
        click_rate=rate(unique_clicks, delivered),
        human=HumanEngagement(
            unique_opens=human_unique_opens,
            total_opens=human_opens,
            open_rate=rate(human_unique_opens, delivered),
            first_open_at=first_human_open_at,
            unique_clicks=human_unique_clicks,
            total_clicks=human_clicks,
            click_rate=rate(human_unique_clicks, delivered),
        ),
    )


# Per variant, over its tracked emails' engagement rows: the columns `_engagement` reads, the
# unsubscribed emails, then the times.
_VARIANT_ENGAGEMENT = (
    "SELECT t.variant_id, coalesce(sum(e.opens), 0), count(*) FILTER (WHERE e.opens > 0), "
    "coalesce(sum(e.human_opens), 0), count(*) FILTER (WHERE e.human_opens > 0), "
    "coalesce(sum(e.clicks), 0), count(*) FILTER (WHERE e.clicks > 0), "
    "coalesce(sum(e.human_clicks), 0), count(*) FILTER (WHERE e.human_clicks > 0), "
    "count(*) FILTER (WHERE e.unsubscribed_at IS NOT NULL), "
    "min(e.first_open_at), max(e.last_open_at), min(e.first_human_open_at) "
    "FROM tracked_emails t JOIN email_engagement e ON e.email_id = t.id "
    "WHERE t.campaign_id = %s AND t.variant_id IS NOT NULL GROUP BY t.variant_id"
)


async def _variants(conn: Conn, campaign_id: UUID) -> list[VariantAnalytics]:
    """Each A/B variant's figures: the campaign's, over the tracked emails sent with that variant."""
    cursor = await conn.execute(
        "SELECT id, name, status FROM campaign_variants WHERE campaign_id = %s ORDER BY created_at, name",
        (campaign_id,),
    )
    variants = await cursor.fetchall()
    if not variants:
        return []
    cursor = await conn.execute(
        "SELECT variant_id, count(*) FILTER (WHERE sent OR bounced), count(*) FILTER (WHERE bounced) "
        f"FROM (SELECT t.variant_id, {_SENT} AS sent, {_BOUNCED} AS bounced FROM tracked_emails t "
        "WHERE t.campaign_id = %s AND t.variant_id IS NOT NULL) f GROUP BY variant_id",
        (campaign_id,),
    )
    delivery = {row[0]: _Delivery(int(row[1]), int(row[2]), None) for row in await cursor.fetchall()}
    cursor = await conn.execute(_VARIANT_ENGAGEMENT, (campaign_id,))
    engaged = {row[0]: row[1:] for row in await cursor.fetchall()}
    found = []
    for variant_id, name, status in variants:
        sent = delivery.get(variant_id, _Delivery(0, 0, None))
        row = engaged.get(variant_id, (0,) * 9 + (None,) * 3)
        engagement = _engagement(row[:8], row[9:12], sent.delivered)
        found.append(
            VariantAnalytics(
                **_audience(sent, engagement, int(row[8])), variant_id=variant_id, name=name, status=status
            )
        )
    return found
