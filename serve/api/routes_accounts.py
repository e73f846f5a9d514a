"""Routes for connected mailboxes: OAuth connection, sync control, status and diagnostics."""

from __future__ import annotations

import logging
from uuid import UUID

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from mail import accounts
from mail.access import require_send_from_account
from mail.audit import AuditEntry, record
from mail.gmail.connect import begin_oauth, connect_with_code, principal_for_state
from mail.services import Services
from mail.sync import state as sync_state
from mail.sync.diagnostics import diagnose
from models.accounts import ConnectGmailAccount, EmailAccount
from models.tenancy import Principal
from serve.api.deps import PrincipalDep, ServicesDep, decode_body, json_response, request_context

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/accounts")


async def _start_sync(services: Services, account_id: UUID) -> None:
    """Ask the supervisor to start the account's actor (best effort: it also finds it on its own)."""
    import ray

    from actors.sync_supervisor import get_supervisor

    if not ray.is_initialized():  # served outside Ray (tests): the caller drives the sync
        return
    try:
        supervisor = get_supervisor(services.settings.ray.namespace)
        await supervisor.ensure_running.remote()
        await supervisor.start_account.remote(str(account_id))
    except Exception:  # Ray unavailable (tests without Ray): the supervisor's next round starts it
        log.warning("could not reach the sync supervisor for account %s", account_id, exc_info=True)


async def _connected(services: Services, caller: Principal, account: EmailAccount, request: Request) -> None:
    async with services.pool.connection() as conn, conn.transaction():
        await record(
            conn,
            AuditEntry(action="account.connect", resource_type="email_account", resource_id=str(account.id),
                       metadata={"email": account.email, "provider": account.provider}),
            principal=caller,
            request=request_context(request),
        )  # fmt: skip
    await _start_sync(services, account.id)


@router.get("/oauth/url")
async def oauth_url(caller: PrincipalDep, svc: ServicesDep, login_hint: str | None = None) -> Response:
    url, state = await begin_oauth(svc, caller, login_hint)
    return json_response({"url": url, "state": state})


@router.get("/oauth/callback")
async def oauth_callback(request: Request, code: str, state: str, svc: ServicesDep) -> Response:
    """Where Google sends the browser back: no API key, the one-time state names the caller."""
    caller = await principal_for_state(svc, state)
    account = await connect_with_code(svc, caller, code)
    await _connected(svc, caller, account, request)
    return HTMLResponse(f"<p>Connected {account.email}. Sync has started; you can close this window.</p>")


@router.post("/gmail/connect")
async def connect_gmail(request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """The design document's ConnectGmailAccount: an OAuth code in, the account out."""
    body = await decode_body(request, ConnectGmailAccount)
    account = await connect_with_code(svc, caller, body.code)
    await _connected(svc, caller, account, request)
    return json_response(account, 201)


@router.get("")
async def list_accounts(caller: PrincipalDep, svc: ServicesDep) -> Response:
    async with svc.pool.connection() as conn:
        return json_response(await accounts.list_accounts(conn, caller))


async def _set_sync(
    request: Request, caller: Principal, svc: Services, account_id: UUID, enabled: bool
) -> Response:
    async with svc.pool.connection() as conn, conn.transaction():
        await require_send_from_account(conn, caller, account_id)  # owner or admin, as for sending
        await sync_state.set_enabled(conn, account_id, enabled)
        if enabled:
            await conn.execute(
                "UPDATE sync_state SET phase = CASE WHEN history_cursor IS NULL THEN 'pending' ELSE 'incremental' END "
                "WHERE account_id = %s AND phase = 'paused'",
                (account_id,),
            )
        else:
            await sync_state.set_phase(conn, account_id, "paused")
        await record(
            conn,
            AuditEntry(action="account.sync_start" if enabled else "account.sync_pause",
                       resource_type="email_account", resource_id=str(account_id)),
            principal=caller,
            request=request_context(request),
        )  # fmt: skip
        account = await accounts.get_account(conn, caller.workspace_id, account_id)
    if enabled:
        await _start_sync(svc, account_id)
    return json_response(account)


@router.post("/{account_id}/sync/start")
async def start_sync(account_id: UUID, request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    return await _set_sync(request, caller, svc, account_id, True)


@router.post("/{account_id}/sync/pause")
async def pause_sync(account_id: UUID, request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    return await _set_sync(request, caller, svc, account_id, False)


@router.get("/{account_id}/sync")
async def sync_status(account_id: UUID, caller: PrincipalDep, svc: ServicesDep) -> Response:
    async with svc.pool.connection() as conn:
        await require_send_from_account(conn, caller, account_id)
        return json_response(await accounts.get_sync_state(conn, account_id))


@router.get("/{account_id}/diagnostics")
async def diagnostics(account_id: UUID, caller: PrincipalDep, svc: ServicesDep) -> Response:
    async with svc.pool.connection() as conn:
        await require_send_from_account(conn, caller, account_id)
    return json_response(await diagnose(svc, account_id))
