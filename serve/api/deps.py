"""Shared pieces of the API routes: services and caller dependencies, body decoding, responses,
auditing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
from fastapi import Depends, Request, Response

from mail import auth
from mail.audit import AuditEntry, record
from mail.errors import ValidationError
from mail.services import Services
from models.tenancy import Principal, RequestContext
from serve.forwarded import client_ip

T = TypeVar("T")
ServicesFactory = Callable[[], Awaitable[Services]]

_encoder = msgspec.json.Encoder()


class ServicesHolder:
    """Opens the process's services on first use (a replica's constructor cannot await)."""

    def __init__(self, factory: ServicesFactory) -> None:
        self._factory = factory
        self._services: Services | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Services:
        if self._services is None:
            async with self._lock:
                if self._services is None:
                    self._services = await self._factory()
        return self._services

    async def close(self) -> None:
        if self._services is not None:
            await self._services.close()
            self._services = None


def json_response(value: Any, status_code: int = 200) -> Response:
    return Response(_encoder.encode(value), status_code=status_code, media_type="application/json")


async def decode_body(request: Request, body_type: type[T]) -> T:
    raw = await request.body()
    try:
        return msgspec.json.decode(raw or b"{}", type=body_type)
    except msgspec.ValidationError as error:
        raise ValidationError(f"request body: {error}") from None
    except msgspec.DecodeError as error:
        raise ValidationError(f"request body is not valid JSON: {error}") from None


def request_context(request: Request) -> RequestContext:
    ip = client_ip(request.headers.get("x-forwarded-for"), request.client.host if request.client else None)
    return RequestContext(ip=ip, user_agent=request.headers.get("user-agent"))


async def audited(
    request: Request, conn: Any, caller: Principal, action: str, resource_id: str, **metadata: Any
) -> None:
    """Record `action` (`<resource type>.<verb>`) on `resource_id` in the audit log, in the
    caller's transaction."""
    await record(
        conn,
        AuditEntry(action=action, resource_type=action.split(".", 1)[0], resource_id=resource_id,
                   metadata=metadata),
        principal=caller,
        request=request_context(request),
    )  # fmt: skip


def _presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("x-api-key")


async def _services(request: Request) -> Services:
    holder: ServicesHolder = request.app.state.services
    return await holder.get()


ServicesDep = Annotated[Services, Depends(_services)]


async def _principal(request: Request, svc: ServicesDep) -> Principal:
    async with svc.pool.connection() as conn:
        return await auth.authenticate(conn, _presented_key(request))


# The auth dependency: every /v1 route but health takes the caller from its API key.
PrincipalDep = Annotated[Principal, Depends(_principal)]
