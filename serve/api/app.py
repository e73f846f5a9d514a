"""The REST API: a FastAPI app served by the `Api` deployment (and testable without Ray).

Bodies are msgspec Structs (models.api), decoded once with unknown fields refused. Every
state-changing call writes its audit row in the transaction of its change.
"""

from __future__ import annotations

import logging
from uuid import UUID

from fastapi import FastAPI, Request, Response
from psycopg.rows import dict_row

from mail import auth
from mail.audit import AuditEntry, record
from mail.errors import Forbidden, ValidationError
from models.api import AuditRecord, CreateApiKey, CreatedApiKey, Health, Me
from serve.api import (
    routes_accounts,
    routes_ai,
    routes_campaigns,
    routes_domains,
    routes_events,
    routes_mail,
    routes_tracking,
)
from serve.api.deps import (
    PrincipalDep,
    ServicesDep,
    ServicesFactory,
    ServicesHolder,
    decode_body,
    json_response,
    request_context,
)
from serve.errors import install_error_handlers

log = logging.getLogger(__name__)


def create_app(services_factory: ServicesFactory) -> FastAPI:
    app = FastAPI(title="mailray", version="0.1.0", docs_url="/docs", redoc_url=None)
    app.state.services = ServicesHolder(services_factory)
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

    app.include_router(routes_mail.router)
    app.include_router(routes_accounts.router)
    app.include_router(routes_tracking.router)
    app.include_router(routes_campaigns.router)
    app.include_router(routes_domains.router)
    app.include_router(routes_events.router)
    app.include_router(routes_ai.router)
    return app
