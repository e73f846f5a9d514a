"""Campaign and contact routes. Campaigns follow mail.access (their creator or an admin);
contacts belong to the workspace. Every change is audited; state changes that the current
status forbids answer 409 with the allowed statuses (mail.campaigns.repository)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from fastapi import APIRouter, Request, Response

from mail import contacts
from mail.access import require_read_campaign
from mail.campaigns import ab_round, filters, repository
from mail.errors import ValidationError
from models.campaigns import Campaign, CampaignInput, ContactInput
from models.tenancy import Principal
from serve.api.deps import PrincipalDep, ServicesDep, audited, decode_body, json_response

router = APIRouter(prefix="/v1")

MAX_IMPORT_BYTES = 50 * 1024 * 1024


class ScheduleBody(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    scheduled_at: datetime


class WinnerBody(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    variant_id: UUID


class PauseBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: str = "paused by a user"


def _limit(limit: int, highest: int = 1000) -> int:
    if not 1 <= limit <= highest:
        raise ValidationError(f"limit must be between 1 and {highest}", field="limit")
    return limit


# -- campaigns -------------------------------------------------------------------------------------


@router.post("/campaigns")
async def create_campaign(request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    body = await decode_body(request, CampaignInput)
    if body.name is msgspec.UNSET:
        raise ValidationError("name: a campaign needs a name", field="name")
    async with svc.pool.connection() as conn, conn.transaction():
        campaign = await repository.create_campaign(conn, caller, body)
        await audited(request, conn, caller, "campaign.create", str(campaign.id), status=campaign.status)
    return json_response(campaign, 201)


@router.get("/campaigns")
async def list_campaigns(
    caller: PrincipalDep, svc: ServicesDep, status: str | None = None, limit: int = 100
) -> Response:
    async with svc.pool.connection() as conn:
        return json_response(await repository.list_campaigns(conn, caller, status, _limit(limit)))


@router.get("/campaigns/{campaign_id}")
async def get_campaign(campaign_id: UUID, caller: PrincipalDep, svc: ServicesDep) -> Response:
    async with svc.pool.connection() as conn:
        return json_response(await repository.get_campaign(conn, caller, campaign_id))


@router.get("/campaigns/{campaign_id}/recipients/count")
async def count_recipients(campaign_id: UUID, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """What sending now would reach: matching, excluded, suppressed, eligible."""
    async with svc.pool.connection() as conn:
        campaign = await repository.get_campaign(conn, caller, campaign_id)
        counted = await filters.count_recipients(
            conn, campaign.workspace_id, campaign.recipient_filter, campaign.exclude_filter
        )
    return json_response(counted)


@router.patch("/campaigns/{campaign_id}")
async def update_campaign(
    campaign_id: UUID, request: Request, caller: PrincipalDep, svc: ServicesDep
) -> Response:
    body = await decode_body(request, CampaignInput)
    async with svc.pool.connection() as conn, conn.transaction():
        campaign = await repository.update_campaign(conn, caller, campaign_id, body)
        changed = sorted(name for name in body.__struct_fields__ if getattr(body, name) is not msgspec.UNSET)
        await audited(request, conn, caller, "campaign.update", str(campaign_id), fields=changed)
    return json_response(campaign)


async def _transition(
    request: Request,
    caller: Principal,
    svc: Any,
    campaign_id: UUID,
    action: str,
    change: Any,
    **metadata: Any,
) -> Response:
    async with svc.pool.connection() as conn, conn.transaction():
        await require_read_campaign(conn, caller, campaign_id)
        campaign: Campaign = await change(conn)
        await audited(request, conn, caller, action, str(campaign_id), status=campaign.status, **metadata)
    return json_response(campaign)


@router.post("/campaigns/{campaign_id}/schedule")
async def schedule_campaign(
    campaign_id: UUID, request: Request, caller: PrincipalDep, svc: ServicesDep
) -> Response:
    body = await decode_body(request, ScheduleBody)
    return await _transition(
        request, caller, svc, campaign_id, "campaign.schedule",
        lambda conn: repository.schedule(conn, caller, campaign_id, body.scheduled_at),
        scheduledAt=body.scheduled_at.isoformat(),
    )  # fmt: skip


@router.post("/campaigns/{campaign_id}/pause")
async def pause_campaign(
    campaign_id: UUID, request: Request, caller: PrincipalDep, svc: ServicesDep
) -> Response:
    body = await decode_body(request, PauseBody)
    return await _transition(
        request, caller, svc, campaign_id, "campaign.pause",
        lambda conn: repository.pause(conn, caller, campaign_id, body.reason[:500]), reason=body.reason[:500],
    )  # fmt: skip


@router.post("/campaigns/{campaign_id}/winner")
async def choose_winner(
    campaign_id: UUID, request: Request, caller: PrincipalDep, svc: ServicesDep
) -> Response:
    """A person picks the A/B test's winner: the held rest is sent that variant (mail.campaigns.ab_round)."""
    body = await decode_body(request, WinnerBody)
    return await _transition(
        request, caller, svc, campaign_id, "campaign.choose_winner",
        lambda conn: ab_round.choose_winner(conn, svc.settings.campaigns, caller, campaign_id, body.variant_id),
        variantId=str(body.variant_id),
    )  # fmt: skip


def _simple_transition(verb: str, change: Callable[[Any, Principal, UUID], Awaitable[Campaign]]) -> None:
    """POST /campaigns/{id}/<verb>: a status change without a body, audited as campaign.<verb>."""

    async def endpoint(
        campaign_id: UUID, request: Request, caller: PrincipalDep, svc: ServicesDep
    ) -> Response:
        return await _transition(
            request,
            caller,
            svc,
            campaign_id,
            f"campaign.{verb}",
            lambda conn: change(conn, caller, campaign_id),
        )

    endpoint.__name__ = f"{verb}_campaign"
    # Postponed annotations are strings FastAPI resolves in module scope; a nested function's
    # would stay unresolved, so give it the objects.
    endpoint.__annotations__ = {
        "campaign_id": UUID, "request": Request, "caller": PrincipalDep, "svc": ServicesDep, "return": Response,
    }  # fmt: skip
    router.add_api_route(f"/campaigns/{{campaign_id}}/{verb}", endpoint, methods=["POST"])


_simple_transition("send", repository.send_now)
_simple_transition("resume", repository.resume)
_simple_transition("cancel", repository.cancel)


# -- contacts --------------------------------------------------------------------------------------


@router.post("/contacts")
async def upsert_contact(request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    body = await decode_body(request, ContactInput)
    async with svc.pool.connection() as conn, conn.transaction():
        contact_id, created = await contacts.upsert_contact(conn, caller.workspace_id, body)
        await audited(request, conn, caller, "contact.upsert", str(contact_id), created=created)
        contact = await contacts.get_contact(conn, caller.workspace_id, contact_id)
    return json_response(contact, 201 if created else 200)


@router.get("/contacts")
async def list_contacts(
    caller: PrincipalDep, svc: ServicesDep, tag: str | None = None, limit: int = 100, offset: int = 0
) -> Response:
    if offset < 0:
        raise ValidationError("offset must not be negative", field="offset")
    async with svc.pool.connection() as conn:
        found = await contacts.list_contacts(
            conn, caller.workspace_id, tag=tag, limit=_limit(limit), offset=offset
        )
    return json_response(found)


@router.get("/contacts/{contact_id}")
async def get_contact(contact_id: UUID, caller: PrincipalDep, svc: ServicesDep) -> Response:
    async with svc.pool.connection() as conn:
        return json_response(await contacts.get_contact(conn, caller.workspace_id, contact_id))


@router.post("/contacts/import")
async def import_contacts(request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """A CSV body (text/csv, UTF-8): every good row is imported, every refused one reported."""
    raw = await request.body()
    if len(raw) > MAX_IMPORT_BYTES:
        raise ValidationError(f"the CSV is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB; split it")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValidationError(f"the CSV is not UTF-8 (byte {error.start})") from None
    async with svc.pool.connection() as conn, conn.transaction():
        report = await contacts.import_csv(conn, caller.workspace_id, text)
        await audited(
            request, conn, caller, "contact.import", str(caller.workspace_id),
            created=report.created, updated=report.updated, rejected=len(report.rejected),
        )  # fmt: skip
    return json_response(report)
