"""Tracking analytics and tracked-email registration bodies. JSON names are camelCase.

The shapes follow the design document's `emailAnalytics` query (sent, engagement, replies,
devices, clients) for one tracked email and for a campaign; what each figure counts is written
down in mail.tracking.analytics. Every engagement block has a `human` twin with the same figures
over human events only (events the classifier did not mark as a machine's).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

# -- analytics ------------------------------------------------------------------------------------


class SentStats(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Delivery: `count` = `delivered_count` + `bounced_count`."""

    count: int
    delivered_count: int
    bounced_count: int
    delivery_rate: float


class HumanEngagement(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Engagement over human events only (machine opens and clicks left out)."""

    unique_opens: int
    total_opens: int
    open_rate: float
    first_open_at: datetime | None
    unique_clicks: int
    total_clicks: int
    click_rate: float


class LinkClicks(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Clicks on one link. `position` is the link's place in one email (None over a campaign,
    where links are grouped by URL); `unique_clicks` counts tracked emails that clicked it."""

    url: str
    clicks: int
    unique_clicks: int
    human_clicks: int
    human_unique_clicks: int
    position: int | None = None


class Engagement(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    unique_opens: int
    total_opens: int
    open_rate: float
    first_open_at: datetime | None
    last_open_at: datetime | None
    unique_clicks: int
    total_clicks: int
    click_rate: float
    human: HumanEngagement


class EmailEngagement(Engagement, frozen=True, kw_only=True, rename="camel"):
    """One email's engagement with its clicked links, by position."""

    clicked_links: list[LinkClicks]


class Replies(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """For an email, `count` is reply messages; for a campaign, tracked emails replied to."""

    count: int
    first_reply_at: datetime | None
    reply_rate: float


class Devices(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Human opens by device; `unknown` where the user agent did not say."""

    desktop: int = 0
    mobile: int = 0
    tablet: int = 0
    unknown: int = 0


class Clients(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Human opens by mail client."""

    gmail: int = 0
    outlook: int = 0
    apple: int = 0
    yahoo: int = 0
    other: int = 0


class EmailAnalytics(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    email_id: int
    campaign_id: UUID | None
    recipient_email: str
    subject: str | None
    status: str
    sent_at: datetime | None
    unsubscribed_at: datetime | None
    sent: SentStats
    engagement: EmailEngagement
    replies: Replies
    devices: Devices
    clients: Clients


class HourlyEngagement(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    hour: datetime  # the start of the hour, UTC
    opens: int
    clicks: int
    human_opens: int
    human_clicks: int


class AudienceFigures(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What a campaign, and each of its A/B variants, reports over the emails it sent."""

    sent: SentStats
    engagement: Engagement
    click_to_open_rate: float
    human_click_to_open_rate: float
    unsubscribes: int
    unsubscribe_rate: float


class VariantAnalytics(AudienceFigures, frozen=True, kw_only=True, rename="camel"):
    """One A/B variant's figures over the tracked emails sent with it (as the campaign's are counted)."""

    variant_id: UUID
    name: str
    status: str


class CampaignAnalytics(AudienceFigures, frozen=True, kw_only=True, rename="camel"):
    campaign_id: UUID
    name: str
    status: str
    replies: Replies
    devices: Devices
    clients: Clients
    engagement_by_hour: list[HourlyEngagement]
    top_links: list[LinkClicks]
    # Each variant's figures, in the campaign's variant order (empty when it is not an A/B test).
    variants: list[VariantAnalytics]


# -- registering a tracked email ------------------------------------------------------------------


class RegisterTrackedEmail(
    msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, rename="camel"
):
    """An outgoing message to track: its HTML comes back instrumented."""

    recipient_email: str
    subject: str | None = None
    message_id: str | None = None
    html: str | None = None
    track_opens: bool = True
    track_clicks: bool = True
    account_id: UUID | None = None


class TrackedLinkUrl(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    position: int
    url: str
    tracked_url: str


class RegisteredTrackedEmail(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What to send: `html` instrumented, and the headers of an RFC 8058 one-click unsubscribe."""

    id: int
    html: str | None
    pixel_url: str | None
    unsubscribe_url: str
    list_unsubscribe: str
    list_unsubscribe_post: str
    links: list[TrackedLinkUrl]
