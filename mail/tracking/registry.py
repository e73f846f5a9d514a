"""Tracked emails and their links in Postgres, and the click targets cached in Redis.

`register` is called when an email is prepared for sending: it allocates the tracked email's id
(which its tokens carry) and stores each rewritten link's original URL by position. The click
endpoint redirects only to a URL found here: whatever the request says, there is no open redirect.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
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


async def store_links(
    conn: Conn, workspace_id: UUID, email_id: int, campaign_id: UUID | None, links: Sequence[LinkRow]
) -> None:
    if not links:
        return
    await conn.execute(
        "INSERT INTO tracking_links (workspace_id, email_id, campaign_id, position, url, link_text) "
        "SELECT %s, %s, %s, l.position, l.url, l.text "
        "FROM unnest(%s::int[], %s::text[], %s::text[]) AS l(position, url, text) "
        "ON CONFLICT (email_id, position) DO NOTHING",
        (
            workspace_id,
            email_id,
            campaign_id,
            [link.position for link in links],
            [link.url for link in links],
            [link.text for link in links],
        ),
    )


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
            "SELECT position, url FROM tracking_links WHERE email_id = %s", (email_id,)
        )
        rows = await cursor.fetchall()
    urls = {int(row[0]): str(row[1]) for row in rows}
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
