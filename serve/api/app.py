"""The REST API: a FastAPI app served by the `Api` deployment (and testable without Ray).

Bodies are msgspec Structs (models.api), decoded once with unknown fields refused. Every
state-changing call writes its audit row in the transaction of its change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
from fastapi import Depends, FastAPI, Request, Response
from psycopg.rows import dict_row

from mail import auth
from mail.access import require_read_email
from mail.audit import AuditEntry, record
from mail.errors import Forbidden, ValidationError
from mail.services import Services
from models.api import AuditRecord, CreateApiKey, CreatedApiKey, EmailSummary, Health, Me
from models.tenancy import Principal, RequestContext
from serve.errors import install_error_handlers

log = logging.getLogger(__name__)

T = TypeVar("T")
ServicesFactory = Callable[[], Awaitable[Services]]

_encoder = msgspec.json.Encoder()


class _ServicesHolder:
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
    # Behind HAProxy the client's address is the last X-Forwarded-For hop the proxy added.
    forwarded = request.headers.get("x-forwarded-for")
    ip = (
        forwarded.rsplit(",", 1)[-1].strip()
        if forwarded
        else (request.client.host if request.client else None)
    )
    return RequestContext(ip=ip, user_agent=request.headers.get("user-agent"))


def _presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("x-api-key")


async def _services(request: Request) -> Services:
    holder: _ServicesHolder = request.app.state.services
    return await holder.get()


ServicesDep = Annotated[Services, Depends(_services)]


async def _principal(request: Request, svc: ServicesDep) -> Principal:
    async with svc.pool.connection() as conn:
        return await auth.authenticate(conn, _presented_key(request))


# The auth dependency: every /v1 route but health takes the caller from its API key.
PrincipalDep = Annotated[Principal, Depends(_principal)]


def create_app(services_factory: ServicesFactory) -> FastAPI:
    app = FastAPI(title="mailray", version="0.1.0", docs_url="/docs", redoc_url=None)
    app.state.services = _ServicesHolder(services_factory)
    install_error_handlers(app)

    @app.get("/healthz")
    async def healthz(svc: ServicesDep) -> Response:
        checks: dict[str, str] = {}
        try:
            async with svc.pool.connection() as conn:
                await conn.execute("SELECT 1")
            checks["postgres"] = "ok"
        except Exception as error:  # a health check reports every failure, whatever its type
            checks["postgres"] = f"error: {error}"
        try:
            await svc.redis.ping()
            checks["redis"] = "ok"
        except Exception as error:
            checks["redis"] = f"error: {error}"
        healthy = all(value == "ok" for value in checks.values())
        return json_response(
            Health(status="ok" if healthy else "degraded", checks=checks), 200 if healthy else 503
        )

    @app.get("/v1/me")
    async def me(caller: PrincipalDep, svc: ServicesDep) -> Response:
        async with svc.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT w.name, w.slug, u.email FROM users u JOIN workspaces w ON w.id = u.workspace_id "
                "WHERE u.id = %s",
                (caller.user_id,),
            )
            row = await cursor.fetchone()
        assert row is not None
        return json_response(
            Me(
                workspace_id=caller.workspace_id,
                workspace_name=row[0],
                workspace_slug=row[1],
                user_id=caller.user_id,
                email=row[2],
                role=caller.role,
                api_key_id=caller.api_key_id,
            )
        )

    @app.get("/v1/api-keys")
    async def list_keys(caller: PrincipalDep, svc: ServicesDep) -> Response:
        async with svc.pool.connection() as conn:
            return json_response(await auth.list_api_keys(conn, caller))

    @app.post("/v1/api-keys")
    async def create_key(request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
        body = await decode_body(request, CreateApiKey)
        async with svc.pool.connection() as conn, conn.transaction():
            created = await auth.create_api_key(
                conn,
                caller.workspace_id,
                caller.user_id,
                name=body.name,
                prefix=svc.settings.security.api_key_prefix,
                expires_at=body.expires_at,
            )
            await record(
                conn,
                AuditEntry(
                    action="api_key.create",
                    resource_type="api_key",
                    resource_id=str(created.info.id),
                    metadata={"name": body.name},
                ),
                principal=caller,
                request=request_context(request),
            )
        return json_response(CreatedApiKey(key=created.key, api_key=created.info), 201)

    @app.delete("/v1/api-keys/{key_id}")
    async def revoke_key(key_id: UUID, request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
        async with svc.pool.connection() as conn, conn.transaction():
            revoked = await auth.revoke_api_key(conn, caller, key_id)
            await record(
                conn,
                AuditEntry(action="api_key.revoke", resource_type="api_key", resource_id=str(key_id)),
                principal=caller,
                request=request_context(request),
            )
        return json_response(revoked)

    @app.get("/v1/emails/{email_id}")
    async def read_email(email_id: int, request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
        async with svc.pool.connection() as conn, conn.transaction():
            await require_read_email(conn, caller, email_id)
            async with conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(
                    "SELECT id, account_id, thread_id, message_id, subject, from_email, from_name, "
                    "to_emails, snippet, folder, labels, is_read, received_at, sent_at "
                    "FROM emails WHERE id = %s",
                    (email_id,),
                )
                row = await cursor.fetchone()
            assert row is not None
            await record(
                conn,
                AuditEntry(action="email.read", resource_type="email", resource_id=str(email_id)),
                principal=caller,
                request=request_context(request),
            )
        return json_response(EmailSummary(**row))

    @app.get("/v1/audit-log")
    async def audit_log(caller: PrincipalDep, svc: ServicesDep, limit: int = 100) -> Response:
        if not caller.is_admin:
            raise Forbidden("only workspace owners and admins may read the audit log")
        if not 1 <= limit <= 1000:
            raise ValidationError("limit must be between 1 and 1000", field="limit")
        async with svc.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(
                "SELECT id, user_id, api_key_id, action, resource_type, resource_id, host(ip) AS ip, "
                "user_agent, metadata, occurred_at FROM audit_log WHERE workspace_id = %s "
                "ORDER BY id DESC LIMIT %s",
                (caller.workspace_id, limit),
            )
            rows = await cursor.fetchall()
        return json_response([AuditRecord(**row) for row in rows])

    return app
