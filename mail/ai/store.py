"""Email analyses in Postgres: what is still to analyze, storing results, reading them back.

The classifier's labels go to plain columns of `emails` (category, priority, sentiment,
sentiment_score, intents, primary_intent): the priority inbox filters and sorts on them. The
whole analysis (entities, summary, action items, suggested replies: content) is stored
encrypted in `ai_analysis_enc`, bound to its email as the bodies are. `analyzed_at` marks an
email done; `analysis_model` names the heads that labelled it, so reprocessing knows what is
stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from mail.crypto import Keyring
from mail.errors import MailrayError
from mail.key_rotation import column_context
from mail.sync.store import decrypt_body
from models.ai import EmailText
from models.ai_email import EmailAIAnalysis

Conn = Any

_ANALYSIS_COLUMN = "ai_analysis_enc"
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(EmailAIAnalysis)


class StoredEmail(msgspec.Struct, frozen=True, kw_only=True):
    """An email as the analysis reads it (bodies decrypted)."""

    id: int
    email_date: datetime
    workspace_id: UUID
    account_id: UUID
    subject: str
    from_email: str | None
    from_name: str | None
    body: str  # the text body, else the HTML one, else the snippet
    # Why the body could not be read (a key the keyring lacks, a damaged value); such an email is
    # marked analyzed with this error instead of being analyzed, so it cannot stall the worker.
    unreadable: str | None = None

    def text(self) -> EmailText:
        sender = f"{self.from_name} <{self.from_email}>" if self.from_name else (self.from_email or "")
        return EmailText(subject=self.subject, sender=sender, body=self.body)


_COLUMNS = "id, email_date, workspace_id, account_id, subject, from_email, from_name, body_text_enc, body_html_enc, snippet"


def _stored(keyring: Keyring, row: Sequence[Any]) -> StoredEmail:
    email_id = int(row[0])
    unreadable = None
    try:
        body = (
            decrypt_body(keyring, email_id, "body_text_enc", row[7])
            or decrypt_body(keyring, email_id, "body_html_enc", row[8])
            or row[9]
            or ""
        )
    except MailrayError as error:  # CryptoError, or a key id this keyring does not hold
        body, unreadable = "", f"{type(error).__name__}: {error}"[:500]
    return StoredEmail(
        id=email_id, email_date=row[1], workspace_id=row[2], account_id=row[3], subject=row[4] or "",
        from_email=row[5], from_name=row[6], body=body, unreadable=unreadable,
    )  # fmt: skip


async def claim_unanalyzed(conn: Conn, keyring: Keyring, limit: int) -> list[StoredEmail]:
    """The newest unanalyzed emails, locked for the caller's transaction (others skip them)."""
    cursor = await conn.execute(
        f"SELECT {_COLUMNS} FROM emails WHERE analyzed_at IS NULL AND deleted_at IS NULL "
        "ORDER BY id DESC LIMIT %s FOR UPDATE SKIP LOCKED",
        (limit,),
    )
    return [_stored(keyring, row) for row in await cursor.fetchall()]


async def read_range(
    conn: Conn,
    keyring: Keyring,
    start_id: int,
    end_id: int,
    *,
    workspace_id: UUID | None = None,
    only_unanalyzed: bool = False,
) -> list[StoredEmail]:
    """Emails with start_id <= id < end_id (not deleted), optionally of one workspace only."""
    conditions = ["id >= %(start)s", "id < %(end)s", "deleted_at IS NULL"]
    if workspace_id is not None:
        conditions.append("workspace_id = %(workspace)s")
    if only_unanalyzed:
        conditions.append("analyzed_at IS NULL")
    cursor = await conn.execute(
        f"SELECT {_COLUMNS} FROM emails WHERE {' AND '.join(conditions)} ORDER BY id",
        {"start": start_id, "end": end_id, "workspace": workspace_id},
    )
    return [_stored(keyring, row) for row in await cursor.fetchall()]


def _context(email_id: int) -> bytes:
    return column_context("emails", _ANALYSIS_COLUMN, [email_id])


async def store_analyses(
    conn: Conn, keyring: Keyring, results: Sequence[tuple[StoredEmail, EmailAIAnalysis]], model: str
) -> None:
    """Write each email's labels and its encrypted analysis, and mark it analyzed."""
    rows = [
        (
            analysis.category,
            analysis.priority,
            analysis.sentiment,
            max(-1.0, min(1.0, analysis.sentiment_score)),
            list(analysis.intents),
            analysis.primary_intent,
            keyring.encrypt(_encoder.encode(analysis), context=_context(email.id)),
            model,
            email.id,
            email.email_date,
        )
        for email, analysis in results
    ]
    if not rows:
        return
    async with conn.cursor() as cursor:
        await cursor.executemany(
            "UPDATE emails SET category = %s, priority = %s, sentiment = %s, sentiment_score = %s, "
            "intents = %s, primary_intent = %s, ai_analysis_enc = %s, analysis_model = %s, analysis_error = NULL, "
            "analyzed_at = now(), updated_at = now() WHERE id = %s AND email_date = %s",
            rows,
        )


async def mark_unreadable(conn: Conn, emails: Sequence[StoredEmail]) -> None:
    """Mark emails whose body could not be read as analyzed, with the reason (reprocessing with
    the right keys analyzes them later)."""
    rows = [(email.unreadable, email.id, email.email_date) for email in emails if email.unreadable]
    if not rows:
        return
    async with conn.cursor() as cursor:
        await cursor.executemany(
            "UPDATE emails SET analyzed_at = now(), analysis_model = NULL, analysis_error = %s, updated_at = now() "
            "WHERE id = %s AND email_date = %s",
            rows,
        )


async def read_analysis(conn: Conn, keyring: Keyring, email_id: int) -> EmailAIAnalysis | None:
    """The stored analysis of an email (None when it has none yet)."""
    cursor = await conn.execute("SELECT ai_analysis_enc FROM emails WHERE id = %s", (email_id,))
    row = await cursor.fetchone()
    if row is None or row[0] is None:
        return None
    return _decoder.decode(keyring.decrypt(bytes(row[0]), context=_context(email_id)))
