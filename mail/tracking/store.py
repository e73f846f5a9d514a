"""Storing tracking events and keeping the aggregates, in the caller's transaction.

Events are inserted with `ON CONFLICT (event_id, occurred_at) DO NOTHING` and only the rows that
went in move the counters, so a batch delivered twice counts once. Unique counts move on
transitions read back from the counters themselves (an email's opens going from 0 to more than
0 is one more unique open for its campaign), so they equal a recount from the raw events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import psycopg

from mail.store.bulk import copy_upsert
from mail.tracking.classify import Classification, EventContext, classify
from mail.tracking.records import RawEvent

Conn = psycopg.AsyncConnection[Any]

_EVENT_COLUMNS = (
    "event_id", "workspace_id", "email_id", "campaign_id", "variant_id", "recipient_id", "contact_id",
    "link_id", "link_url", "link_position", "event_type", "occurred_at", "ip", "user_agent", "device",
    "client", "os", "browser", "is_machine", "machine_reason", "metadata",
)  # fmt: skip
# Distinct links of one email clicked within this many seconds of each other: a scanner.
_BURST_S = 2.0


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_id: UUID
    workspace_id: UUID
    email_id: int
    campaign_id: UUID | None
    kind: str
    occurred_at: datetime
    link_url: str | None
    is_machine: bool
    machine_reason: str | None
    device: str
    client: str


class _Email(msgspec.Struct, frozen=True):
    workspace_id: UUID
    campaign_id: UUID | None
    variant_id: UUID | None
    recipient_id: int | None
    contact_id: UUID | None
    sent_at: datetime | None


async def _emails(conn: Conn, ids: Sequence[int]) -> dict[int, _Email]:
    cursor = await conn.execute(
        "SELECT id, workspace_id, campaign_id, variant_id, recipient_id, contact_id, sent_at "
        "FROM tracked_emails WHERE id = ANY(%s)",
        (list(ids),),
    )
    return {row[0]: _Email(*row[1:]) for row in await cursor.fetchall()}


# A clicked link's row (with its counters) is made on its first click, from the email's link list.
_CLICKED_LINKS = (
    "INSERT INTO tracking_links (workspace_id, email_id, campaign_id, recipient_id, position, url, link_text) "
    "SELECT l.workspace_id, l.email_id, t.campaign_id, t.recipient_id, k.position, l.urls[i], l.texts[i] "
    "FROM unnest(%s::bigint[], %s::int[]) AS k(email_id, position) "
    "JOIN tracked_email_links l ON l.email_id = k.email_id JOIN tracked_emails t ON t.id = k.email_id "
    "CROSS JOIN LATERAL array_position(l.positions, k.position) AS i "
    "WHERE i IS NOT NULL ORDER BY k.email_id, k.position ON CONFLICT (email_id, position) DO NOTHING"
)


async def _links(conn: Conn, keys: set[tuple[int, int]]) -> dict[tuple[int, int], tuple[int, str]]:
    """The clicked links' rows (id, url) by (email id, position), made where this is a first click."""
    if not keys:
        return {}
    emails, positions = (list(column) for column in zip(*sorted(keys), strict=True))
    await conn.execute(_CLICKED_LINKS, (emails, positions))
    cursor = await conn.execute(
        "SELECT l.email_id, l.position, l.id, l.url FROM tracking_links l "
        "JOIN unnest(%s::bigint[], %s::int[]) AS k(email_id, position) "
        "ON l.email_id = k.email_id AND l.position = k.position",
        (emails, positions),
    )
    return {(row[0], row[1]): (row[2], row[3]) for row in await cursor.fetchall()}


def _burst_counts(events: Sequence[RawEvent]) -> dict[bytes, int]:
    """For each click: how many other distinct links of its email were clicked within _BURST_S."""
    clicks: dict[int, list[RawEvent]] = defaultdict(list)
    for event in events:
        if event.kind == "click":
            clicks[event.email_id].append(event)
    counts: dict[bytes, int] = {}
    window = int(_BURST_S * 1_000_000)
    for same_email in clicks.values():
        for event in same_email:
            others = {
                other.link
                for other in same_email
                if other.link != event.link and abs(other.occurred_at_us - event.occurred_at_us) <= window
            }
            counts[event.event_id] = len(others)
    return counts


async def store_events(conn: Conn, events: Sequence[RawEvent]) -> tuple[list[StoredEvent], int]:
    """Insert the events not stored yet and move the aggregates; returns (stored, unknown), where
    unknown counts events whose tracked email no longer exists (dropped)."""
    if not events:
        return [], 0
    emails = await _emails(conn, sorted({event.email_id for event in events}))
    links = await _links(
        conn, {(e.email_id, e.link) for e in events if e.kind == "click" and e.link is not None}
    )
    bursts = _burst_counts(events)
    rows: list[tuple[Any, ...]] = []
    unknown = 0
    for event in events:
        email = emails.get(event.email_id)
        if email is None:
            unknown += 1
            continue
        verdict: Classification = classify(
            EventContext(
                kind=event.kind,
                user_agent=event.user_agent,
                ip=event.ip,
                method=event.method,
                occurred_at=event.occurred_at,
                sent_at=email.sent_at,
                prior_clicks_same_second=bursts.get(event.event_id, 0),
            )
        )
        link_id, link_url = (
            links.get((event.email_id, event.link), (None, None)) if event.link is not None else (None, None)
        )
        rows.append(
            (
                event.uuid, email.workspace_id, event.email_id, email.campaign_id, email.variant_id,
                email.recipient_id, email.contact_id, link_id, link_url, event.link, event.kind,
                event.occurred_at, event.ip, event.user_agent, verdict.device, verdict.client,
                verdict.os, verdict.browser, verdict.is_machine, verdict.machine_reason,
                msgspec.json.encode({"method": event.method}).decode(),
            )
        )  # fmt: skip
    if not rows:
        return [], unknown
    inserted = await copy_upsert(
        conn,
        "tracking_events",
        _EVENT_COLUMNS,
        rows,
        conflict_columns=("event_id", "occurred_at"),
        returning=(
            "event_id",
            "workspace_id",
            "email_id",
            "campaign_id",
            "event_type",
            "occurred_at",
            "link_url",
            "link_position",
            "is_machine",
            "machine_reason",
            "device",
            "client",
        ),
    )
    stored = [
        StoredEvent(
            event_id=r[0], workspace_id=r[1], email_id=r[2], campaign_id=r[3], kind=r[4], occurred_at=r[5],
            link_url=r[6], is_machine=r[8], machine_reason=r[9], device=r[10], client=r[11],
        )
        for r in inserted
    ]  # fmt: skip
    await _aggregate(conn, [(s, r[7]) for s, r in zip(stored, inserted, strict=True)])
    return stored, unknown


class _Delta(msgspec.Struct, kw_only=True):
    workspace_id: UUID
    campaign_id: UUID | None
    opens: int = 0
    human_opens: int = 0
    clicks: int = 0
    human_clicks: int = 0
    unsubscribes: int = 0
    new_links: int = 0
    new_human_links: int = 0
    first_open: datetime | None = None
    last_open: datetime | None = None
    first_human_open: datetime | None = None
    first_click: datetime | None = None
    last_click: datetime | None = None
    unsubscribed_at: datetime | None = None


def _min(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _max(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


async def _aggregate(conn: Conn, stored: Sequence[tuple[StoredEvent, int | None]]) -> None:
    deltas: dict[int, _Delta] = {}
    link_clicks: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    hourly: dict[tuple[UUID, datetime], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for event, position in stored:
        d = deltas.setdefault(
            event.email_id, _Delta(workspace_id=event.workspace_id, campaign_id=event.campaign_id)
        )
        human = not event.is_machine
        at = event.occurred_at
        hour = at.replace(minute=0, second=0, microsecond=0)
        if event.kind == "open":
            d.opens += 1
            d.human_opens += human
            d.first_open, d.last_open = _min(d.first_open, at), _max(d.last_open, at)
            if human:
                d.first_human_open = _min(d.first_human_open, at)
            if event.campaign_id is not None:
                counts = hourly[(event.campaign_id, hour)]
                counts[0] += 1
                counts[1] += human
        elif event.kind == "click":
            d.clicks += 1
            d.human_clicks += human
            d.first_click, d.last_click = _min(d.first_click, at), _max(d.last_click, at)
            if position is not None:
                link = link_clicks[(event.email_id, position)]
                link[0] += 1
                link[1] += human
            if event.campaign_id is not None:
                counts = hourly[(event.campaign_id, hour)]
                counts[2] += 1
                counts[3] += human
        elif event.kind == "unsubscribe":
            d.unsubscribes += 1
            d.unsubscribed_at = _min(d.unsubscribed_at, at)
    if link_clicks:
        keys = sorted(link_clicks)
        cursor = await conn.execute(
            "UPDATE tracking_links l SET clicks = l.clicks + d.clicks, human_clicks = l.human_clicks + d.human "
            "FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::int[]) AS d(email_id, position, clicks, human) "
            "WHERE l.email_id = d.email_id AND l.position = d.position "
            "RETURNING l.email_id, l.position, l.clicks, l.human_clicks",
            (
                [k[0] for k in keys],
                [k[1] for k in keys],
                [link_clicks[k][0] for k in keys],
                [link_clicks[k][1] for k in keys],
            ),
        )
        for email_id, position, clicks, human_clicks in await cursor.fetchall():
            added, human_added = link_clicks[(email_id, position)]
            deltas[email_id].new_links += clicks == added
            deltas[email_id].new_human_links += human_added > 0 and human_clicks == human_added
    ids = sorted(deltas)
    cols = [
        ids,
        [deltas[i].workspace_id for i in ids],
        [deltas[i].campaign_id for i in ids],
        *(
            [getattr(deltas[i], name) for i in ids]
            for name in (
                "opens", "human_opens", "clicks", "human_clicks", "unsubscribes", "new_links", "new_human_links",
                "first_open", "last_open", "first_human_open", "first_click", "last_click", "unsubscribed_at",
            )
        ),
    ]  # fmt: skip
    cursor = await conn.execute(
        "INSERT INTO email_engagement AS g (email_id, workspace_id, campaign_id, opens, human_opens, clicks, "
        "human_clicks, unsubscribes, unique_clicked_links, human_unique_clicked_links, first_open_at, "
        "last_open_at, first_human_open_at, first_click_at, last_click_at, unsubscribed_at) "
        "SELECT * FROM unnest(%s::bigint[], %s::uuid[], %s::uuid[], %s::int[], %s::int[], %s::int[], "
        "%s::int[], %s::int[], %s::int[], %s::int[], %s::timestamptz[], %s::timestamptz[], "
        "%s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[]) "
        "ON CONFLICT (email_id) DO UPDATE SET opens = g.opens + EXCLUDED.opens, "
        "human_opens = g.human_opens + EXCLUDED.human_opens, clicks = g.clicks + EXCLUDED.clicks, "
        "human_clicks = g.human_clicks + EXCLUDED.human_clicks, "
        "unsubscribes = g.unsubscribes + EXCLUDED.unsubscribes, "
        "unique_clicked_links = g.unique_clicked_links + EXCLUDED.unique_clicked_links, "
        "human_unique_clicked_links = g.human_unique_clicked_links + EXCLUDED.human_unique_clicked_links, "
        "first_open_at = LEAST(g.first_open_at, EXCLUDED.first_open_at), "
        "last_open_at = GREATEST(g.last_open_at, EXCLUDED.last_open_at), "
        "first_human_open_at = LEAST(g.first_human_open_at, EXCLUDED.first_human_open_at), "
        "first_click_at = LEAST(g.first_click_at, EXCLUDED.first_click_at), "
        "last_click_at = GREATEST(g.last_click_at, EXCLUDED.last_click_at), "
        "unsubscribed_at = LEAST(g.unsubscribed_at, EXCLUDED.unsubscribed_at), updated_at = now() "
        "RETURNING email_id, opens, human_opens, clicks, human_clicks, unsubscribes",
        cols,
    )
    campaigns: dict[UUID, list[int]] = {}
    for email_id, opens, human_opens, clicks, human_clicks, unsubscribes in await cursor.fetchall():
        d = deltas[email_id]
        if d.campaign_id is None:
            continue
        c = campaigns.setdefault(d.campaign_id, [0] * 9)
        for index, (total, added) in enumerate(
            (
                (opens, d.opens),
                (human_opens, d.human_opens),
                (clicks, d.clicks),
                (human_clicks, d.human_clicks),
            )
        ):
            c[2 * index] += added
            c[2 * index + 1] += added > 0 and total == added  # went from none to some
        c[8] += unsubscribes > 0 and unsubscribes == d.unsubscribes
    if campaigns:
        ids_c = sorted(campaigns)
        workspace_of = {d.campaign_id: d.workspace_id for d in deltas.values()}
        await conn.execute(
            "INSERT INTO campaign_engagement AS c (campaign_id, workspace_id, opens, unique_opens, human_opens, "
            "human_unique_opens, clicks, unique_clicks, human_clicks, human_unique_clicks, unsubscribes) "
            "SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::int[], %s::int[], %s::int[], %s::int[], "
            "%s::int[], %s::int[], %s::int[], %s::int[], %s::int[]) "
            "ON CONFLICT (campaign_id) DO UPDATE SET opens = c.opens + EXCLUDED.opens, "
            "unique_opens = c.unique_opens + EXCLUDED.unique_opens, human_opens = c.human_opens + EXCLUDED.human_opens, "
            "human_unique_opens = c.human_unique_opens + EXCLUDED.human_unique_opens, "
            "clicks = c.clicks + EXCLUDED.clicks, unique_clicks = c.unique_clicks + EXCLUDED.unique_clicks, "
            "human_clicks = c.human_clicks + EXCLUDED.human_clicks, "
            "human_unique_clicks = c.human_unique_clicks + EXCLUDED.human_unique_clicks, "
            "unsubscribes = c.unsubscribes + EXCLUDED.unsubscribes, updated_at = now()",
            [ids_c, [workspace_of[i] for i in ids_c], *([campaigns[i][k] for i in ids_c] for k in range(9))],
        )
    if hourly:
        keys_h = sorted(hourly)
        await conn.execute(
            "INSERT INTO campaign_engagement_hourly AS h (campaign_id, hour, opens, human_opens, clicks, human_clicks) "
            "SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::int[], %s::int[], %s::int[], %s::int[]) "
            "ON CONFLICT (campaign_id, hour) DO UPDATE SET opens = h.opens + EXCLUDED.opens, "
            "human_opens = h.human_opens + EXCLUDED.human_opens, clicks = h.clicks + EXCLUDED.clicks, "
            "human_clicks = h.human_clicks + EXCLUDED.human_clicks",
            [
                [k[0] for k in keys_h],
                [k[1] for k in keys_h],
                *([hourly[k][n] for k in keys_h] for n in range(4)),
            ],
        )
