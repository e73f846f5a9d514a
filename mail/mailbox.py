"""Reading synced mail: lists, details, threads and full-text search, scoped to what the caller may read.

Members see the mailboxes they own; owners and admins see every mailbox of the workspace
(mail.access). Lists page with an opaque cursor over (email_date, id), newest first, so pages
stay stable while new mail arrives.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
import psycopg
from psycopg.rows import dict_row

from mail.access import require_read_email
from mail.crypto import Keyring
from mail.errors import NotFound, ValidationError
from mail.sync.store import decrypt_body
from models.api import AttachmentInfo, EmailDetail, EmailListItem, Page, ThreadDetail, ThreadSummary
from models.tenancy import Principal

Conn = psycopg.AsyncConnection[Any]

MAX_PAGE = 200
_LIST_COLUMNS = (
    "e.id, e.account_id, e.thread_id, e.subject, e.from_email, e.from_name, e.to_emails, e.snippet, e.folder, "
    "e.labels, e.is_read, e.is_starred, e.has_attachments, e.email_date, e.category, e.priority"
)
_VISIBLE = (
    "e.workspace_id = %(workspace)s AND e.deleted_at IS NULL AND e.account_id IN "
    "(SELECT id FROM email_accounts WHERE workspace_id = %(workspace)s AND (%(admin)s OR user_id = %(user)s))"
)


class EmailFilter(msgspec.Struct, frozen=True, kw_only=True):
    account_id: UUID | None = None
    folder: Literal["inbox", "sent", "drafts", "spam", "trash", "archive", "other"] | None = None
    label: str | None = None
    is_read: bool | None = None
    from_email: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    thread_id: UUID | None = None
    # The email AI's labels (mail.ai): unanalyzed mail has neither.
    priority: Literal["high", "medium", "low"] | None = None
    category: str | None = None


def _encode_cursor(when: datetime, email_id: int | str | UUID) -> str:
    return (
        base64.urlsafe_b64encode(msgspec.json.encode([when.isoformat(), str(email_id)])).decode().rstrip("=")
    )


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        when, key = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(when), str(key)
    except (ValueError, TypeError, msgspec.DecodeError):
        raise ValidationError("cursor is not one this API handed out", field="cursor") from None


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    return limit


def _filters(filters: EmailFilter, params: dict[str, Any]) -> list[str]:
    clauses: list[str] = []
    for name, clause in (
        ("account_id", "e.account_id = %(account_id)s"),
        ("folder", "e.folder = %(folder)s"),
        ("label", "%(label)s = ANY(e.labels)"),
        ("is_read", "e.is_read = %(is_read)s"),
        ("from_email", "lower(e.from_email) = lower(%(from_email)s)"),
        ("after", "e.email_date >= %(after)s"),
        ("before", "e.email_date < %(before)s"),
        ("thread_id", "e.thread_id = %(thread_id)s"),
        ("priority", "e.priority = %(priority)s"),
        ("category", "e.category = %(category)s"),
    ):
        value = getattr(filters, name)
        if value is not None:
            params[name] = value
            clauses.append(clause)
    return clauses


async def _page_of_emails(
    conn: Conn,
    principal: Principal,
    filters: EmailFilter,
    extra: list[str],
    params: dict[str, Any],
    cursor: str | None,
    limit: int,
) -> Page:
    params.update(
        workspace=principal.workspace_id,
        admin=principal.is_admin,
        user=principal.user_id,
        limit=_limit(limit) + 1,
    )
    clauses = [_VISIBLE, *_filters(filters, params), *extra]
    if cursor:
        params["cursor_date"], key = _decode_cursor(cursor)
        params["cursor_id"] = int(key)
        clauses.append("(e.email_date, e.id) < (%(cursor_date)s, %(cursor_id)s)")
    query = f"SELECT {_LIST_COLUMNS} FROM emails e WHERE {' AND '.join(clauses)} ORDER BY e.email_date DESC, e.id DESC LIMIT %(limit)s"
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query.encode(), params)
        rows = await cur.fetchall()
    items = [EmailListItem(**row) for row in rows[:limit]]
    next_cursor = _encode_cursor(items[-1].email_date, items[-1].id) if len(rows) > limit else None
    return Page(items=items, next_cursor=next_cursor)


async def list_emails(
    conn: Conn, principal: Principal, filters: EmailFilter, *, cursor: str | None = None, limit: int = 50
) -> Page:
    return await _page_of_emails(conn, principal, filters, [], {}, cursor, limit)


async def search_emails(
    conn: Conn,
    principal: Principal,
    query: str,
    filters: EmailFilter,
    *,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """Full-text search (web-search syntax: words, "phrases", -exclusions, OR) with filters, over
    the indexed mail (mail.sync.search_index: a full sync's mail is indexed after it is stored)."""
    query = query.strip()
    if not query or len(query) > 500:
        raise ValidationError("q must be 1 to 500 characters", field="q")
    return await _page_of_emails(
        conn,
        principal,
        filters,
        [
            "(e.id, e.email_date) IN (SELECT s.email_id, s.email_date FROM email_search s "
            "WHERE s.workspace_id = %(workspace)s AND s.search_vector @@ websearch_to_tsquery('english', %(q)s))"
        ],
        {"q": query},
        cursor,
        limit,
    )


async def get_email(conn: Conn, keyring: Keyring, principal: Principal, email_id: int) -> EmailDetail:
    await require_read_email(conn, principal, email_id)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, account_id, thread_id, provider_message_id, message_id, in_reply_to, reference_ids, subject, "
            "from_email, from_name, to_emails, cc_emails, bcc_emails, reply_to, body_text_enc, body_html_enc, snippet, "
            "folder, labels, is_read, is_starred, is_important, is_draft, is_sent, contact_id, sent_at, received_at, "
            "raw_size, parse_errors FROM emails WHERE id = %s AND deleted_at IS NULL",
            (email_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no email {email_id}")
        await cur.execute(
            "SELECT id, filename, content_type, size_bytes, encode(sha256, 'hex') AS sha256, is_inline "
            "FROM attachments WHERE email_id = %s ORDER BY part_id",
            (email_id,),
        )
        attachments = [AttachmentInfo(**a) for a in await cur.fetchall()]
    row["references"] = row.pop("reference_ids")
    row["body_text"] = decrypt_body(keyring, email_id, "body_text_enc", row.pop("body_text_enc"))
    row["body_html"] = decrypt_body(keyring, email_id, "body_html_enc", row.pop("body_html_enc"))
    return EmailDetail(**row, attachments=attachments)


_THREAD_COLUMNS = "t.id, t.account_id, t.subject, t.snippet, t.participants, t.labels, t.message_count, t.unread_count, t.last_message_at"
_VISIBLE_THREADS = (
    "t.workspace_id = %(workspace)s AND t.message_count > 0 AND t.account_id IN "
    "(SELECT id FROM email_accounts WHERE workspace_id = %(workspace)s AND (%(admin)s OR user_id = %(user)s))"
)


async def list_threads(
    conn: Conn,
    principal: Principal,
    *,
    account_id: UUID | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    params: dict[str, Any] = {
        "workspace": principal.workspace_id, "admin": principal.is_admin, "user": principal.user_id,
        "limit": _limit(limit) + 1, "account_id": account_id,
    }  # fmt: skip
    clauses = [_VISIBLE_THREADS, "t.last_message_at IS NOT NULL"]
    if account_id is not None:
        clauses.append("t.account_id = %(account_id)s")
    if cursor:
        params["cursor_date"], key = _decode_cursor(cursor)
        params["cursor_id"] = UUID(key)
        clauses.append("(t.last_message_at, t.id) < (%(cursor_date)s, %(cursor_id)s)")
    query = (
        f"SELECT {_THREAD_COLUMNS} FROM threads t WHERE {' AND '.join(clauses)} "
        "ORDER BY t.last_message_at DESC, t.id DESC LIMIT %(limit)s"
    ).encode()
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
    items = [ThreadSummary(**row) for row in rows[:limit]]
    last = items[-1] if items else None
    next_cursor = (
        _encode_cursor(last.last_message_at, last.id)
        if len(rows) > limit and last and last.last_message_at
        else None
    )
    return Page(items=items, next_cursor=next_cursor)


async def get_thread(conn: Conn, principal: Principal, thread_id: UUID) -> ThreadDetail:
    params = {
        "workspace": principal.workspace_id,
        "admin": principal.is_admin,
        "user": principal.user_id,
        "id": thread_id,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_THREAD_COLUMNS} FROM threads t WHERE {_VISIBLE_THREADS} AND t.id = %(id)s".encode(),
            params,
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no thread {thread_id}")
    thread = ThreadSummary(**row)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_LIST_COLUMNS} FROM emails e WHERE {_VISIBLE} AND e.thread_id = %(id)s ORDER BY e.email_date, e.id".encode(),
            params,
        )
        messages = [EmailListItem(**r) for r in await cur.fetchall()]
    return ThreadDetail(thread=thread, messages=messages)
