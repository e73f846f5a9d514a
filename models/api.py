"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from models.tenancy import ApiKeyInfo, Role


class CreateApiKey(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    name: str = ""
    expires_at: datetime | None = None


class CreatedApiKey(msgspec.Struct, frozen=True, kw_only=True):
    key: str  # shown once
    api_key: ApiKeyInfo


class Me(msgspec.Struct, frozen=True, kw_only=True):
    workspace_id: UUID
    workspace_name: str
    workspace_slug: str
    user_id: UUID
    email: str
    role: Role
    api_key_id: UUID | None


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok", "degraded"]
    checks: dict[str, str]


class EmailSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    account_id: UUID
    thread_id: UUID | None
    message_id: str | None
    subject: str
    from_email: str | None
    from_name: str | None
    to_emails: list[str]
    snippet: str
    folder: str
    labels: list[str]
    is_read: bool
    received_at: datetime | None
    sent_at: datetime | None


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
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
