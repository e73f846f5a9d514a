"""Contacts and campaigns as the API reads and writes them (camelCase JSON), after the design
document's EmailCampaign and CampaignVariant. What the database keeps is in
mail/store/sql/0001_core.sql and 0005_campaigns.sql; the rules a type cannot say are in
mail.campaigns.validate."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

CampaignStatus = Literal["draft", "scheduled", "sending", "paused", "sent", "cancelled"]
AttributeValue = str | int | float | bool


class RecipientFilter(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Which contacts a campaign goes to. Every condition given must hold (an empty filter is
    every contact). `tags` match `any` (default) or `all` of them; `attributes` are equalities on
    the contact's custom attributes; the engagement windows count human opens and clicks (the
    tracking classifier's) of the contact's tracked emails in the last N days."""

    tags: list[str] = msgspec.field(default_factory=list)
    tags_match: Literal["any", "all"] = "any"
    attributes: dict[str, AttributeValue] = msgspec.field(default_factory=dict)
    has_opened_in_last: int | None = None
    has_clicked_in_last: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class VariantInput(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    name: str
    percentage: float
    subject: str | None = None
    from_name: str | None = None
    preview_text: str | None = None
    body_html: str | None = None
    body_text: str | None = None


class AbTestSettings(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """The test cohort (a share of the recipients, split by the variants' percentages), how long
    to wait before deciding, and what decides."""

    test_percentage: float = 20.0
    wait_hours: float = 4.0
    metric: Literal["open", "click"] = "open"


class CampaignInput(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Create (every field) or update (the fields present) a draft or scheduled campaign."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    subject: str | msgspec.UnsetType = msgspec.UNSET
    preview_text: str | msgspec.UnsetType | None = msgspec.UNSET
    from_name: str | msgspec.UnsetType = msgspec.UNSET
    from_email: str | msgspec.UnsetType = msgspec.UNSET
    reply_to: str | msgspec.UnsetType | None = msgspec.UNSET
    body_html: str | msgspec.UnsetType = msgspec.UNSET
    body_text: str | msgspec.UnsetType = msgspec.UNSET
    recipient_filter: RecipientFilter | msgspec.UnsetType = msgspec.UNSET
    exclude_filter: RecipientFilter | msgspec.UnsetType | None = msgspec.UNSET
    track_opens: bool | msgspec.UnsetType = msgspec.UNSET
    track_clicks: bool | msgspec.UnsetType = msgspec.UNSET
    enable_unsubscribe: bool | msgspec.UnsetType = msgspec.UNSET
    send_at_local_time: bool | msgspec.UnsetType = msgspec.UNSET
    scheduled_at: datetime | msgspec.UnsetType | None = msgspec.UNSET
    is_ab_test: bool | msgspec.UnsetType = msgspec.UNSET
    ab_test: AbTestSettings | msgspec.UnsetType = msgspec.UNSET
    variants: list[VariantInput] | msgspec.UnsetType = msgspec.UNSET
    account_id: UUID | msgspec.UnsetType | None = msgspec.UNSET


class Variant(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: UUID
    name: str
    percentage: float
    subject: str | None
    from_name: str | None
    preview_text: str | None
    body_html: str | None
    body_text: str | None
    status: str
    sent_count: int


class Campaign(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: UUID
    workspace_id: UUID
    created_by: UUID | None
    account_id: UUID | None
    name: str
    subject: str
    preview_text: str | None
    from_name: str
    from_email: str
    reply_to: str | None
    body_html: str
    body_text: str
    recipient_filter: RecipientFilter
    exclude_filter: RecipientFilter | None
    recipient_count: int
    track_opens: bool
    track_clicks: bool
    enable_unsubscribe: bool
    send_at_local_time: bool
    scheduled_at: datetime | None
    sending_started_at: datetime | None
    sending_completed_at: datetime | None
    is_ab_test: bool
    ab_test: AbTestSettings
    variants: list[Variant]
    winning_variant: UUID | None
    ab_decision: dict[str, object] | None
    status: CampaignStatus
    pause_reason: str | None
    sent_count: int
    created_at: datetime
    updated_at: datetime


class RecipientCount(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What a send would reach now: `eligible` = `matching` - `excluded` - `suppressed`."""

    matching: int
    excluded: int
    suppressed: int
    eligible: int


class ContactInput(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    email: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    time_zone: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    attributes: dict[str, AttributeValue] = msgspec.field(default_factory=dict)


class Contact(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: UUID
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    time_zone: str | None
    tags: list[str]
    attributes: dict[str, AttributeValue]
    status: str
    source: str
    created_at: datetime


class ImportRowError(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    row: int
    error: str


class ImportReport(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A CSV import: rows created, rows that updated an existing contact, rows refused (with why)."""

    created: int
    updated: int
    rejected: list[ImportRowError]
