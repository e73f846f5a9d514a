"""Composing outbox rows into messages: the campaign's (or its variant's) content for each
recipient, with a Message-ID that is the same however often the row is composed, so a resend
is recognisably the same message and a provider can be asked about it.

This is the plain composition (content as written, no personalization, tracking or signing):
what the sender needs to move mail; mail.campaigns.render adds the rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate
from typing import Any

from mail.campaigns.render import message_id
from mail.sending.outbox import Claimed
from mail.sending.sender import Composed, NotComposed


def _template(
    subject: str, from_name: str, from_email: str, reply_to: str | None, text: str, html: str
) -> bytes:
    """The message without its per-recipient headers, encoded once by the email package."""
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((from_name, from_email))
    message["Subject"] = subject
    if reply_to:
        message["Reply-To"] = reply_to
    message.set_content(text or " ")
    if html:
        message.add_alternative(html, subtype="html")
    return message.as_bytes()


def _header_safe(address: str) -> bool:
    return bool(address) and all(33 <= ord(character) < 127 for character in address) and "@" in address


async def compose_plain(conn: Any, rows: Sequence[Claimed]) -> list[Composed | NotComposed]:
    """Every recipient of a campaign (or variant) gets the same content, so it is encoded once
    per batch; each message adds only its own To, Date, Message-ID and X-Campaign-ID."""
    contents: dict[tuple[uuid.UUID, uuid.UUID | None], tuple[str, bytes] | str] = {}
    for key in {(row.campaign_id, row.variant_id) for row in rows}:
        contents[key] = await _content(conn, *key)
    date = formatdate(usegmt=True)
    composed: list[Composed | NotComposed] = []
    for row in rows:
        content = contents[(row.campaign_id, row.variant_id)]
        if isinstance(content, str):
            composed.append(NotComposed(row=row, error=content))
            continue
        from_email, template = content
        if not _header_safe(row.email):
            composed.append(NotComposed(row=row, error=f"cannot compose: not a safe address {row.email!r}"))
            continue
        mid = message_id(row.campaign_id, row.email, from_email)
        head = f"To: {row.email}\r\nDate: {date}\r\nMessage-ID: {mid}\r\nX-Campaign-ID: {row.campaign_id}\r\n"
        composed.append(
            Composed(
                row=row, envelope_from=from_email, message_id=mid, message=head.encode("ascii") + template
            )
        )
    return composed


async def _content(
    conn: Any, campaign_id: uuid.UUID, variant_id: uuid.UUID | None
) -> tuple[str, bytes] | str:
    cursor = await conn.execute(
        "SELECT subject, from_name, from_email, reply_to, body_text, body_html FROM campaigns WHERE id = %s",
        (campaign_id,),
    )
    subject, from_name, from_email, reply_to, body_text, body_html = await cursor.fetchone()
    if variant_id is not None:
        cursor = await conn.execute(
            "SELECT subject, from_name, body_html, body_text FROM campaign_variants WHERE id = %s",
            (variant_id,),
        )
        v_subject, v_from_name, v_html, v_text = await cursor.fetchone()
        subject, from_name = v_subject or subject, v_from_name or from_name
        body_html, body_text = v_html or body_html, v_text or body_text
    try:
        return from_email, _template(subject, from_name, from_email, reply_to, body_text, body_html)
    except (ValueError, TypeError) as error:  # a header the email package refuses
        return f"cannot compose: {error}"
