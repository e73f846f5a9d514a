"""Workspaces, users, API keys and the authenticated caller."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

Role = Literal["owner", "admin", "member"]


class Workspace(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    name: str
    slug: str
    created_at: datetime


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    workspace_id: UUID
    email: str
    display_name: str | None
    role: Role
    is_active: bool = True


class ApiKeyInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """An API key as listed: never the secret."""

    id: UUID
    workspace_id: UUID
    user_id: UUID
    name: str
    lookup_id: str
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class NewApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A freshly created key: `key` is shown once and never stored."""

    info: ApiKeyInfo
    key: str


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: resolved from an API key on every request."""

    workspace_id: UUID
    user_id: UUID
    role: Role
    api_key_id: UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.role in ("owner", "admin")


class RequestContext(msgspec.Struct, frozen=True, kw_only=True):
    """Where a request came from, for the audit log."""

    ip: str | None = None
    user_agent: str | None = None
