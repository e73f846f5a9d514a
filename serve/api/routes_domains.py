"""Sending-domain routes (mail.sending.domains): workspace owners and admins add and verify a
domain; every member may list them. Adding and verifying are audited."""

from __future__ import annotations

import msgspec
from fastapi import APIRouter, Request, Response

from mail.dkim import KeyType
from mail.errors import Forbidden
from mail.sending import domains
from models.tenancy import Principal
from serve.api.deps import PrincipalDep, ServicesDep, audited, decode_body, json_response

router = APIRouter(prefix="/v1")


class DomainBody(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    domain: str
    selector: str = domains.DEFAULT_SELECTOR
    key_type: KeyType = "rsa"


def _require_admin(caller: Principal) -> None:
    if not caller.is_admin:
        raise Forbidden("only workspace owners and admins may add or verify sending domains")


@router.post("/domains")
async def add_domain(request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    _require_admin(caller)
    body = await decode_body(request, DomainBody)
    async with svc.pool.connection() as conn, conn.transaction():
        added = await domains.add_domain(
            conn, svc.settings, svc.keyring, caller.workspace_id, body.domain,
            selector=body.selector, key_type=body.key_type,
        )  # fmt: skip
        await audited(request, conn, caller, "domain.add", added.domain)
    return json_response(added, 201)


@router.post("/domains/{domain}/verify")
async def verify_domain(domain: str, request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    _require_admin(caller)
    lookup = domains.dns_txt_lookup(svc.settings.sending.dns_nameserver or None)
    async with svc.pool.connection() as conn, conn.transaction():
        verified = await domains.verify_domain(
            conn, svc.settings, svc.keyring, caller.workspace_id, domain, lookup
        )
        await audited(request, conn, caller, "domain.verify", verified.domain)
    return json_response(verified)


@router.get("/domains")
async def list_domains(caller: PrincipalDep, svc: ServicesDep) -> Response:
    async with svc.pool.connection() as conn:
        return json_response(await domains.list_domains(conn, caller.workspace_id))
