"""Tracking analytics against a recount from the raw events, and the tracking API routes.

A campaign of tracked emails gets a few hundred seeded-random events (human and machine user
agents, HEAD probes, Apple MPP, duplicates, a batch delivered twice) through store_events; every
figure of email_analytics and campaign_analytics must equal what the test counts itself from the
tracking_events rows. The API part runs the FastAPI app in process (httpx over ASGI).
"""

from __future__ import annotations

import random
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import msgspec
import psycopg
import pytest

from mail import auth
from mail.config import load_settings
from mail.services import Services, open_services
from mail.store.pool import Pool
from mail.tracking import registry
from mail.tracking.analytics import campaign_analytics, email_analytics, rate
from mail.tracking.records import EventKind, RawEvent
from mail.tracking.store import store_events
from mail.tracking.tokens import TokenKind, TokenSigner
from models.analytics import CampaignAnalytics, EmailAnalytics
from models.tenancy import NewApiKey, User, Workspace
from serve.api.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.storage]

SENT_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
URLS = [f"https://shop.example.com/{name}" for name in ("spring", "boots", "coats", "faq", "blog")]
USER_AGENTS = {
    "gmail_proxy": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "yahoo_proxy": "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "curl": "curl/8.5.0",
    "iphone_mail": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148",
    "ipad_mail": "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "outlook": "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)",
    "chrome_windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "chrome_android": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
}
KINDS: list[EventKind] = ["open", "click", "unsubscribe"]
APPLE_IP = "17.58.0.5"  # Apple's network: Apple Mail's WebKit UA from here is an MPP prefetch


def _ip(rng: random.Random) -> str:
    return f"198.51.100.{rng.randrange(1, 255)}"


# -- the campaign and its events --------------------------------------------------------------------


@dataclass
class Campaign:
    workspace_id: UUID
    campaign_id: UUID
    owner: User
    tracked: dict[int, str] = field(default_factory=dict)  # tracked email id -> Message-ID as given
    recipients: dict[int, str] = field(default_factory=dict)
    links: dict[int, list[str]] = field(default_factory=dict)  # id -> URL by position
    sent_ids: list[int] = field(default_factory=list)
    bounced_ids: list[int] = field(default_factory=list)
    queued_id: int = 0
    event_ids: set[bytes] = field(default_factory=set)
    variant_of: dict[int, UUID] = field(default_factory=dict)  # tracked email id -> its A/B variant


async def _workspace(conn: psycopg.AsyncConnection[Any], label: str) -> tuple[Workspace, User]:
    suffix = uuid.uuid4().hex[:8]
    return await auth.create_workspace(conn, f"{label} {suffix}", owner_email=f"owner-{suffix}@example.com")


async def _make_campaign(pool: Pool, rng: random.Random, emails: int = 30) -> Campaign:
    async with pool.connection() as conn:
        workspace, owner = await _workspace(conn, "Analytics")
        cursor = await conn.execute(
            "INSERT INTO campaigns (workspace_id, created_by, name, status) VALUES (%s, %s, 'Spring sale', 'sent') "
            "RETURNING id",
            (workspace.id, owner.id),
        )
        row = await cursor.fetchone()
        assert row is not None
        campaign = Campaign(workspace_id=workspace.id, campaign_id=row[0], owner=owner)
        variant_ids = []
        for name in ("A", "B"):  # an A/B test: every other email is B's
            cursor = await conn.execute(
                "INSERT INTO campaign_variants (campaign_id, workspace_id, name, percentage) "
                "VALUES (%s, %s, %s, 50) RETURNING id",
                (campaign.campaign_id, workspace.id, name),
            )
            variant = await cursor.fetchone()
            assert variant is not None
            variant_ids.append(variant[0])
        tag = uuid.uuid4().hex[:8]
        # Outbox row ids nothing else uses (a tracked email is unique per outbox row).
        first_row = 10**12 + uuid.uuid4().int % 10**9 * 1000
        for index in range(emails + 1):
            queued = index == emails  # one never sent: in no figure
            recipient = f"reader{index}-{tag}@example.org"
            message_id = f"<spring-{index}-{tag}@mailray.test>"
            email_id = await registry.create_tracked_email(
                conn,
                registry.NewTrackedEmail(
                    workspace_id=workspace.id,
                    recipient_email=recipient.upper() if index % 7 == 0 else recipient,
                    campaign_id=campaign.campaign_id,
                    variant_id=variant_ids[index % 2],
                    recipient_id=first_row + index,
                    message_id=message_id,
                    subject="Spring sale",
                    sent_at=None if queued else SENT_AT,
                ),
            )
            urls = rng.sample(URLS, rng.randint(2, 4))
            if index % 5 == 0:
                urls.append(urls[0])  # the same URL twice in one email: two links
            await registry.store_links(
                conn,
                workspace.id,
                email_id,
                [registry.LinkRow(position=p, url=u, text=f"link {p}") for p, u in enumerate(urls)],
            )
            campaign.tracked[email_id] = message_id
            campaign.variant_of[email_id] = variant_ids[index % 2]
            campaign.recipients[email_id] = recipient
            campaign.links[email_id] = urls
            if queued:
                campaign.queued_id = email_id
            else:
                campaign.sent_ids.append(email_id)
        # Three bounces, three ways; a soft (delayed) bounce is no bounce.
        first, second, third, fourth = campaign.sent_ids[1:5]
        await conn.execute("UPDATE tracked_emails SET status = 'bounced' WHERE id = %s", (first,))
        await conn.execute("UPDATE tracked_emails SET bounced_at = %s WHERE id = %s", (SENT_AT, second))
        for email_id, bounce_type, action in ((third, "hard", "failed"), (fourth, "soft", "delayed")):
            await conn.execute(
                "INSERT INTO bounces (workspace_id, email_id, campaign_id, recipient_email, bounce_type, action) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    workspace.id,
                    email_id,
                    campaign.campaign_id,
                    campaign.recipients[email_id],
                    bounce_type,
                    action,
                ),
            )
        campaign.bounced_ids = [first, second, third]
        await conn.commit()
    return campaign


def _event(rng: random.Random, campaign: Campaign, engaged: Sequence[int]) -> RawEvent:
    email_id = rng.choice(engaged)
    kind = rng.choices(KINDS, weights=[60, 35, 5])[0]
    if kind == "click" and email_id % 3 == 0:
        kind = "open"  # these recipients only look: fewer emails clicked than opened
    agent = rng.choice(list(USER_AGENTS))
    ip = APPLE_IP if agent in ("iphone_mail", "ipad_mail") and rng.random() < 0.3 else _ip(rng)
    method = "HEAD" if kind != "unsubscribe" and rng.random() < 0.1 else "GET"
    if kind == "unsubscribe":
        method = "POST" if rng.random() < 0.8 else "GET"
    # Most events over two days; a few clicks seconds after sending (a link scanner's).
    delay = rng.uniform(2, 8) if kind == "click" and rng.random() < 0.08 else rng.uniform(60, 48 * 3600)
    link = rng.randrange(len(campaign.links[email_id])) if kind == "click" else None
    event_id = rng.randbytes(16)
    campaign.event_ids.add(event_id)
    return RawEvent(
        event_id=event_id,
        kind=kind,
        email_id=email_id,
        recipient_id=1000,
        link=link,
        occurred_at_us=int((SENT_AT + timedelta(seconds=delay)).timestamp() * 1_000_000),
        ip=ip,
        user_agent=USER_AGENTS[agent],
        method=method,
    )


def _scanner_burst(campaign: Campaign) -> list[RawEvent]:
    """Every link of one email clicked within a second, an hour after sending."""
    email_id = next(i for i in campaign.sent_ids if len(campaign.links[i]) >= 3)
    start = SENT_AT + timedelta(hours=1)
    events = []
    for position in range(len(campaign.links[email_id])):
        event_id = uuid.uuid4().bytes
        campaign.event_ids.add(event_id)
        at = start + timedelta(milliseconds=200 * position)
        events.append(
            RawEvent(
                event_id=event_id, kind="click", email_id=email_id, recipient_id=None, link=position,
                occurred_at_us=int(at.timestamp() * 1_000_000), ip="198.51.100.9",
                user_agent=USER_AGENTS["chrome_windows"], method="GET",
            )
        )  # fmt: skip
    return events


async def _deliver(pool: Pool, batches: Sequence[Sequence[RawEvent]]) -> None:
    for batch in batches:
        async with pool.connection() as conn, conn.transaction():
            await store_events(conn, batch)


@pytest.fixture(scope="module")
async def campaign(db_pool: Pool) -> Campaign:
    rng = random.Random(20260302)
    made = await _make_campaign(db_pool, rng)
    # Two thirds of the recipients do anything at all, so rates are neither 0 nor 1.
    engaged = rng.sample(made.sent_ids, 20)
    events = [_event(rng, made, engaged) for _ in range(420)]
    size = len(events) // 4
    batches = [list(events[i * size : (i + 1) * size]) for i in range(3)] + [list(events[3 * size :])]
    burst = _scanner_burst(made)
    batches[0] += burst  # in one batch, where the writer sees the links clicked together
    events += burst
    # The campaign's first open is the Gmail proxy's: first open and first human open differ.
    proxy_id = uuid.uuid4().bytes
    made.event_ids.add(proxy_id)
    batches[1].append(
        RawEvent(
            event_id=proxy_id, kind="open", email_id=engaged[0], recipient_id=None, link=None,
            occurred_at_us=int((SENT_AT + timedelta(seconds=30)).timestamp() * 1_000_000), ip=_ip(rng),
            user_agent=USER_AGENTS["gmail_proxy"], method="GET",
        )
    )  # fmt: skip
    # The same event twice in one batch, redelivered in a later batch, and one batch whole again.
    batches[0] += rng.sample(batches[0], 10)
    batches[2] += rng.sample(batches[1], 15)
    batches.insert(3, list(batches[1]))
    await _deliver(db_pool, batches)
    await _deliver(db_pool, [rng.sample(events, 40)])  # a redelivery after everything
    await _add_replies(db_pool, made)
    return made


# -- replies --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedReplies:
    by_email: dict[int, tuple[int, datetime]]
    first: datetime


async def _add_replies(pool: Pool, campaign: Campaign) -> None:
    a, b, c = campaign.sent_ids[10:13]
    bare = {email_id: campaign.tracked[email_id].strip("<>") for email_id in (a, b, c)}
    async with pool.connection() as conn:
        accounts = []
        for name in ("one", "two"):
            cursor = await conn.execute(
                "INSERT INTO email_accounts (workspace_id, user_id, email, provider) VALUES (%s, %s, %s, 'gmail') "
                "RETURNING id",
                (campaign.workspace_id, campaign.owner.id, f"{name}-{uuid.uuid4().hex[:8]}@mailray.test"),
            )
            row = await cursor.fetchone()
            assert row is not None
            accounts.append(row[0])
        other_workspace, other_owner = await _workspace(conn, "Elsewhere")
        cursor = await conn.execute(
            "INSERT INTO email_accounts (workspace_id, user_id, email, provider) VALUES (%s, %s, %s, 'gmail') "
            "RETURNING id",
            (other_workspace.id, other_owner.id, f"x-{uuid.uuid4().hex[:8]}@mailray.test"),
        )
        row = await cursor.fetchone()
        assert row is not None
        elsewhere = row[0]

        def at(hours: float) -> datetime:
            return SENT_AT + timedelta(hours=hours)

        rows: list[tuple[Any, ...]] = [
            # workspace, account, message id, in_reply_to, references, from, email_date, received_at, deleted
            (campaign.workspace_id, accounts[0], "r1@example.org", bare[a], [], campaign.recipients[a].upper(),
             at(5), at(5), None),
            # Replies through References only, synced into two mailboxes: one reply.
            (campaign.workspace_id, accounts[0], "r2@example.org", "other@example.org", ["x@y", bare[a]],
             campaign.recipients[a], at(7), at(7.1), None),
            (campaign.workspace_id, accounts[1], "r2@example.org", "other@example.org", ["x@y", bare[a]],
             campaign.recipients[a], at(7), at(7.2), None),
            # Both headers name it: one reply.
            (campaign.workspace_id, accounts[0], "r3@example.org", bare[b], [bare[b]], campaign.recipients[b],
             at(3), at(3), None),
            # Not replies: another sender, deleted, another workspace, dated long before sending.
            (campaign.workspace_id, accounts[0], "n1@example.org", bare[a], [], "someone@else.org", at(1), at(1), None),
            (campaign.workspace_id, accounts[0], "n2@example.org", bare[b], [], campaign.recipients[b], at(2), at(2),
             at(9)),
            (other_workspace.id, elsewhere, "n3@example.org", bare[a], [], campaign.recipients[a], at(1), at(1), None),
            (campaign.workspace_id, accounts[0], "n4@example.org", bare[c], [], campaign.recipients[c],
             SENT_AT - timedelta(days=60), None, None),
        ]  # fmt: skip
        for row_values in rows:
            await conn.execute(
                "INSERT INTO emails (workspace_id, account_id, message_id, in_reply_to, reference_ids, from_email, "
                "email_date, received_at, deleted_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                row_values,
            )
        await conn.commit()


def _expected_replies(campaign: Campaign) -> ExpectedReplies:
    a, b = campaign.sent_ids[10:12]
    at = SENT_AT + timedelta(hours=3)
    return ExpectedReplies(by_email={a: (2, SENT_AT + timedelta(hours=5)), b: (1, at)}, first=at)


# -- the recount ----------------------------------------------------------------------------------


class EventRow(msgspec.Struct, frozen=True):
    event_id: UUID
    email_id: int
    kind: str
    position: int | None
    url: str | None
    occurred_at: datetime
    is_machine: bool
    device: str | None
    client: str | None


async def _events(pool: Pool, campaign_id: UUID) -> list[EventRow]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT event_id, email_id, event_type, link_position, link_url, occurred_at, is_machine, device, "
            "client FROM tracking_events WHERE campaign_id = %s",
            (campaign_id,),
        )
        return [EventRow(*row) for row in await cursor.fetchall()]


def _opens_by(events: Sequence[EventRow], attribute: str, names: Sequence[str]) -> dict[str, int]:
    counts = Counter(getattr(e, attribute) for e in events if e.kind == "open" and not e.is_machine)
    return {name: counts.get(name, 0) for name in names}


def _check_email(
    result: EmailAnalytics, events: Sequence[EventRow], delivered: int, replies: tuple[int, datetime | None]
) -> None:
    opens = [e for e in events if e.kind == "open"]
    human_opens = [e for e in opens if not e.is_machine]
    clicks = [e for e in events if e.kind == "click"]
    human_clicks = [e for e in clicks if not e.is_machine]
    unsubscribes = [e for e in events if e.kind == "unsubscribe"]
    engagement = result.engagement
    assert engagement.total_opens == len(opens)
    assert engagement.unique_opens == int(bool(opens))
    assert engagement.open_rate == rate(int(bool(opens)), delivered)
    assert engagement.first_open_at == min((e.occurred_at for e in opens), default=None)
    assert engagement.last_open_at == max((e.occurred_at for e in opens), default=None)
    assert engagement.total_clicks == len(clicks)
    assert engagement.unique_clicks == len({e.position for e in clicks})
    assert engagement.click_rate == rate(int(bool(clicks)), delivered)
    human = engagement.human
    assert human.total_opens == len(human_opens)
    assert human.unique_opens == int(bool(human_opens))
    assert human.open_rate == rate(int(bool(human_opens)), delivered)
    assert human.first_open_at == min((e.occurred_at for e in human_opens), default=None)
    assert human.total_clicks == len(human_clicks)
    assert human.unique_clicks == len({e.position for e in human_clicks})
    assert human.click_rate == rate(int(bool(human_clicks)), delivered)
    by_position: dict[int, list[EventRow]] = defaultdict(list)
    for e in clicks:
        assert e.position is not None
        by_position[e.position].append(e)
    assert [
        (link.position, link.url, link.clicks, link.unique_clicks, link.human_clicks, link.human_unique_clicks)
        for link in engagement.clicked_links
    ] == [
        (
            position, by_position[position][0].url, len(by_position[position]), 1,
            sum(not e.is_machine for e in by_position[position]),
            int(any(not e.is_machine for e in by_position[position])),
        )
        for position in sorted(by_position)
    ]  # fmt: skip
    assert result.unsubscribed_at == min((e.occurred_at for e in unsubscribes), default=None)
    assert msgspec.to_builtins(result.devices) == _opens_by(
        events, "device", ["desktop", "mobile", "tablet", "unknown"]
    )
    assert msgspec.to_builtins(result.clients) == _opens_by(
        events, "client", ["gmail", "outlook", "apple", "yahoo", "other"]
    )
    count, first = replies
    assert (result.replies.count, result.replies.first_reply_at) == (count, first)
    assert result.replies.reply_rate == rate(int(count > 0), delivered)


async def test_events_are_stored_once(campaign: Campaign, db_pool: Pool) -> None:
    events = await _events(db_pool, campaign.campaign_id)
    assert len(events) == len(campaign.event_ids)
    assert {e.event_id.bytes for e in events} == campaign.event_ids


async def test_the_events_are_a_real_mix(campaign: Campaign, db_pool: Pool) -> None:
    """The recount below means something only if both kinds of event are there for each figure."""
    events = await _events(db_pool, campaign.campaign_id)
    for kind in ("open", "click", "unsubscribe"):
        machine = {e.is_machine for e in events if e.kind == kind}
        assert machine == {True, False}, kind
    human_opens = [e for e in events if e.kind == "open" and not e.is_machine]
    assert {e.device for e in human_opens} >= {"desktop", "mobile", "tablet"}
    assert {e.client for e in human_opens} >= {"outlook", "apple", "other"}
    assert any(
        e.kind == "click" and e.is_machine and e.occurred_at < SENT_AT + timedelta(seconds=10) for e in events
    )
    burst_start = SENT_AT + timedelta(hours=1)
    burst = [
        e
        for e in events
        if e.kind == "click" and burst_start <= e.occurred_at < burst_start + timedelta(seconds=2)
    ]
    assert len(burst) >= 3 and all(e.is_machine for e in burst)


async def test_email_analytics_equal_a_recount(campaign: Campaign, db_pool: Pool) -> None:
    events = await _events(db_pool, campaign.campaign_id)
    by_email: dict[int, list[EventRow]] = defaultdict(list)
    for e in events:
        by_email[e.email_id].append(e)
    replies = _expected_replies(campaign)
    async with db_pool.connection() as conn:
        for email_id in [*campaign.sent_ids, campaign.queued_id]:
            result = await email_analytics(conn, email_id)
            bounced = email_id in campaign.bounced_ids
            sent = email_id != campaign.queued_id
            delivered = int(sent and not bounced)
            assert (result.sent.count, result.sent.delivered_count, result.sent.bounced_count) == (
                int(sent),
                delivered,
                int(bounced),
            )
            assert result.campaign_id == campaign.campaign_id
            assert result.recipient_email == campaign.recipients[email_id].lower()
            _check_email(result, by_email[email_id], delivered, replies.by_email.get(email_id, (0, None)))


async def test_campaign_analytics_equal_a_recount(campaign: Campaign, db_pool: Pool) -> None:
    events = await _events(db_pool, campaign.campaign_id)
    async with db_pool.connection() as conn:
        result: CampaignAnalytics = await campaign_analytics(conn, campaign.campaign_id, top_links=100)
    sent, bounced = len(campaign.sent_ids), len(campaign.bounced_ids)
    delivered = sent - bounced
    assert (result.sent.count, result.sent.delivered_count, result.sent.bounced_count) == (
        sent,
        delivered,
        bounced,
    )
    assert result.sent.delivery_rate == delivered / sent

    def emails_with(kind: str, human: bool = False) -> int:
        return len({e.email_id for e in events if e.kind == kind and (not human or not e.is_machine)})

    def total(kind: str, human: bool = False) -> int:
        return sum(1 for e in events if e.kind == kind and (not human or not e.is_machine))

    engagement = result.engagement
    opens = [e.occurred_at for e in events if e.kind == "open"]
    assert (engagement.total_opens, engagement.unique_opens) == (total("open"), emails_with("open"))
    assert (engagement.total_clicks, engagement.unique_clicks) == (total("click"), emails_with("click"))
    assert (engagement.first_open_at, engagement.last_open_at) == (min(opens), max(opens))
    assert engagement.first_open_at == SENT_AT + timedelta(seconds=30)
    assert engagement.open_rate == rate(emails_with("open"), delivered)
    assert engagement.click_rate == rate(emails_with("click"), delivered)
    human = engagement.human
    assert (human.total_opens, human.unique_opens) == (total("open", True), emails_with("open", True))
    assert (human.total_clicks, human.unique_clicks) == (total("click", True), emails_with("click", True))
    assert human.first_open_at == min(e.occurred_at for e in events if e.kind == "open" and not e.is_machine)
    assert human.open_rate == rate(emails_with("open", True), delivered)
    assert human.click_rate == rate(emails_with("click", True), delivered)
    assert result.click_to_open_rate == rate(emails_with("click"), emails_with("open"))
    assert result.human_click_to_open_rate == rate(emails_with("click", True), emails_with("open", True))
    # Which clicks count as machine ones varies with the generated timing; the recount above is exact.
    assert 0 < human.click_rate <= engagement.click_rate < engagement.open_rate < 1
    assert 0 < result.click_to_open_rate < 1 and 0 < result.unsubscribe_rate < 1
    assert result.unsubscribes == emails_with("unsubscribe")
    assert result.unsubscribe_rate == rate(emails_with("unsubscribe"), delivered)

    links: dict[str, list[EventRow]] = defaultdict(list)
    for e in events:
        if e.kind == "click":
            assert e.url is not None
            links[e.url].append(e)
    expected_links = {
        url: (
            len(clicks),
            len({e.email_id for e in clicks}),
            sum(not e.is_machine for e in clicks),
            len({e.email_id for e in clicks if not e.is_machine}),
        )
        for url, clicks in links.items()
    }
    assert {
        link.url: (link.clicks, link.unique_clicks, link.human_clicks, link.human_unique_clicks)
        for link in result.top_links
    } == expected_links
    assert [link.clicks for link in result.top_links] == sorted(
        (link.clicks for link in result.top_links), reverse=True
    )
    async with db_pool.connection() as conn:
        top_two = await campaign_analytics(conn, campaign.campaign_id, top_links=2)
    assert top_two.top_links == result.top_links[:2]

    hours: dict[datetime, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for e in events:
        if e.kind in ("open", "click"):
            counts = hours[e.occurred_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)]
            offset = 0 if e.kind == "open" else 1
            counts[offset] += 1
            counts[offset + 2] += not e.is_machine
    assert [
        (h.hour, h.opens, h.clicks, h.human_opens, h.human_clicks) for h in result.engagement_by_hour
    ] == [(hour, *counts) for hour, counts in sorted(hours.items())]
    assert len(result.engagement_by_hour) > 24

    assert msgspec.to_builtins(result.devices) == _opens_by(
        events, "device", ["desktop", "mobile", "tablet", "unknown"]
    )
    assert msgspec.to_builtins(result.clients) == _opens_by(
        events, "client", ["gmail", "outlook", "apple", "yahoo", "other"]
    )
    replies = _expected_replies(campaign)
    assert (result.replies.count, result.replies.first_reply_at) == (len(replies.by_email), replies.first)
    assert result.replies.reply_rate == rate(len(replies.by_email), delivered)


async def test_each_variants_analytics_equal_a_recount_of_its_emails(
    campaign: Campaign, db_pool: Pool
) -> None:
    events = await _events(db_pool, campaign.campaign_id)
    async with db_pool.connection() as conn:
        result = await campaign_analytics(conn, campaign.campaign_id)
    assert [variant.name for variant in result.variants] == ["A", "B"]
    assert sum(variant.sent.count for variant in result.variants) == result.sent.count
    assert sum(variant.engagement.total_opens for variant in result.variants) == result.engagement.total_opens
    for variant in result.variants:
        mine = {email_id for email_id, of in campaign.variant_of.items() if of == variant.variant_id}
        sent, bounced = len(mine & set(campaign.sent_ids)), len(mine & set(campaign.bounced_ids))
        delivered = sent - bounced
        assert (variant.sent.count, variant.sent.delivered_count, variant.sent.bounced_count) == (
            sent,
            delivered,
            bounced,
        )
        own = [e for e in events if e.email_id in mine]

        def emails_with(kind: str, human: bool = False, own: list[EventRow] = own) -> int:
            return len({e.email_id for e in own if e.kind == kind and (not human or not e.is_machine)})

        def total(kind: str, human: bool = False, own: list[EventRow] = own) -> int:
            return sum(1 for e in own if e.kind == kind and (not human or not e.is_machine))

        engagement, human = variant.engagement, variant.engagement.human
        opens = [e.occurred_at for e in own if e.kind == "open"]
        assert (engagement.total_opens, engagement.unique_opens) == (total("open"), emails_with("open"))
        assert (engagement.total_clicks, engagement.unique_clicks) == (total("click"), emails_with("click"))
        assert (engagement.first_open_at, engagement.last_open_at) == (min(opens), max(opens))
        assert (human.total_opens, human.unique_opens) == (total("open", True), emails_with("open", True))
        assert (human.total_clicks, human.unique_clicks) == (total("click", True), emails_with("click", True))
        assert engagement.open_rate == rate(emails_with("open"), delivered)
        assert human.click_rate == rate(emails_with("click", True), delivered)
        assert variant.click_to_open_rate == rate(emails_with("click"), emails_with("open"))
        assert variant.unsubscribes == emails_with("unsubscribe")
        assert variant.unsubscribe_rate == rate(emails_with("unsubscribe"), delivered)
        assert engagement.unique_opens > 0 and variant.status == "pending"  # a recount of something


async def test_analytics_of_what_does_not_exist(db_pool: Pool) -> None:
    from mail.errors import NotFound

    async with db_pool.connection() as conn:
        with pytest.raises(NotFound):
            await email_analytics(conn, 2**62)
        with pytest.raises(NotFound):
            await campaign_analytics(conn, uuid.uuid4())
        workspace, owner = await _workspace(conn, "Empty")
        cursor = await conn.execute(
            "INSERT INTO campaigns (workspace_id, created_by, name) VALUES (%s, %s, 'Draft') RETURNING id",
            (workspace.id, owner.id),
        )
        row = await cursor.fetchone()
        assert row is not None
        empty = await campaign_analytics(conn, row[0])
    assert empty.sent.count == 0 and empty.engagement.open_rate == 0.0 and empty.click_to_open_rate == 0.0
    assert empty.top_links == [] and empty.engagement_by_hour == [] and empty.replies.count == 0
    assert empty.variants == []


# -- the API --------------------------------------------------------------------------------------


class Tenant(msgspec.Struct):
    workspace: Workspace
    owner: User
    member: User
    other_member: User
    keys: dict[str, NewApiKey]


@dataclass
class Api:
    services: Services
    client: httpx.AsyncClient
    tenant: Tenant
    stranger: NewApiKey  # the owner of another workspace

    def headers(self, who: str) -> dict[str, str]:
        key = self.stranger if who == "stranger" else self.tenant.keys[who]
        return {"Authorization": f"Bearer {key.key}"}


@pytest.fixture
async def api(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = load_settings(
        environ={
            "MAILRAY_DATABASE__URL": database_url,
            "MAILRAY_REDIS__URL": redis_url,
            "MAILRAY_APP__DATA_DIR": str(tmp_path),
            "MAILRAY_TRACKING__BASE_URL": "https://t.mailray.test/",
        }
    )
    services = await open_services(settings)

    async def factory() -> Services:
        return services

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        workspace, owner = await _workspace(conn, "Tracking")
        suffix = uuid.uuid4().hex[:8]
        member = await auth.create_user(conn, workspace.id, f"member-{suffix}@example.com")
        other_member = await auth.create_user(conn, workspace.id, f"other-{suffix}@example.com")
        keys = {
            name: await auth.create_api_key(conn, workspace.id, user.id)
            for name, user in (("owner", owner), ("member", member), ("other_member", other_member))
        }
        elsewhere, stranger = await _workspace(conn, "Stranger")
        stranger_key = await auth.create_api_key(conn, elsewhere.id, stranger.id)
    tenant = Tenant(workspace=workspace, owner=owner, member=member, other_member=other_member, keys=keys)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(factory)), base_url="http://mailray.test"
    ) as client:
        yield Api(services=services, client=client, tenant=tenant, stranger=stranger_key)
    await services.close()


HTML = (
    '<p>Hello <a href="https://shop.example.com/spring?utm=mail&amp;x=1">the <b>spring</b> sale</a>, '
    '<a href="mailto:help@example.com">mail us</a>, <a href=" https://shop.example.com/faq ">FAQ</a>.</p>'
)


async def _audit(database_url: str, resource_id: str) -> list[tuple[str, UUID]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT action, user_id FROM audit_log WHERE resource_type = 'tracked_email' AND resource_id = %s",
            (resource_id,),
        )
        return [(row[0], row[1]) for row in await cursor.fetchall()]


async def test_register_a_tracked_email(api: Api, database_url: str) -> None:
    response = await api.client.post(
        "/v1/tracking/emails",
        json={"recipientEmail": "Reader@Example.org", "subject": "Spring", "messageId": "<m-1@mailray.test>",
              "html": HTML},
        headers=api.headers("member"),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    body = response.json()
    email_id = body["id"]
    signer = TokenSigner.from_keyring(api.services.keyring)
    base = "https://t.mailray.test"

    pixel = re.fullmatch(rf"{re.escape(base)}/t/o/([A-Za-z0-9_-]+)\.gif", body["pixelUrl"])
    assert pixel is not None
    token = signer.verify(pixel.group(1))
    assert (token.kind, token.email_id, token.recipient_id) == (TokenKind.OPEN, email_id, None)
    assert body["html"].count(body["pixelUrl"]) == 1

    assert [(link["position"], link["url"]) for link in body["links"]] == [
        (0, "https://shop.example.com/spring?utm=mail&x=1"),
        (1, "https://shop.example.com/faq"),
    ]
    hrefs = re.findall(r'href="([^"]*)"', body["html"])
    assert hrefs == [
        body["links"][0]["trackedUrl"],
        "mailto:help@example.com",
        body["links"][1]["trackedUrl"],
    ]
    for link in body["links"]:
        click = signer.verify(link["trackedUrl"].removeprefix(f"{base}/t/c/"))
        assert (click.kind, click.email_id, click.link) == (TokenKind.CLICK, email_id, link["position"])

    assert body["listUnsubscribe"] == f"<{body['unsubscribeUrl']}>"
    assert body["listUnsubscribePost"] == "List-Unsubscribe=One-Click"
    unsubscribe = signer.verify(body["unsubscribeUrl"].removeprefix(f"{base}/u/"))
    assert (unsubscribe.kind, unsubscribe.email_id) == (TokenKind.UNSUBSCRIBE, email_id)

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT owner_id, recipient_email, message_id, status, sent_at IS NOT NULL FROM tracked_emails "
            "WHERE id = %s",
            (email_id,),
        )
        assert await cursor.fetchone() == (
            api.tenant.member.id,
            "reader@example.org",
            "m-1@mailray.test",
            "sent",
            True,
        )
        cursor = await conn.execute(
            "SELECT positions, urls, texts FROM tracked_email_links WHERE email_id = %s", (email_id,)
        )
        assert await cursor.fetchone() == (
            [0, 1],
            ["https://shop.example.com/spring?utm=mail&x=1", "https://shop.example.com/faq"],
            ["the spring sale", "FAQ"],
        )
    assert await _audit(database_url, str(email_id)) == [("tracked_email.create", api.tenant.member.id)]

    # An open and two clicks through the writer show in the analytics.
    seen: list[tuple[EventKind, int | None]] = [("open", None), ("click", 1), ("click", 1)]
    events = [
        RawEvent(event_id=uuid.uuid4().bytes, kind=kind, email_id=email_id, recipient_id=None, link=link,
                 occurred_at_us=int((datetime.now(UTC) + timedelta(minutes=5)).timestamp() * 1_000_000),
                 ip="198.51.100.4", user_agent=USER_AGENTS["outlook"], method="GET")
        for kind, link in seen
    ]  # fmt: skip
    async with api.services.pool.connection() as conn, conn.transaction():
        await store_events(conn, events)
    analytics = await api.client.get(
        f"/v1/tracking/emails/{email_id}/analytics", headers=api.headers("member")
    )
    assert analytics.status_code == 200, analytics.text
    result = analytics.json()
    assert result["sent"] == {"count": 1, "deliveredCount": 1, "bouncedCount": 0, "deliveryRate": 1.0}
    engagement = result["engagement"]
    assert (engagement["uniqueOpens"], engagement["openRate"], engagement["totalClicks"]) == (1, 1.0, 2)
    assert engagement["human"]["totalOpens"] == 1 and result["clients"]["outlook"] == 1
    assert result["devices"]["desktop"] == 1
    assert engagement["clickedLinks"] == [
        {"url": "https://shop.example.com/faq", "clicks": 2, "uniqueClicks": 1, "humanClicks": 2,
         "humanUniqueClicks": 1, "position": 1},
    ]  # fmt: skip


async def test_register_without_html_or_tracking(api: Api) -> None:
    response = await api.client.post(
        "/v1/tracking/emails",
        json={"recipientEmail": "a@example.org", "trackOpens": False},
        headers=api.headers("member"),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["html"] is None and body["pixelUrl"] is None and body["links"] == []
    assert body["unsubscribeUrl"].startswith("https://t.mailray.test/u/")


async def test_register_refuses_bad_input_and_other_peoples_accounts(api: Api, database_url: str) -> None:
    for body, status in (
        ({"recipientEmail": "a@example.org", "campaign": "x"}, 422),
        ({"recipientEmail": "not an address"}, 422),
        ({"subject": "no recipient"}, 422),
    ):
        response = await api.client.post("/v1/tracking/emails", json=body, headers=api.headers("member"))
        assert response.status_code == status, (body, response.text)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "INSERT INTO email_accounts (workspace_id, user_id, email, provider) VALUES (%s, %s, %s, 'gmail') "
            "RETURNING id",
            (api.tenant.workspace.id, api.tenant.owner.id, f"boss-{uuid.uuid4().hex[:8]}@mailray.test"),
        )
        row = await cursor.fetchone()
        assert row is not None
        await conn.commit()
    account_id = str(row[0])
    body = {"recipientEmail": "a@example.org", "accountId": account_id, "html": HTML}
    refused = await api.client.post("/v1/tracking/emails", json=body, headers=api.headers("member"))
    assert refused.status_code == 403
    hidden = await api.client.post("/v1/tracking/emails", json=body, headers=api.headers("stranger"))
    assert hidden.status_code == 404
    allowed = await api.client.post("/v1/tracking/emails", json=body, headers=api.headers("owner"))
    assert allowed.status_code == 201
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM tracked_emails WHERE account_id = %s", (account_id,)
        )
        assert await cursor.fetchone() == (1,)  # the refused calls left nothing behind


async def test_analytics_routes_are_scoped(api: Api, database_url: str) -> None:
    created = await api.client.post(
        "/v1/tracking/emails", json={"recipientEmail": "a@example.org"}, headers=api.headers("member")
    )
    email_id = created.json()["id"]
    path = f"/v1/tracking/emails/{email_id}/analytics"
    for who, status in (("member", 200), ("owner", 200), ("other_member", 403), ("stranger", 404)):
        response = await api.client.get(path, headers=api.headers(who))
        assert response.status_code == status, (who, response.text)
    assert (
        await api.client.get("/v1/tracking/emails/999999999/analytics", headers=api.headers("owner"))
    ).status_code == 404
    assert (await api.client.get(path)).status_code == 401

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "INSERT INTO campaigns (workspace_id, created_by, name) VALUES (%s, %s, 'Launch') RETURNING id",
            (api.tenant.workspace.id, api.tenant.member.id),
        )
        row = await cursor.fetchone()
        assert row is not None
        campaign_id = row[0]
        # A campaign's message without an owner of its own is the campaign creator's.
        campaign_email = await registry.create_tracked_email(
            conn,
            registry.NewTrackedEmail(
                workspace_id=api.tenant.workspace.id, recipient_email="b@example.org", campaign_id=campaign_id,
                sent_at=SENT_AT,
            ),
        )  # fmt: skip
        await conn.commit()
    path = f"/v1/campaigns/{campaign_id}/analytics"
    for who, status in (("member", 200), ("owner", 200), ("other_member", 403), ("stranger", 404)):
        response = await api.client.get(path, headers=api.headers(who))
        assert response.status_code == status, (who, response.text)
    body = (await api.client.get(path, headers=api.headers("member"))).json()
    assert body["campaignId"] == str(campaign_id) and body["name"] == "Launch"
    assert body["sent"]["count"] == 1 and body["topLinks"] == [] and body["engagementByHour"] == []
    assert set(body["engagement"]["human"]) == {
        "uniqueOpens", "totalOpens", "openRate", "firstOpenAt", "uniqueClicks", "totalClicks", "clickRate",
    }  # fmt: skip
    bad = await api.client.get(path, params={"top_links": 0}, headers=api.headers("member"))
    assert bad.status_code == 422
    unknown = await api.client.get(f"/v1/campaigns/{uuid.uuid4()}/analytics", headers=api.headers("owner"))
    assert unknown.status_code == 404
    email_path = f"/v1/tracking/emails/{campaign_email}/analytics"
    for who, status in (("member", 200), ("owner", 200), ("other_member", 403)):
        response = await api.client.get(email_path, headers=api.headers(who))
        assert response.status_code == status, (who, response.text)
