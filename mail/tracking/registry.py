"""Tracked emails and their links in Postgres, and the click targets cached in Redis.

An email prepared for sending gets its tracked email's id (which its tokens carry) and one row of
its rewritten links' original URLs by position (tracked_email_links). The click endpoint
redirects only to a URL found there: whatever the request says, there is no open redirect.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import msgspec
import psycopg
import redis.asyncio
import redis.exceptions

from mail.store.pool import Pool

Conn = psycopg.AsyncConnection[Any]


class NewTrackedEmail(msgspec.Struct, frozen=True, kw_only=True):
    workspace_id: UUID
    recipient_email: str
    owner_id: UUID | None = None
    account_id: UUID | None = None
    campaign_id: UUID | None = None
    variant_id: UUID | None = None
    recipient_id: int | None = None
    contact_id: UUID | None = None
    message_id: str | None = None
    subject: str | None = None
    sent_at: datetime | None = None


class LinkRow(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    url: str
    text: str | None = None


async def create_tracked_email(conn: Conn, email: NewTrackedEmail) -> int:
    cursor = await conn.execute(
        "INSERT INTO tracked_emails (workspace_id, owner_id, account_id, campaign_id, variant_id, "
        "recipient_id, contact_id, recipient_email, message_id, subject, sent_at, status) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "CASE WHEN %s::timestamptz IS NULL THEN 'queued' ELSE 'sent' END) RETURNING id",
        (
            email.workspace_id,
            email.owner_id,
            email.account_id,
            email.campaign_id,
            email.variant_id,
            email.recipient_id,
            email.contact_id,
            email.recipient_email.lower(),
            email.message_id,
            email.subject,
            email.sent_at,
            email.sent_at,
        ),
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


class Link(Protocol):
    """A rewritten link as stored: LinkRow, or mail.tracking.instrument.TrackedLink as rendered."""

    @property
    def position(self) -> int: ...
    @property
    def url(self) -> str: ...
    @property
    def text(self) -> str | None: ...


class _LinkList(msgspec.Struct, frozen=True):
    """One tracked_email_links row as _STORE_LINK_LISTS reads it from JSON."""

    e: int
    w: UUID
    p: list[int]
    u: list[str]
    t: list[str | None]


# One statement for any number of emails' link lists: the lists differ in length, which SQL
# arrays of arrays cannot hold, so they travel as one JSON document (encoded in C by msgspec).
_STORE_LINK_LISTS = (
    "INSERT INTO tracked_email_links (email_id, workspace_id, positions, urls, texts) "
    "SELECT x.e, x.w, x.p, x.u, x.t FROM jsonb_to_recordset(%s::jsonb) "
    "AS x(e bigint, w uuid, p integer[], u text[], t text[]) "
    "ON CONFLICT (email_id) DO NOTHING"
)


async def store_link_lists(conn: Conn, lists: Sequence[tuple[UUID, int, Sequence[Link]]]) -> None:
    """Store (workspace id, email id, links) for each email with links, in one statement. An email
    whose links are stored already keeps them: composing a message again renders the same ones."""
    rows = [
        _LinkList(e=email_id, w=workspace_id, p=[link.position for link in links], u=[link.url for link in links],
                  t=[link.text or None for link in links])
        for workspace_id, email_id, links in lists
        if links
    ]  # fmt: skip
    if rows:
        await conn.execute(_STORE_LINK_LISTS, (msgspec.json.encode(rows).decode(),))


async def store_links(conn: Conn, workspace_id: UUID, email_id: int, links: Sequence[Link]) -> None:
    await store_link_lists(conn, [(workspace_id, email_id, links)])


async def mark_sent(conn: Conn, email_id: int, sent_at: datetime, message_id: str | None = None) -> None:
    await conn.execute(
        "UPDATE tracked_emails SET status = 'sent', sent_at = %s, message_id = coalesce(%s, message_id) "
        "WHERE id = %s",
        (sent_at, message_id, email_id),
    )


def _cache_key(email_id: int) -> str:
    return f"mailray:links:{email_id}"


async def link_target(
    client: redis.asyncio.Redis, pool: Pool, email_id: int, position: int, *, ttl_s: int
) -> str | None:
    """The stored URL of a tracked email's link, from the Redis cache or else Postgres (which
    then fills the cache with every link of that email)."""
    try:
        cached = await client.hget(_cache_key(email_id), str(position))
    except (redis.exceptions.RedisError, OSError):
        cached = None  # the cache is an optimisation; Postgres has the truth
    if cached is not None:
        return cached.decode() if isinstance(cached, bytes) else str(cached)
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT positions, urls FROM tracked_email_links WHERE email_id = %s", (email_id,)
        )
        row = await cursor.fetchone()
    urls = dict(zip(row[0], row[1], strict=True)) if row is not None else {}
    if urls:
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.hset(_cache_key(email_id), mapping={str(k): v for k, v in urls.items()})
                pipe.expire(_cache_key(email_id), ttl_s)
                await pipe.execute()
        except (redis.exceptions.RedisError, OSError):
            pass
    return urls.get(position)


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    email_id: int
    workspace_id: UUID
    campaign_id: UUID | None
    recipient_email: str


async def recipient_of(conn: Conn, email_id: int) -> Recipient | None:
    cursor = await conn.execute(
        "SELECT id, workspace_id, campaign_id, recipient_email FROM tracked_emails WHERE id = %s",
        (email_id,),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    return Recipient(email_id=row[0], workspace_id=row[1], campaign_id=row[2], recipient_email=row[3])


async def unsubscribe(conn: Conn, recipient: Recipient) -> bool:
    """Suppress the recipient's address in its workspace; True the first time, False after."""
    cursor = await conn.execute(
        "INSERT INTO suppressions (workspace_id, email, reason, source, campaign_id) "
        "VALUES (%s, %s, 'unsubscribe', 'one-click', %s) ON CONFLICT (workspace_id, email) DO NOTHING "
        "RETURNING email",
        (recipient.workspace_id, recipient.recipient_email.lower(), recipient.campaign_id),
    )
    return await cursor.fetchone() is not None
