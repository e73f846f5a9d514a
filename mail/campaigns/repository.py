"""Campaigns in Postgres: create, update, read, and the status machine.

    draft ──schedule──> scheduled ──(due: the scheduler)──> sending ──(outbox empty)──> sent
      │  └────────────send now─────────────────────────────^  │ ^
      │                                                   pause resume
      │                                                       v │
      └──────── cancel (from draft, scheduled, sending, paused) ─> cancelled

Only draft and scheduled campaigns change content. Starting to send writes the outbox: one
`campaign_recipients` row per eligible contact (the unique (campaign, address) key makes a second
start add nobody twice). In an A/B test the test cohort gets its variants at once and the rest
waits (state `held`) for the decision. With `sendAtLocalTime` each recipient's row is
due at the scheduled wall-clock time in the contact's time zone (UTC when unknown); a time that
has already passed there is due at once.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg import sql
from psycopg.types.json import Jsonb

from mail.access import require_read_campaign
from mail.campaigns import filters, validate
from mail.errors import Conflict, NotFound
from models.campaigns import (
    AbTestSettings,
    Campaign,
    CampaignInput,
    RecipientFilter,
    Variant,
    VariantInput,
)
from models.tenancy import Principal

Conn = Any

_FIELDS = (
    "name", "subject", "preview_text", "from_name", "from_email", "reply_to", "body_html", "body_text",
    "recipient_filter", "exclude_filter", "track_opens", "track_clicks", "enable_unsubscribe",
    "send_at_local_time", "scheduled_at", "is_ab_test", "ab_test", "account_id",
)  # fmt: skip
_JSON_FIELDS = {"recipient_filter", "exclude_filter", "ab_test"}
_COLUMNS = (
    "id, workspace_id, created_by, account_id, name, subject, preview_text, from_name, from_email, reply_to, "
    "body_html, body_text, recipient_filter, exclude_filter, recipient_count, track_opens, track_clicks, "
    "enable_unsubscribe, send_at_local_time, scheduled_at, sending_started_at, sending_completed_at, "
    "is_ab_test, ab_test, winning_variant_id, ab_decision, status, pause_reason, sent_count, created_at, updated_at"
)
_VARIANT_COLUMNS = (
    "id, name, percentage, subject, from_name, preview_text, body_html, body_text, status, sent_count"
)
_EDITABLE = ("draft", "scheduled")
_DEFAULTS: dict[str, Any] = {
    "name": "", "subject": "", "preview_text": None, "from_name": "", "from_email": "", "reply_to": None,
    "body_html": "", "body_text": "", "recipient_filter": RecipientFilter(), "exclude_filter": None,
    "track_opens": True, "track_clicks": True, "enable_unsubscribe": True, "send_at_local_time": False,
    "scheduled_at": None, "is_ab_test": False, "ab_test": AbTestSettings(), "account_id": None,
}  # fmt: skip


def _as_json(value: Any) -> Any:
    return None if value is None else Jsonb(msgspec.to_builtins(value))


def _variant_inputs(variants: list[Variant]) -> list[VariantInput]:
    return [
        VariantInput(name=v.name, percentage=v.percentage, subject=v.subject, from_name=v.from_name,
                     preview_text=v.preview_text, body_html=v.body_html, body_text=v.body_text)
        for v in variants
    ]  # fmt: skip


def _applied(current: dict[str, Any], body: CampaignInput) -> dict[str, Any]:
    fields = dict(current)
    for name in (*_FIELDS, "variants"):
        value = getattr(body, name)
        if value is not msgspec.UNSET:
            fields[name] = value
    return fields


async def _read(conn: Conn, campaign_id: UUID) -> Campaign:
    cursor = await conn.execute(f"SELECT {_COLUMNS} FROM campaigns WHERE id = %s", (campaign_id,))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no campaign {campaign_id}")
    cursor = await conn.execute(
        f"SELECT {_VARIANT_COLUMNS} FROM campaign_variants WHERE campaign_id = %s ORDER BY created_at, name",
        (campaign_id,),
    )
    variants = [
        Variant(id=v[0], name=v[1], percentage=float(v[2]), subject=v[3], from_name=v[4], preview_text=v[5],
                body_html=v[6], body_text=v[7], status=v[8], sent_count=v[9])
        for v in await cursor.fetchall()
    ]  # fmt: skip
    names = [column.strip() for column in _COLUMNS.split(",")]
    values = dict(zip(names, row, strict=True))
    values["winning_variant"] = values.pop("winning_variant_id")
    values["recipient_filter"] = msgspec.convert(values["recipient_filter"], RecipientFilter)
    if values["exclude_filter"] is not None:
        values["exclude_filter"] = msgspec.convert(values["exclude_filter"], RecipientFilter)
    values["ab_test"] = msgspec.convert(values["ab_test"] or {}, AbTestSettings)
    return Campaign(**values, variants=variants)


def _editable_fields(campaign: Campaign) -> dict[str, Any]:
    fields = {name: getattr(campaign, name) for name in _FIELDS}
    fields["variants"] = _variant_inputs(campaign.variants)
    return fields


async def load_campaign(conn: Conn, campaign_id: UUID) -> Campaign:
    """For the system's own actors (the scheduler): no caller, no policy."""
    return await _read(conn, campaign_id)


async def get_campaign(conn: Conn, principal: Principal, campaign_id: UUID) -> Campaign:
    """Reading and changing a campaign follow one policy (mail.access): its creator or an admin."""
    await require_read_campaign(conn, principal, campaign_id)
    return await _read(conn, campaign_id)


async def _write_variants(
    conn: Conn, workspace_id: UUID, campaign_id: UUID, variants: list[VariantInput]
) -> None:
    await conn.execute("DELETE FROM campaign_variants WHERE campaign_id = %s", (campaign_id,))
    for variant in variants:
        await conn.execute(
            "INSERT INTO campaign_variants (campaign_id, workspace_id, name, percentage, subject, from_name, "
            "preview_text, body_html, body_text) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (campaign_id, workspace_id, variant.name.strip(), variant.percentage, variant.subject,
             variant.from_name, variant.preview_text, variant.body_html, variant.body_text),
        )  # fmt: skip


async def _save(conn: Conn, campaign_id: UUID, fields: dict[str, Any]) -> None:
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in _FIELDS)
    values = [_as_json(fields[name]) if name in _JSON_FIELDS else fields[name] for name in _FIELDS]
    await conn.execute(
        sql.SQL("UPDATE campaigns SET {}, updated_at = now() WHERE id = %s").format(assignments),
        [*values, campaign_id],
    )


async def _check_draft(conn: Conn, workspace_id: UUID, fields: dict[str, Any]) -> None:
    """validate.check_draft, and an accountId must be one of the workspace's accounts."""
    validate.check_draft(fields)
    if fields["account_id"] is not None:
        await validate.check_account(conn, workspace_id, fields["account_id"])


async def create_campaign(conn: Conn, principal: Principal, body: CampaignInput) -> Campaign:
    fields = _applied({**_DEFAULTS, "variants": []}, body)
    await _check_draft(conn, principal.workspace_id, fields)
    cursor = await conn.execute(
        "INSERT INTO campaigns (workspace_id, created_by, name) VALUES (%s, %s, %s) RETURNING id",
        (principal.workspace_id, principal.user_id, fields["name"]),
    )
    campaign_id: UUID = (await cursor.fetchone())[0]
    await _save(conn, campaign_id, fields)
    await _write_variants(conn, principal.workspace_id, campaign_id, fields["variants"])
    await _refresh_count(conn, principal.workspace_id, campaign_id, fields)
    if fields["scheduled_at"] is not None:
        await _schedule(conn, principal.workspace_id, campaign_id, fields)
    return await _read(conn, campaign_id)


async def locked(conn: Conn, principal: Principal, campaign_id: UUID) -> Campaign:
    """The campaign, if `principal` may change it, with its row locked until the transaction ends."""
    await require_read_campaign(conn, principal, campaign_id)
    await conn.execute("SELECT 1 FROM campaigns WHERE id = %s FOR UPDATE", (campaign_id,))
    return await _read(conn, campaign_id)


def require_status(campaign: Campaign, allowed: tuple[str, ...], action: str) -> None:
    """Conflict, naming the statuses that allow `action`, unless the campaign is in one."""
    if campaign.status not in allowed:
        raise Conflict(
            f"campaign {campaign.id} is {campaign.status}; only a {' or '.join(allowed)} campaign can be {action}"
        )


async def update_campaign(
    conn: Conn, principal: Principal, campaign_id: UUID, body: CampaignInput
) -> Campaign:
    campaign = await locked(conn, principal, campaign_id)
    require_status(campaign, _EDITABLE, "changed")
    fields = _applied(_editable_fields(campaign), body)
    await _check_draft(conn, principal.workspace_id, fields)
    await _save(conn, campaign_id, fields)
    if body.variants is not msgspec.UNSET:
        await _write_variants(conn, principal.workspace_id, campaign_id, fields["variants"])
    await _refresh_count(conn, principal.workspace_id, campaign_id, fields)
    # A campaign with a time to send is scheduled (and must be sendable); without one, a draft.
    if fields["scheduled_at"] is not None:
        await _schedule(conn, principal.workspace_id, campaign_id, fields)
    elif campaign.status != "draft":
        await _set_status(conn, campaign_id, "draft")
    return await _read(conn, campaign_id)


async def _refresh_count(conn: Conn, workspace_id: UUID, campaign_id: UUID, fields: dict[str, Any]) -> None:
    counted = await filters.count_recipients(
        conn, workspace_id, fields["recipient_filter"], fields["exclude_filter"]
    )
    await conn.execute(
        "UPDATE campaigns SET recipient_count = %s WHERE id = %s", (counted.eligible, campaign_id)
    )


async def _set_status(conn: Conn, campaign_id: UUID, status: str, **extra: Any) -> None:
    assignments: list[sql.Composable] = [sql.SQL("status = %s"), sql.SQL("updated_at = now()")]
    values: list[Any] = [status]
    for name, value in extra.items():
        assignments.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
        values.append(value)
    await conn.execute(
        sql.SQL("UPDATE campaigns SET {} WHERE id = %s").format(sql.SQL(", ").join(assignments)),
        [*values, campaign_id],
    )


async def _schedule(conn: Conn, workspace_id: UUID, campaign_id: UUID, fields: dict[str, Any]) -> None:
    validate.check_schedule_time(fields["scheduled_at"])
    await validate.check_sendable(conn, workspace_id, fields)
    await _set_status(conn, campaign_id, "scheduled")


async def schedule(conn: Conn, principal: Principal, campaign_id: UUID, at: datetime) -> Campaign:
    campaign = await locked(conn, principal, campaign_id)
    require_status(campaign, _EDITABLE, "scheduled")
    fields = {**_editable_fields(campaign), "scheduled_at": at}
    await _save(conn, campaign_id, fields)
    await _schedule(conn, principal.workspace_id, campaign_id, fields)
    return await _read(conn, campaign_id)


async def send_now(conn: Conn, principal: Principal, campaign_id: UUID) -> Campaign:
    campaign = await locked(conn, principal, campaign_id)
    require_status(campaign, _EDITABLE, "sent now")
    await start_sending(conn, campaign)
    return await _read(conn, campaign_id)


async def start_sending(conn: Conn, campaign: Campaign) -> int:
    """Write the outbox and mark the campaign sending (the caller holds its row lock). Returns
    the recipients queued."""
    fields = _editable_fields(campaign)
    await validate.check_sendable(conn, campaign.workspace_id, fields)
    queued = await _materialize(conn, campaign)
    await _set_status(
        conn,
        campaign.id,
        "sending",
        sending_started_at=datetime.now(UTC),
        recipient_count=queued,
        pause_reason=None,
    )
    return queued


async def _materialize(conn: Conn, campaign: Campaign) -> int:
    where, where_params = filters.eligible(
        campaign.workspace_id, campaign.recipient_filter, campaign.exclude_filter
    )
    due, due_params = _due(campaign)
    variant: sql.Composable = sql.SQL("NULL::uuid")
    cohort: sql.Composable = sql.SQL("'all'")
    variant_params: list[Any] = []
    cohort_params: list[Any] = []
    state: sql.Composable = sql.SQL("'queued'")
    state_params: list[Any] = []
    if campaign.is_ab_test and campaign.variants:
        cursor = await conn.execute(sql.SQL("SELECT count(*) FROM contacts c WHERE ") + where, where_params)
        total: int = (await cursor.fetchone())[0]
        test_size = math.ceil(total * campaign.ab_test.test_percentage / 100)
        cumulative = 0.0
        for item in campaign.variants:  # consecutive bands of the test cohort, by percentage
            cumulative += item.percentage
            variant_params += [round(test_size * min(cumulative, 100) / 100), item.id]
        variant = sql.SQL("CASE {} ELSE NULL END").format(
            sql.SQL(" ").join(sql.SQL("WHEN n <= %s THEN %s::uuid") for _ in campaign.variants)
        )
        cohort = sql.SQL("CASE WHEN n <= %s THEN 'test' ELSE 'rest' END")
        cohort_params = [test_size]
        state = sql.SQL("CASE WHEN n <= %s THEN 'queued' ELSE 'held' END")
        state_params = [test_size]
    query = sql.SQL(
        "WITH picked AS (SELECT c.id, lower(c.email) AS email, c.time_zone, "
        "row_number() OVER (ORDER BY md5(%s || lower(c.email))) AS n FROM contacts c WHERE {where}) "
        "INSERT INTO campaign_recipients (campaign_id, workspace_id, contact_id, email, variant_id, cohort, state, "
        "send_after) SELECT %s, %s, id, email, {variant}, {cohort}, {state}, {due} FROM picked "
        "ON CONFLICT (campaign_id, lower(email)) DO NOTHING"
    ).format(where=where, variant=variant, cohort=cohort, state=state, due=due)
    params = [str(campaign.id), *where_params, campaign.id, campaign.workspace_id,
              *variant_params, *cohort_params, *state_params, *due_params]  # fmt: skip
    cursor = await conn.execute(query, params)
    return int(cursor.rowcount)


def _due(campaign: Campaign) -> tuple[sql.Composable, list[Any]]:
    """When a recipient's row is due: now, or the scheduled wall-clock time (read in UTC) in the
    recipient's time zone with sendAtLocalTime (unknown zones: UTC)."""
    if not (campaign.send_at_local_time and campaign.scheduled_at):
        return sql.SQL("now()"), []
    return sql.SQL(
        "((%s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE CASE WHEN time_zone IN "
        "(SELECT name FROM pg_timezone_names) THEN time_zone ELSE 'UTC' END)"
    ), [campaign.scheduled_at]


async def pause(
    conn: Conn, principal: Principal, campaign_id: UUID, reason: str = "paused by a user"
) -> Campaign:
    campaign = await locked(conn, principal, campaign_id)
    require_status(campaign, ("sending",), "paused")
    await _set_status(conn, campaign_id, "paused", pause_reason=reason)
    return await _read(conn, campaign_id)


async def resume(conn: Conn, principal: Principal, campaign_id: UUID) -> Campaign:
    campaign = await locked(conn, principal, campaign_id)
    require_status(campaign, ("paused",), "resumed")
    await _set_status(conn, campaign_id, "sending", pause_reason=None)
    return await _read(conn, campaign_id)


async def cancel(conn: Conn, principal: Principal, campaign_id: UUID) -> Campaign:
    campaign = await locked(conn, principal, campaign_id)
    require_status(campaign, ("draft", "scheduled", "sending", "paused"), "cancelled")
    await conn.execute(
        "UPDATE campaign_recipients SET state = 'cancelled', updated_at = now() "
        "WHERE campaign_id = %s AND state IN ('held', 'queued')",
        (campaign_id,),
    )
    await _set_status(conn, campaign_id, "cancelled")
    return await _read(conn, campaign_id)


async def list_campaigns(conn: Conn, principal: Principal, status: str | None, limit: int) -> list[Campaign]:
    """The caller's campaigns (an admin: the workspace's), newest first."""
    cursor = await conn.execute(
        "SELECT id FROM campaigns WHERE workspace_id = %s AND (%s OR created_by = %s) "
        "AND (%s::text IS NULL OR status = %s) ORDER BY created_at DESC LIMIT %s",
        (principal.workspace_id, principal.is_admin, principal.user_id, status, status, limit),
    )
    return [await _read(conn, row[0]) for row in await cursor.fetchall()]
