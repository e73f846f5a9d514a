"""Routes over synced mail: emails, threads, full-text search."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response

from mail import mailbox
from mail.audit import AuditEntry, record
from serve.api.deps import PrincipalDep, ServicesDep, json_response, request_context

router = APIRouter(prefix="/v1")

Folder = Literal["inbox", "sent", "drafts", "spam", "trash", "archive", "other"]
Priority = Literal["high", "medium", "low"]


def _email_filters(
    account_id: UUID | None = None,
    folder: Folder | None = None,
    label: str | None = None,
    is_read: bool | None = None,
    from_email: str | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
    priority: Priority | None = None,
    category: str | None = None,
) -> mailbox.EmailFilter:
    """The filters every email listing takes, from the query string."""
    return mailbox.EmailFilter(
        account_id=account_id,
        folder=folder,
        label=label,
        is_read=is_read,
        from_email=from_email,
        after=after,
        before=before,
        priority=priority,
        category=category,
    )


FiltersDep = Annotated[mailbox.EmailFilter, Depends(_email_filters)]


@router.get("/emails")
async def list_emails(
    caller: PrincipalDep, svc: ServicesDep, filters: FiltersDep, cursor: str | None = None, limit: int = 50
) -> Response:
    async with svc.pool.connection() as conn:
        return json_response(await mailbox.list_emails(conn, caller, filters, cursor=cursor, limit=limit))


@router.get("/inbox/priority")
async def priority_inbox(
    caller: PrincipalDep,
    svc: ServicesDep,
    priority: Priority = "high",
    account_id: UUID | None = None,
    is_read: bool | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Response:
    """The inbox's mail the email AI rated `priority` (high by default), newest first."""
    filters = mailbox.EmailFilter(account_id=account_id, folder="inbox", is_read=is_read, priority=priority)
    async with svc.pool.connection() as conn:
        return json_response(await mailbox.list_emails(conn, caller, filters, cursor=cursor, limit=limit))


@router.get("/search")
async def search(
    q: str,
    caller: PrincipalDep,
    svc: ServicesDep,
    filters: FiltersDep,
    cursor: str | None = None,
    limit: int = 50,
) -> Response:
    async with svc.pool.connection() as conn:
        return json_response(
            await mailbox.search_emails(conn, caller, q, filters, cursor=cursor, limit=limit)
        )


@router.get("/emails/{email_id}")
async def read_email(email_id: int, request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    async with svc.pool.connection() as conn, conn.transaction():
        detail = await mailbox.get_email(conn, svc.keyring, caller, email_id)
        await record(
            conn,
            AuditEntry(action="email.read", resource_type="email", resource_id=str(email_id)),
            principal=caller,
            request=request_context(request),
        )
    return json_response(detail)


@router.get("/threads")
async def list_threads(
    caller: PrincipalDep,
    svc: ServicesDep,
    account_id: UUID | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Response:
    async with svc.pool.connection() as conn:
        return json_response(
            await mailbox.list_threads(conn, caller, account_id=account_id, cursor=cursor, limit=limit)
        )


@router.get("/threads/{thread_id}")
async def get_thread(thread_id: UUID, caller: PrincipalDep, svc: ServicesDep) -> Response:
    async with svc.pool.connection() as conn:
        return json_response(await mailbox.get_thread(conn, caller, thread_id))
