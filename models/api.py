"""Request and response bodies of the HTTP API. JSON field names are camelCase, as in the design document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from models.tenancy import ApiKeyInfo, Role


class CreateApiKey(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, rename="camel"):
    name: str = ""
    expires_at: datetime | None = None


class CreatedApiKey(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    key: str  # shown once
    api_key: ApiKeyInfo


class Me(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    workspace_id: UUID
    workspace_name: str
    workspace_slug: str
    user_id: UUID
    email: str
    role: Role
    api_key_id: UUID | None


class Health(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    status: Literal["ok", "degraded"]
    checks: dict[str, str]


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: int
    user_id: UUID | None
    api_key_id: UUID | None
    action: str
    resource_type: str
    resource_id: str | None
    ip: str | None
    user_agent: str | None
    metadata: dict[str, Any]
    occurred_at: datetime


class EmailListItem(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: int
    account_id: UUID
    thread_id: UUID | None
    subject: str
    from_email: str | None
    from_name: str | None
    to_emails: list[str]
    snippet: str
    folder: str
    labels: list[str]
    is_read: bool
    is_starred: bool
    has_attachments: bool
    email_date: datetime
    category: str | None = None
    priority: str | None = None


class AttachmentInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: UUID
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    is_inline: bool


class EmailDetail(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: int
    account_id: UUID
    thread_id: UUID | None
    provider_message_id: str | None
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    subject: str
    from_email: str | None
    from_name: str | None
    to_emails: list[str]
    cc_emails: list[str]
    bcc_emails: list[str]
    reply_to: str | None
    body_text: str | None
    body_html: str | None
    snippet: str
    folder: str
    labels: list[str]
    is_read: bool
    is_starred: bool
    is_important: bool
    is_draft: bool
    is_sent: bool
    contact_id: UUID | None
    sent_at: datetime | None
    received_at: datetime | None
    raw_size: int | None
    parse_errors: list[str]
    attachments: list[AttachmentInfo]


class ThreadSummary(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: UUID
    account_id: UUID
    subject: str
    snippet: str
    participants: list[str]
    labels: list[str]
    message_count: int
    unread_count: int
    last_message_at: datetime | None


class ThreadDetail(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    thread: ThreadSummary
    messages: list[EmailListItem]


class Page(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    items: list[Any]
    next_cursor: str | None


class Diagnostics(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    healthy: bool
    diagnostics: dict[str, dict[str, Any]]
    recommendations: list[str]


MAX_AI_BODY_CHARS = 200_000


class AnalyzeEmail(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, rename="camel"):
    """An email to analyze (POST /v1/ai/analyze) or to suggest replies to (POST /v1/ai/replies);
    `context` is who the sender is to the user (models.ai_analysis.ReplyContext's fields)."""

    subject: str = ""
    body: str = ""
    sender_name: str = ""
    sender_email: str = ""
    context: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if len(self.body) > MAX_AI_BODY_CHARS or len(self.subject) > 2000:
            raise ValueError(f"body: at most {MAX_AI_BODY_CHARS} characters (subject 2,000)")
        if not (self.subject.strip() or self.body.strip()):
            raise ValueError("an email needs a subject or a body")
