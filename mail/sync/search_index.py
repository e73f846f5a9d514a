"""Full-text indexing of stored mail: the `email_search` table, filled after the mail is stored.

Bodies are stored encrypted, so Postgres cannot compute a body's tsvector from its columns: the
indexer reads the pending rows (`search_vector IS NULL`), decrypts their text bodies here and
sends the text with the statement that computes the vector, so the plaintext is never stored.
The vector is the subject (weight A), then the sender's name and address and the text body (or
the snippet of a message without one), cut at SEARCH_TEXT_LIMIT characters.

A full sync stores a mailbox first and indexes it after (about twice the Postgres work of
storing it, which a bulk sync should not wait for); incremental sync indexes in the same round.
Each batch commits on its own, so an indexer that dies leaves the rest pending for the next.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from mail.crypto import Keyring
from mail.sync.store import decrypt_body

Conn = psycopg.AsyncConnection[Any]

# Enough text for search; a longer body is cut rather than bloating the index.
SEARCH_TEXT_LIMIT = 20_000
INDEX_BATCH = 500

_PENDING = (
    "SELECT s.email_id, s.email_date, e.subject, e.from_name, e.from_email, e.body_text_enc, e.snippet "
    "FROM email_search s JOIN emails e ON e.id = s.email_id AND e.email_date = s.email_date "
    "WHERE s.account_id = %s AND s.search_vector IS NULL ORDER BY s.email_id LIMIT %s "
    "FOR UPDATE OF s SKIP LOCKED"
)
_INDEX = (
    "UPDATE email_search s SET search_vector = "
    "setweight(to_tsvector('english', coalesce(v.subject, '')), 'A') || "
    "to_tsvector('english', coalesce(v.from_name, '') || ' ' || coalesce(v.from_email, '') || ' ' || v.text) "
    "FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[]) "
    "AS v(email_id, email_date, subject, from_name, from_email, text) "
    "WHERE s.email_id = v.email_id AND s.email_date = v.email_date"
)


async def index_pending(conn: Conn, keyring: Keyring, account_id: UUID, *, limit: int = INDEX_BATCH) -> int:
    """Index up to `limit` of the account's pending emails (in the caller's transaction); how many."""
    cursor = await conn.execute(_PENDING, (account_id, limit))
    rows = await cursor.fetchall()
    if not rows:
        return 0
    texts = []
    for email_id, _, _, _, _, body_text_enc, snippet in rows:
        body = decrypt_body(keyring, email_id, "body_text_enc", body_text_enc)
        texts.append((body or snippet or "")[:SEARCH_TEXT_LIMIT])
    columns = list(zip(*rows, strict=True))
    await conn.execute(_INDEX, (list(columns[0]), list(columns[1]), list(columns[2]), list(columns[3]),
                                list(columns[4]), texts))  # fmt: skip
    return len(rows)


async def pending_count(conn: Conn, account_id: UUID) -> int:
    cursor = await conn.execute(
        "SELECT count(*) FROM email_search WHERE account_id = %s AND search_vector IS NULL", (account_id,)
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0
