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

from mail.sending.outbox import Claimed
from mail.sending.sender import Composed, NotComposed

_NAMESPACE = uuid.UUID("6f1d2a5e-3c4b-4f7a-9a51-0b7e6c2d9e10")


def message_id(campaign_id: uuid.UUID, recipient: str, from_email: str) -> str:
    token = uuid.uuid5(_NAMESPACE, f"{campaign_id}:{recipient.lower()}").hex
    return f"<{token}@{from_email.rpartition('@')[2].lower() or 'mailray.invalid'}>"


async def compose_plain(conn: Any, rows: Sequence[Claimed]) -> list[Composed | NotComposed]:
    campaigns: dict[uuid.UUID, tuple[Any, ...]] = {}
    for campaign_id in {row.campaign_id for row in rows}:
        cursor = await conn.execute(
            "SELECT subject, from_name, from_email, reply_to, body_text, body_html FROM campaigns WHERE id = %s",
            (campaign_id,),
        )
        campaigns[campaign_id] = await cursor.fetchone()
    variants: dict[uuid.UUID, tuple[Any, ...]] = {}
    for variant_id in {row.variant_id for row in rows if row.variant_id is not None}:
        cursor = await conn.execute(
            "SELECT subject, from_name, body_html, body_text FROM campaign_variants WHERE id = %s",
            (variant_id,),
        )
        variants[variant_id] = await cursor.fetchone()
    composed: list[Composed | NotComposed] = []
    for row in rows:
        subject, from_name, from_email, reply_to, body_text, body_html = campaigns[row.campaign_id]
        if row.variant_id is not None:
            v_subject, v_from_name, v_html, v_text = variants[row.variant_id]
            subject, from_name = v_subject or subject, v_from_name or from_name
            body_html, body_text = v_html or body_html, v_text or body_text
        mid = message_id(row.campaign_id, row.email, from_email)
        try:
            message = EmailMessage(policy=SMTP)
            message["From"] = formataddr((from_name, from_email))
            message["To"] = row.email
            message["Subject"] = subject
            message["Date"] = formatdate(usegmt=True)
            message["Message-ID"] = mid
            if reply_to:
                message["Reply-To"] = reply_to
            message.set_content(body_text or " ")
            if body_html:
                message.add_alternative(body_html, subtype="html")
            composed.append(
                Composed(row=row, envelope_from=from_email, message_id=mid, message=message.as_bytes())
            )
        except (ValueError, TypeError) as error:  # a header the email package refuses
            composed.append(NotComposed(row=row, error=f"cannot compose: {error}"))
    return composed
