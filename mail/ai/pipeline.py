"""Analyzing stored mail: the classifier's labels in one batched call, the text analyses (entities,
summary, action items, replies) in a worker thread, the two combined and stored.

`analyze_pending` is one step of the AnalysisWorker: it claims the newest unanalyzed emails
(locked, so workers never share one), analyzes them and stores the results in the same
transaction: an email is analyzed once, and a crash leaves it unanalyzed for the next step.

The reply context comes from the workspace's contacts: `relationship` is the contact's
attribute of that name, else its tag customer, prospect or colleague; active deals are its
`deals` attribute (a list of names); prior interactions count the stored emails from the address.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from mail.ai.analysis import analyze_text
from mail.ai.backend import AiBackend, blocking_embed
from mail.ai.embedding import Embed
from mail.ai.store import StoredEmail, claim_unanalyzed, mark_unreadable, store_analyses
from mail.services import Services
from models.ai import Classification
from models.ai_analysis import ReplyContext, TextAnalysis
from models.ai_email import EmailAIAnalysis, combine

Conn = Any

_RELATIONSHIP_TAGS = ("customer", "prospect", "colleague")


async def analyze_emails(
    backend: AiBackend,
    emails: Sequence[StoredEmail],
    contexts: dict[tuple[UUID, str], ReplyContext] | None = None,
    *,
    model: str = "",
) -> list[EmailAIAnalysis]:
    """The full analysis of each email (`contexts` by workspace and lowercased sender address)."""
    if not emails:
        return []
    labels = await backend.classify_many([email.text() for email in emails])
    embed = blocking_embed(backend, asyncio.get_running_loop())
    contexts = contexts or {}

    def read_texts() -> list[EmailAIAnalysis]:
        return [
            combine(label, _text_analysis(email, label, contexts, embed), model)
            for email, label in zip(emails, labels, strict=True)
        ]

    return await asyncio.to_thread(read_texts)


def _text_analysis(
    email: StoredEmail, label: Classification, contexts: dict[tuple[UUID, str], ReplyContext], embed: Embed
) -> TextAnalysis:
    sender = (email.from_email or "").lower()
    context = contexts.get((email.workspace_id, sender)) or ReplyContext(sender_name=email.from_name or "")
    return analyze_text(
        email.subject,
        email.body,
        email.from_name or "",
        email.from_email or "",
        embed=embed,
        reference_date=email.email_date.astimezone(UTC) if email.email_date else datetime.now(UTC),
        context=context,
        intents=label.intents,
    )


async def reply_contexts(conn: Conn, workspace_id: UUID, addresses: Sequence[str]) -> dict[str, ReplyContext]:
    """What the workspace knows about these senders (lowercased address -> context)."""
    lowered = sorted({address.lower() for address in addresses if address})
    if not lowered:
        return {}
    cursor = await conn.execute(
        "SELECT lower(c.email), coalesce(c.display_name, trim(coalesce(c.first_name, '') || ' ' || "
        "coalesce(c.last_name, ''))), c.attributes, "
        "coalesce((SELECT array_agg(t.tag) FROM contact_tags t WHERE t.contact_id = c.id), '{}'), "
        "(SELECT count(*) FROM emails e WHERE e.workspace_id = c.workspace_id AND lower(e.from_email) = lower(c.email)) "
        "FROM contacts c WHERE c.workspace_id = %s AND lower(c.email) = ANY(%s)",
        (workspace_id, lowered),
    )
    contexts: dict[str, ReplyContext] = {}
    for address, name, attributes, tags, interactions in await cursor.fetchall():
        attributes = attributes if isinstance(attributes, dict) else {}
        relationship = str(attributes.get("relationship") or "")
        if not relationship:
            relationship = next((tag for tag in _RELATIONSHIP_TAGS if tag in tags), "unknown")
        deals = attributes.get("deals")
        contexts[address] = ReplyContext(
            sender_name=(name or "").strip(),
            relationship=relationship,
            interaction_count=max(int(interactions) - 1, 0),  # the email being read is not a prior one
            active_deals=[str(deal) for deal in deals][:50] if isinstance(deals, list) else [],
        )
    return contexts


async def analyze_pending(services: Services, backend: AiBackend, limit: int) -> int:
    """Analyze up to `limit` unanalyzed emails (the newest first); how many were analyzed."""
    model = await backend.model_version()
    async with services.pool.connection() as conn, conn.transaction():
        claimed = await claim_unanalyzed(conn, services.keyring, limit)
        if not claimed:
            return 0
        await mark_unreadable(conn, claimed)
        emails = [email for email in claimed if email.unreadable is None]
        contexts: dict[tuple[UUID, str], ReplyContext] = {}
        for workspace_id in {email.workspace_id for email in emails}:
            senders = [email.from_email or "" for email in emails if email.workspace_id == workspace_id]
            known = await reply_contexts(conn, workspace_id, senders)
            contexts.update({(workspace_id, address): context for address, context in known.items()})
        analyses = await analyze_emails(backend, emails, contexts, model=model)
        await store_analyses(conn, services.keyring, list(zip(emails, analyses, strict=True)), model)
    return len(claimed)
