"""The rules of a campaign a type cannot say, with errors that name the field.

Two levels: `check_draft` (what any saved campaign must satisfy: a name, well-formed addresses
and filters, variants that add up) and `check_sendable` (what scheduling or sending needs on top:
a subject, a body, and a from-address the workspace may send as: a connected account's address
or one in a verified sending domain).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from mail.errors import ValidationError
from models.campaigns import AbTestSettings, RecipientFilter, VariantInput

MAX_NAME = 200
MAX_SUBJECT = 998  # RFC 5322's line limit
MAX_DAYS = 3650
_PERCENT_TOLERANCE = 0.01


def check_address(value: str, field: str) -> str:
    """A plain addr-spec (local@domain), no display name, no whitespace or header breaks."""
    address = value.strip()
    local, _, domain = address.rpartition("@")
    if (
        not local
        or "." not in domain
        or domain.startswith(".")
        or domain.endswith(".")
        or len(address) > 320
        or any(character.isspace() or character in '<>,;"' or ord(character) < 32 for character in address)
    ):
        raise ValidationError(f"{field}: not an email address: {value!r}", field=field)
    return address


def _check_text(value: str, field: str, limit: int, *, required: bool) -> None:
    if required and not value.strip():
        raise ValidationError(f"{field}: must not be empty", field=field)
    if len(value) > limit:
        raise ValidationError(f"{field}: at most {limit} characters, got {len(value)}", field=field)


def check_filter(recipient_filter: RecipientFilter, field: str) -> None:
    for tag in recipient_filter.tags:
        if not tag.strip() or len(tag) > 100:
            raise ValidationError(f"{field}.tags: tags are 1 to 100 characters, got {tag!r}", field=field)
    for name, days in (("hasOpenedInLast", recipient_filter.has_opened_in_last),
                       ("hasClickedInLast", recipient_filter.has_clicked_in_last)):  # fmt: skip
        if days is not None and not 1 <= days <= MAX_DAYS:
            raise ValidationError(f"{field}.{name}: expected 1 to {MAX_DAYS} days, got {days}", field=field)
    after, before = recipient_filter.created_after, recipient_filter.created_before
    for name, moment in (("createdAfter", after), ("createdBefore", before)):
        if moment is not None and moment.tzinfo is None:
            raise ValidationError(
                f"{field}.{name}: give a time zone (e.g. 2026-01-01T00:00:00Z)", field=field
            )
    if after is not None and before is not None and after >= before:
        raise ValidationError(f"{field}: createdAfter must be before createdBefore", field=field)


def check_variants(is_ab_test: bool, variants: list[VariantInput], ab_test: AbTestSettings) -> None:
    if not is_ab_test:
        if variants:
            raise ValidationError("variants: only an A/B test (isABTest) has variants", field="variants")
        return
    if len(variants) < 2:
        raise ValidationError("variants: an A/B test needs at least 2 variants", field="variants")
    names = [variant.name.strip() for variant in variants]
    if any(not name for name in names) or len(set(names)) != len(names):
        raise ValidationError("variants: every variant needs a name of its own", field="variants")
    for variant in variants:
        if not (math.isfinite(variant.percentage) and 0 < variant.percentage <= 100):
            raise ValidationError(
                f"variants: {variant.name!r} percentage must be above 0 and at most 100, got {variant.percentage}",
                field="variants",
            )
        if variant.subject is not None:
            _check_text(variant.subject, "variants.subject", MAX_SUBJECT, required=True)
    total = sum(variant.percentage for variant in variants)
    if abs(total - 100) > _PERCENT_TOLERANCE:
        raise ValidationError(f"variants: percentages must sum to 100, got {total:g}", field="variants")
    if not (math.isfinite(ab_test.test_percentage) and 0 < ab_test.test_percentage <= 100):
        raise ValidationError(
            f"abTest.testPercentage: expected above 0 and at most 100, got {ab_test.test_percentage}",
            field="abTest",
        )
    if not (math.isfinite(ab_test.wait_hours) and 0 <= ab_test.wait_hours <= 24 * 30):
        raise ValidationError(
            f"abTest.waitHours: expected 0 to 720, got {ab_test.wait_hours}", field="abTest"
        )


def check_draft(fields: dict[str, Any]) -> None:
    """`fields`: the campaign's columns after the update (snake_case names, models' types)."""
    _check_text(fields["name"], "name", MAX_NAME, required=True)
    _check_text(fields["subject"], "subject", MAX_SUBJECT, required=False)
    if fields["from_email"]:
        check_address(fields["from_email"], "fromEmail")
    if fields.get("reply_to"):
        check_address(fields["reply_to"], "replyTo")
    check_filter(fields["recipient_filter"], "recipientFilter")
    if fields.get("exclude_filter") is not None:
        check_filter(fields["exclude_filter"], "excludeFilter")
    check_variants(fields["is_ab_test"], fields["variants"], fields["ab_test"])
    scheduled = fields.get("scheduled_at")
    if scheduled is not None and scheduled.tzinfo is None:
        raise ValidationError(
            "scheduledAt: give a time zone (e.g. 2026-12-01T09:00:00Z)", field="scheduledAt"
        )


async def check_sendable(conn: Any, workspace_id: UUID, fields: dict[str, Any]) -> None:
    """What a campaign needs before it is scheduled or sent."""
    check_draft(fields)
    if not fields["from_email"]:
        raise ValidationError("fromEmail: a campaign needs a from-address to send", field="fromEmail")
    variants: list[VariantInput] = fields["variants"]
    if not fields["subject"].strip() and not (variants and all(variant.subject for variant in variants)):
        raise ValidationError("subject: a campaign needs a subject to send", field="subject")
    if not (fields["body_html"].strip() or fields["body_text"].strip()) and not (
        variants and all(variant.body_html for variant in variants)
    ):
        raise ValidationError("bodyHtml: a campaign needs bodyHtml or bodyText to send", field="bodyHtml")
    await check_sender(conn, workspace_id, fields["from_email"])
    if fields.get("account_id") is not None:
        await check_sending_account(conn, workspace_id, fields["account_id"], fields["from_email"])


async def check_sender(conn: Any, workspace_id: UUID, from_email: str) -> None:
    address = check_address(from_email, "fromEmail").lower()
    domain = address.rpartition("@")[2]
    cursor = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM email_accounts WHERE workspace_id = %s AND lower(email) = %s "
        "AND sync_status NOT IN ('reauth_required', 'disabled')) "
        "OR EXISTS (SELECT 1 FROM sending_domains WHERE workspace_id = %s AND domain = %s "
        "AND verified_at IS NOT NULL)",
        (workspace_id, address, workspace_id, domain),
    )
    row = await cursor.fetchone()
    if not row[0]:
        raise ValidationError(
            f"fromEmail: {address} is neither a connected account of this workspace nor in one of its "
            "verified sending domains",
            field="fromEmail",
        )


def check_schedule_time(scheduled_at: datetime | None) -> datetime:
    if scheduled_at is None:
        raise ValidationError("scheduledAt: scheduling needs a time", field="scheduledAt")
    if scheduled_at.tzinfo is None:
        raise ValidationError(
            "scheduledAt: give a time zone (e.g. 2026-12-01T09:00:00Z)", field="scheduledAt"
        )
    if scheduled_at <= datetime.now(UTC):
        raise ValidationError(
            "scheduledAt: must be in the future (use send now instead)", field="scheduledAt"
        )
    return scheduled_at


async def check_account(conn: Any, workspace_id: UUID, account_id: UUID) -> tuple[str, str, str]:
    """The workspace's account `account_id` (email, provider, sync status), or ValidationError."""
    cursor = await conn.execute(
        "SELECT email, provider, sync_status FROM email_accounts WHERE id = %s AND workspace_id = %s",
        (account_id, workspace_id),
    )
    row = await cursor.fetchone()
    if row is None:
        raise ValidationError(f"accountId: no account {account_id} in this workspace", field="accountId")
    return str(row[0]), str(row[1]), str(row[2])


async def check_sending_account(conn: Any, workspace_id: UUID, account_id: UUID, from_email: str) -> None:
    """`accountId` sends through that Gmail account's API: it must be a connected Gmail account of
    the workspace, and the campaign must be from its address (Gmail sends as the account)."""
    email, provider, status = await check_account(conn, workspace_id, account_id)
    if provider != "gmail":
        raise ValidationError(
            f"accountId: {email} is a {provider} account; only a Gmail account sends through its API",
            field="accountId",
        )
    if status in ("reauth_required", "disabled"):
        raise ValidationError(f"accountId: {email} must be connected again ({status})", field="accountId")
    if email.lower() != from_email.lower():
        raise ValidationError(
            f"accountId: Gmail sends as {email}, so fromEmail must be {email}, not {from_email}",
            field="accountId",
        )
