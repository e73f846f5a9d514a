"""Composing outbox rows into the campaign's own messages: personalized for each contact, tracked,
with List-Unsubscribe, and DKIM-signed where the From domain has a key.

Per batch of claimed rows: each campaign (and variant) is loaded once and compiled once (cached by
mail.campaigns.render), the rows' contacts are read in one query, and each row's tracked email
(the id its open, click and unsubscribe tokens carry) is made in one statement, unique per outbox
row: composing a row again (a retry, an uncertain row) signs the same tokens and so renders the
same message, with the same Message-ID. The rendered links are stored for the click redirect in
one statement per batch, one row per message (mail.tracking.registry.store_link_lists). A row
that cannot be rendered (an address that cannot be written, a placeholder URL that is no URL) is
NotComposed with the reason; the others go on. With `sending.verp_return_path` each message's
envelope sender names its recipient (mail.sending.verp), so that its bounce does too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from mail.campaigns import repository
from mail.campaigns.personalize import Recipient
from mail.campaigns.render import MessageContent, RenderOptions, TokenTrackingPlan, message_id, render_message
from mail.crypto import Keyring
from mail.dkim import DkimSigner, load_signers, signer_for
from mail.errors import MailrayError
from mail.sending.outbox import Claimed
from mail.sending.sender import Composed, NotComposed
from mail.sending.verp import verp_sender
from mail.tracking import registry
from mail.tracking.tokens import TokenSigner
from models.campaigns import Campaign
from models.settings import Settings

Conn = Any

_TRACK = (
    "INSERT INTO tracked_emails (workspace_id, campaign_id, variant_id, recipient_id, contact_id, recipient_email, "
    "message_id, subject, status) "
    "SELECT %s, t.campaign_id, t.variant_id, t.recipient_id, t.contact_id, lower(t.email), t.message_id, t.subject, "
    "'queued' FROM unnest(%s::uuid[], %s::uuid[], %s::bigint[], %s::uuid[], %s::text[], %s::text[], %s::text[]) "
    "AS t(campaign_id, variant_id, recipient_id, contact_id, email, message_id, subject) "
    "ON CONFLICT (recipient_id) WHERE recipient_id IS NOT NULL DO NOTHING"
)


class CampaignComposer:
    """`await composer(conn, rows)`: the sender loop's Compose, for campaign mail."""

    def __init__(self, settings: Settings, keyring: Keyring) -> None:
        self._signer = TokenSigner.from_keyring(keyring)
        self._base_url = settings.tracking.base_url
        self._dkim: dict[str, DkimSigner] = load_signers(settings, keyring)
        self._return_path = settings.sending.verp_return_path

    async def __call__(self, conn: Conn, rows: Sequence[Claimed]) -> list[Composed | NotComposed]:
        campaigns = {
            cid: await repository.load_campaign(conn, cid) for cid in {row.campaign_id for row in rows}
        }
        contents = {row.id: _content(campaigns[row.campaign_id], row.variant_id) for row in rows}
        recipients = await _recipients(conn, rows)
        tracked = await self._tracked_emails(conn, rows, contents)
        composed: list[Composed | NotComposed] = []
        links: list[tuple[uuid.UUID, int, Sequence[registry.Link]]] = []
        for row in rows:
            await asyncio.sleep(0)  # between messages, the sender's other loops read their replies
            campaign = campaigns[row.campaign_id]
            options = RenderOptions.of(campaign)
            plan = TokenTrackingPlan(self._signer, self._base_url, tracked[row.id], recipient_id=row.id)
            try:
                rendered = render_message(
                    contents[row.id], recipients.get(row.contact_id) or Recipient(email=row.email), options, plan,
                    campaign_id=row.campaign_id,
                )  # fmt: skip
            except (MailrayError, ValueError) as error:
                composed.append(NotComposed(row=row, error=f"cannot compose: {error}"[:1000]))
                continue
            message = rendered.message
            signer = signer_for(self._dkim, rendered.envelope_from)
            if signer is not None:
                message = signer.sign(message)
            links.append((row.workspace_id, tracked[row.id], rendered.links))
            composed.append(
                Composed(
                    row=row,
                    envelope_from=verp_sender(self._return_path, row.email)
                    if self._return_path
                    else rendered.envelope_from,
                    message_id=rendered.message_id,
                    message=message,
                    account_id=campaign.account_id,
                )
            )
        await registry.store_link_lists(conn, links)
        return composed

    async def _tracked_emails(
        self, conn: Conn, rows: Sequence[Claimed], contents: dict[int, MessageContent]
    ) -> dict[int, int]:
        """Each row's tracked email id, made on first composition and found on the next."""
        by_workspace: dict[uuid.UUID, list[Claimed]] = {}
        for row in rows:
            by_workspace.setdefault(row.workspace_id, []).append(row)
        for workspace_id, group in by_workspace.items():
            await conn.execute(
                _TRACK,
                (
                    workspace_id,
                    [row.campaign_id for row in group],
                    [row.variant_id for row in group],
                    [row.id for row in group],
                    [row.contact_id for row in group],
                    [row.email for row in group],
                    [_bare_message_id(row, contents[row.id]) for row in group],
                    [contents[row.id].subject for row in group],
                ),
            )
        cursor = await conn.execute(
            "SELECT recipient_id, id FROM tracked_emails WHERE recipient_id = ANY(%s)",
            ([row.id for row in rows],),
        )
        return {int(recipient_id): int(email_id) for recipient_id, email_id in await cursor.fetchall()}


def _content(campaign: Campaign, variant_id: uuid.UUID | None) -> MessageContent:
    variant = next((v for v in campaign.variants if v.id == variant_id), None) if variant_id else None
    return MessageContent.of(campaign, variant)


def _bare_message_id(row: Claimed, content: MessageContent) -> str:
    """As tracked_emails keeps Message-IDs (for reply matching): without the angle brackets."""
    return message_id(row.campaign_id, row.email, content.from_email).strip("<>")


async def _recipients(conn: Conn, rows: Sequence[Claimed]) -> dict[uuid.UUID | None, Recipient]:
    contact_ids = [row.contact_id for row in rows if row.contact_id is not None]
    if not contact_ids:
        return {}
    cursor = await conn.execute(
        "SELECT id, email, first_name, last_name, company, attributes FROM contacts WHERE id = ANY(%s)",
        (contact_ids,),
    )
    return {
        contact_id: Recipient(email=email, first_name=first, last_name=last, company=company,
                              attributes=attributes or {})
        for contact_id, email, first, last, company, attributes in await cursor.fetchall()
    }  # fmt: skip
