"""Writing synced mail: emails (COPY through a staging table), threads, contacts, attachments.

Each function runs inside the caller's transaction, so a batch of messages and the sync
checkpoint that covers it commit together. Bodies, raw bytes of unreadable messages and
attachment contents are encrypted, bound to their row (ids are allocated before encrypting).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import psycopg

from mail.crypto import Keyring
from mail.key_rotation import column_context
from mail.store.bulk import copy_rows, copy_upsert
from models.gmail import GmailMessage
from models.mail import Address, ParsedMessage

Conn = psycopg.AsyncConnection[Any]

_EMAIL_COLUMNS = (
    "id", "workspace_id", "account_id", "provider_message_id", "provider_thread_id", "history_id",
    "message_id", "thread_id", "in_reply_to", "reference_ids", "subject", "from_email", "from_name",
    "to_emails", "cc_emails", "bcc_emails", "reply_to", "body_html_enc", "body_text_enc", "snippet",
    "labels", "has_attachments", "contact_id", "sent_at", "received_at", "email_date", "raw_size",
    "raw_enc", "parse_errors", "sync_generation",
    "folder", "is_read", "is_starred", "is_important", "is_draft", "is_sent",
)  # fmt: skip
_EMAIL_TYPES = (
    "bigint", "uuid", "uuid", "text", "text", "numeric",
    "text", "uuid", "text", "text[]", "text", "text", "text",
    "text[]", "text[]", "text[]", "text", "bytea", "bytea", "text",
    "text[]", "boolean", "uuid", "timestamptz", "timestamptz", "timestamptz", "integer",
    "bytea", "text[]", "integer",
    "text", "boolean", "boolean", "boolean", "boolean", "boolean",
)  # fmt: skip
_EMAIL_DATE = _EMAIL_COLUMNS.index("email_date")
# Where a message shows, from its Gmail labels, first match wins. SQL's mailray_folder(), which
# label changes use, says the same: tests/integration/test_sync_engine.py holds the two together.
_FOLDER_BY_LABEL = (
    ("TRASH", "trash"),
    ("SPAM", "spam"),
    ("DRAFT", "drafts"),
    ("INBOX", "inbox"),
    ("SENT", "sent"),
)


def label_columns(labels: Sequence[str]) -> tuple[str, bool, bool, bool, bool, bool]:
    """folder, is_read, is_starred, is_important, is_draft, is_sent of a message with `labels`."""
    folder = next((name for label, name in _FOLDER_BY_LABEL if label in labels), "archive")
    return (folder, "UNREAD" not in labels, "STARRED" in labels, "IMPORTANT" in labels, "DRAFT" in labels,
            "SENT" in labels)  # fmt: skip


_LABEL_FLAGS = (
    "folder = mailray_folder(n.labels), is_read = NOT ('UNREAD' = ANY(n.labels)), "
    "is_starred = 'STARRED' = ANY(n.labels), is_important = 'IMPORTANT' = ANY(n.labels), "
    "is_draft = 'DRAFT' = ANY(n.labels), is_sent = 'SENT' = ANY(n.labels)"
)


class StoredBatch(msgspec.Struct, frozen=True, kw_only=True):
    inserted: list[tuple[int, str]]  # (email id, provider message id) of newly stored messages
    already_stored: int


class SyncedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A fetched message with what mailray read from it."""

    gmail: GmailMessage
    parsed: ParsedMessage


def _encrypt(
    keyring: Keyring, table: str, column: str, key: int | UUID, value: bytes | str | None
) -> bytes | None:
    if value is None:
        return None
    data = value.encode() if isinstance(value, str) else value
    return keyring.encrypt(data, context=column_context(table, column, [key]))


def decrypt_body(keyring: Keyring, email_id: int, column: str, blob: bytes | None) -> str | None:
    if blob is None:
        return None
    return keyring.decrypt(bytes(blob), context=column_context("emails", column, [email_id])).decode()


def degraded(message: SyncedMessage, error: str) -> SyncedMessage:
    """The message reduced to what cannot fail to store, with the reason; its raw bytes are kept
    (encrypted) because it now has a parse error, so nothing is lost."""
    parsed = msgspec.structs.replace(
        message.parsed,
        date=None,
        text_body=None,
        html_body=None,
        attachments=[],
        parse_errors=[*message.parsed.parse_errors, f"store: {error}"[:500]],
    )
    return SyncedMessage(gmail=message.gmail, parsed=parsed)


def _emails(addresses: Sequence[Address]) -> list[str]:
    return [address.email for address in addresses]


def _counterpart(message: SyncedMessage) -> Address | None:
    """The other party: the first recipient of mail we sent, the sender of mail we got."""
    parsed = message.parsed
    if "SENT" in message.gmail.label_ids:
        recipients = parsed.to or parsed.cc
        return recipients[0] if recipients else None
    return parsed.from_address


def _thread_subjects(messages: Sequence[SyncedMessage]) -> dict[str, str]:
    subjects: dict[str, str] = {}
    for message in messages:
        subjects.setdefault(message.gmail.thread_id, message.parsed.subject)
    return subjects


def _contact_names(messages: Sequence[SyncedMessage]) -> dict[str, str | None]:
    """Every address in every address header, by lowercased email, with a name where one is given."""
    names: dict[str, str | None] = {}
    for message in messages:
        parsed = message.parsed
        everyone = [parsed.from_address, *parsed.to, *parsed.cc, *parsed.bcc, *parsed.reply_to]
        for address in everyone:
            if address is None or "@" not in address.email:
                continue
            key = address.email.lower()
            if names.get(key) is None:
                names[key] = address.name
    return names


async def store_messages(
    conn: Conn,
    keyring: Keyring,
    *,
    workspace_id: UUID,
    account_id: UUID,
    generation: int,
    messages: Sequence[SyncedMessage],
) -> StoredBatch:
    """Store fetched messages; those already stored (same provider id) are left as they are."""
    if not messages:
        return StoredBatch(inserted=[], already_stored=0)
    subjects, names = _thread_subjects(messages), _contact_names(messages)
    thread_ids, emails = list(subjects), list(names)
    # Threads and contacts are created (or found) and the emails' ids taken in one round trip:
    # five statements in a pipeline, each inserting statement followed by its own lookup (a
    # separate statement, so it also sees a row another transaction committed meanwhile).
    async with conn.pipeline():
        await conn.execute(
            "INSERT INTO threads (workspace_id, account_id, provider_thread_id, subject) "
            "SELECT %s, %s, t.id, t.subject FROM unnest(%s::text[], %s::text[]) AS t(id, subject) "
            "ON CONFLICT (account_id, provider_thread_id) DO NOTHING",
            (workspace_id, account_id, thread_ids, [subjects[t] for t in thread_ids]),
        )
        thread_rows = await conn.execute(
            "SELECT provider_thread_id, id FROM threads WHERE account_id = %s AND provider_thread_id = ANY(%s)",
            (account_id, thread_ids),
        )
        await conn.execute(
            "INSERT INTO contacts (workspace_id, email, display_name, source, first_seen_at) "
            "SELECT %s, c.email, c.name, 'sync', now() FROM unnest(%s::text[], %s::text[]) AS c(email, name) "
            "ON CONFLICT (workspace_id, lower(email)) DO NOTHING",
            (workspace_id, emails, [names[e] for e in emails]),
        )
        contact_rows = await conn.execute(
            "SELECT lower(email), id FROM contacts WHERE workspace_id = %s AND lower(email) = ANY(%s)",
            (workspace_id, emails),
        )
        id_rows = await conn.execute(
            "SELECT nextval('emails_id_seq') FROM generate_series(1, %s)", (len(messages),)
        )
    threads: dict[str, UUID] = dict(await thread_rows.fetchall())
    contacts: dict[str, UUID] = dict(await contact_rows.fetchall())
    ids = [row[0] for row in await id_rows.fetchall()]
    rows: list[tuple[Any, ...]] = []
    for email_id, message in zip(ids, messages, strict=True):
        gmail, parsed = message.gmail, message.parsed
        internal_date = datetime.fromtimestamp(gmail.internal_date_ms / 1000, tz=UTC)
        sent = "SENT" in gmail.label_ids
        counterpart = _counterpart(message)
        raw_enc = _encrypt(keyring, "emails", "raw_enc", email_id, gmail.raw) if parsed.parse_errors else None
        labels = sorted(gmail.label_ids)
        rows.append(
            (
                email_id, workspace_id, account_id, gmail.id, gmail.thread_id, gmail.history_id,
                parsed.message_id, threads.get(gmail.thread_id), parsed.in_reply_to, parsed.references,
                parsed.subject, parsed.from_address.email if parsed.from_address else None,
                parsed.from_address.name if parsed.from_address else None,
                _emails(parsed.to), _emails(parsed.cc), _emails(parsed.bcc),
                parsed.reply_to[0].email if parsed.reply_to else None,
                _encrypt(keyring, "emails", "body_html_enc", email_id, parsed.html_body),
                _encrypt(keyring, "emails", "body_text_enc", email_id, parsed.text_body),
                parsed.snippet or gmail.snippet, labels, bool(parsed.attachments),
                contacts.get(counterpart.email.lower()) if counterpart else None,
                parsed.date or internal_date if sent else parsed.date,  # parse_message gives UTC
                None if sent else internal_date,
                internal_date, parsed.raw_size, raw_enc, parsed.parse_errors, generation,
                *label_columns(labels),
            )
        )  # fmt: skip
    inserted = await _insert_new(conn, rows)
    by_provider_id = {message.gmail.id: message for message in messages}
    await _store_attachments(conn, keyring, workspace_id, inserted, by_provider_id)
    async with conn.pipeline():
        await _add_search_pending(conn, workspace_id, account_id, inserted)
        await refresh_threads(
            conn,
            workspace_id,
            {threads[m.gmail.thread_id] for m in messages if m.gmail.thread_id in threads},
            emptied=False,  # storing adds messages: no thread loses its last one here
        )
    return StoredBatch(
        inserted=[(row[0], row[1]) for row in inserted], already_stored=len(messages) - len(inserted)
    )


async def _insert_new(conn: Conn, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Insert email rows; (id, provider message id, email date) of those that were not stored.

    Every caller stores messages it found missing, so the rows are COPYed straight into `emails`.
    One that is stored after all (listed twice while the mailbox changed, or written meanwhile by
    another writer) fails the COPY on the unique key; then the batch goes through a staging
    table that skips what is stored (mail.store.bulk.copy_upsert), about twice the work."""
    try:
        async with conn.transaction():  # a savepoint: the failed COPY leaves nothing behind
            await copy_rows(conn, "emails", _EMAIL_COLUMNS, rows, types=_EMAIL_TYPES)
    except psycopg.errors.UniqueViolation:
        return await copy_upsert(conn, "emails", _EMAIL_COLUMNS, rows,
                                 returning=("id", "provider_message_id", "email_date"))  # fmt: skip
    return [(row[0], row[3], row[_EMAIL_DATE]) for row in rows]


async def _add_search_pending(
    conn: Conn, workspace_id: UUID, account_id: UUID, stored: Sequence[tuple[Any, ...]]
) -> None:
    """Newly stored emails wait for the indexer (mail.sync.search_index): one row each, no vector."""
    if not stored:
        return
    await conn.execute(
        "INSERT INTO email_search (email_id, email_date, workspace_id, account_id) "
        "SELECT s.id, s.date, %s, %s FROM unnest(%s::bigint[], %s::timestamptz[]) AS s(id, date)",
        (workspace_id, account_id, [row[0] for row in stored], [row[2] for row in stored]),
    )


async def _store_attachments(
    conn: Conn,
    keyring: Keyring,
    workspace_id: UUID,
    inserted: Sequence[tuple[Any, ...]],
    by_provider_id: dict[str, SyncedMessage],
) -> None:
    rows: list[tuple[Any, ...]] = []
    for email_id, provider_id, email_date in inserted:
        for attachment in by_provider_id[provider_id].parsed.attachments:
            attachment_id = uuid.uuid4()
            rows.append(
                (
                    attachment_id, workspace_id, email_id, email_date, attachment.part_id, attachment.filename,
                    attachment.content_type, attachment.size, attachment.sha256, attachment.content_id,
                    attachment.is_inline,
                    _encrypt(keyring, "attachments", "content_enc", attachment_id, attachment.content),
                )
            )  # fmt: skip
    if rows:
        await copy_rows(
            conn,
            "attachments",
            ("id", "workspace_id", "email_id", "email_date", "part_id", "filename", "content_type",
             "size_bytes", "sha256", "content_id", "is_inline", "content_enc"),
            rows,
        )  # fmt: skip


async def refresh_threads(
    conn: Conn, workspace_id: UUID, thread_ids: set[UUID], *, emptied: bool = True
) -> None:
    """Recount the threads' messages, unread messages, dates and participants from their emails;
    `emptied`: some may have lost their last message (a deletion), and are zeroed."""
    if not thread_ids:
        return
    params = {"workspace": workspace_id, "threads": list(thread_ids)}
    await conn.execute(
        "UPDATE threads t SET message_count = s.messages, unread_count = s.unread, "
        "first_message_at = s.first_at, last_message_at = s.last_at, labels = lab.labels, "
        "participants = s.participants, snippet = s.snippet, updated_at = now() "
        "FROM (SELECT thread_id, count(*) AS messages, count(*) FILTER (WHERE NOT is_read) AS unread, "
        "      min(email_date) AS first_at, max(email_date) AS last_at, "
        "      coalesce(array_agg(DISTINCT lower(e.from_email)) FILTER (WHERE e.from_email IS NOT NULL), '{}') "
        "        AS participants, "
        "      (array_agg(e.snippet ORDER BY e.email_date DESC))[1] AS snippet "
        "      FROM emails e WHERE e.workspace_id = %(workspace)s AND e.thread_id = ANY(%(threads)s) "
        "      AND e.deleted_at IS NULL GROUP BY thread_id) s, "
        "LATERAL (SELECT coalesce(array_agg(DISTINCT l ORDER BY l), '{}') AS labels FROM emails x "
        "         CROSS JOIN unnest(x.labels) AS l WHERE x.workspace_id = %(workspace)s "
        "         AND x.thread_id = s.thread_id AND x.deleted_at IS NULL) lab "
        "WHERE t.id = s.thread_id",
        params,
    )
    if not emptied:
        return
    # Threads whose last message went away.
    await conn.execute(
        "UPDATE threads SET message_count = 0, unread_count = 0, updated_at = now() WHERE id = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.workspace_id = %s AND e.thread_id = threads.id "
        "AND e.deleted_at IS NULL)",
        (list(thread_ids), workspace_id),
    )


async def stored_provider_ids(conn: Conn, account_id: UUID, provider_ids: Sequence[str]) -> set[str]:
    """Which of these provider ids are stored and not deleted."""
    cursor = await conn.execute(
        "SELECT provider_message_id FROM emails WHERE account_id = %s AND provider_message_id = ANY(%s) "
        "AND deleted_at IS NULL",
        (account_id, list(provider_ids)),
    )
    return {row[0] for row in await cursor.fetchall()}


async def stamp_generation(
    conn: Conn, account_id: UUID, provider_ids: Sequence[str], generation: int
) -> None:
    await conn.execute(
        "UPDATE emails SET sync_generation = %s WHERE account_id = %s AND provider_message_id = ANY(%s) "
        "AND sync_generation <> %s",
        (generation, account_id, list(provider_ids), generation),
    )


async def apply_labels(
    conn: Conn, account_id: UUID, provider_id: str, add: Sequence[str], remove: Sequence[str]
) -> UUID | None:
    """Apply a label change to a stored message; return its thread (None when it is not stored)."""
    cursor = await conn.execute(
        "UPDATE emails e SET labels = n.labels, " + _LABEL_FLAGS + ", updated_at = now() "
        "FROM (SELECT id, email_date, ARRAY(SELECT DISTINCT l FROM unnest(labels || %s::text[]) AS l "
        "      WHERE NOT l = ANY(%s::text[]) ORDER BY l) AS labels "
        "      FROM emails WHERE account_id = %s AND provider_message_id = %s) n "
        "WHERE e.id = n.id AND e.email_date = n.email_date RETURNING e.thread_id",
        (list(add), list(remove), account_id, provider_id),
    )
    row = await cursor.fetchone()
    return row[0] if row else None


async def set_labels(conn: Conn, account_id: UUID, provider_id: str, labels: Sequence[str]) -> UUID | None:
    """Replace a stored message's labels (messageAdded of a message already stored); its thread, or None."""
    cursor = await conn.execute(
        "UPDATE emails e SET labels = n.labels, " + _LABEL_FLAGS + ", updated_at = now() "
        "FROM (SELECT id, email_date, %s::text[] AS labels FROM emails "
        "      WHERE account_id = %s AND provider_message_id = %s) n "
        "WHERE e.id = n.id AND e.email_date = n.email_date RETURNING e.thread_id",
        (sorted(labels), account_id, provider_id),
    )
    row = await cursor.fetchone()
    return row[0] if row else None


async def mark_deleted(conn: Conn, account_id: UUID, provider_ids: Sequence[str]) -> set[UUID]:
    """Tombstone messages the provider deleted; return their threads."""
    if not provider_ids:
        return set()
    cursor = await conn.execute(
        "UPDATE emails SET deleted_at = now(), updated_at = now() WHERE account_id = %s "
        "AND provider_message_id = ANY(%s) AND deleted_at IS NULL RETURNING thread_id",
        (account_id, list(provider_ids)),
    )
    return {row[0] for row in await cursor.fetchall() if row[0] is not None}


async def tombstone_unlisted(conn: Conn, account_id: UUID, generation: int) -> tuple[int, set[UUID]]:
    """After a full listing: stored messages the listing did not stamp are gone from the mailbox."""
    cursor = await conn.execute(
        "UPDATE emails SET deleted_at = now(), updated_at = now() WHERE account_id = %s "
        "AND sync_generation < %s AND deleted_at IS NULL RETURNING thread_id",
        (account_id, generation),
    )
    rows = await cursor.fetchall()
    return len(rows), {row[0] for row in rows if row[0] is not None}
