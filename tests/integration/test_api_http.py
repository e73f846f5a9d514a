"""The API over HTTP: a real Serve deployment behind HAProxy ingress, real Postgres and Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import psycopg
import pytest

from mail import auth
from mail.config import load_settings
from models.tenancy import NewApiKey, User, Workspace
from tests.dns_helpers import DnsServer

pytestmark = [pytest.mark.integration, pytest.mark.storage, pytest.mark.slow]

# Every state-changing route and the audit action it must record; test_every_state_changing_route_is_audited
# keeps this list complete.
AUDITED_ROUTES = {
    ("POST", "/v1/api-keys"): "api_key.create",
    ("DELETE", "/v1/api-keys/{key_id}"): "api_key.revoke",
    ("POST", "/v1/accounts/gmail/connect"): "account.connect",
    ("POST", "/v1/accounts/{account_id}/sync/start"): "account.sync_start",
    ("POST", "/v1/accounts/{account_id}/sync/pause"): "account.sync_pause",
    ("POST", "/v1/tracking/emails"): "tracked_email.create",
    ("POST", "/v1/contacts"): "contact.upsert",
    ("POST", "/v1/contacts/import"): "contact.import",
    ("POST", "/v1/campaigns"): "campaign.create",
    ("PATCH", "/v1/campaigns/{campaign_id}"): "campaign.update",
    ("POST", "/v1/campaigns/{campaign_id}/schedule"): "campaign.schedule",
    ("POST", "/v1/campaigns/{campaign_id}/send"): "campaign.send",
    ("POST", "/v1/campaigns/{campaign_id}/pause"): "campaign.pause",
    ("POST", "/v1/campaigns/{campaign_id}/resume"): "campaign.resume",
    ("POST", "/v1/campaigns/{campaign_id}/cancel"): "campaign.cancel",
    ("POST", "/v1/campaigns/{campaign_id}/winner"): "campaign.choose_winner",
    ("POST", "/v1/domains"): "domain.add",
    ("POST", "/v1/domains/{domain}/verify"): "domain.verify",
    ("POST", "/v1/ai/analyze"): "ai.analyze",
    ("POST", "/v1/ai/replies"): "ai.replies",
    ("POST", "/v1/ai/templates"): "ai.template",
}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Tenant(msgspec.Struct):
    workspace: Workspace
    owner: User
    member: User
    owner_key: NewApiKey
    member_key: NewApiKey


async def _tenant(database_url: str) -> Tenant:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        suffix = uuid.uuid4().hex[:8]
        workspace, owner = await auth.create_workspace(
            conn, f"Tenant {suffix}", owner_email=f"owner-{suffix}@example.com"
        )
        member = await auth.create_user(conn, workspace.id, f"member-{suffix}@example.com")
        owner_key = await auth.create_api_key(conn, workspace.id, owner.id)
        member_key = await auth.create_api_key(conn, workspace.id, member.id)
    return Tenant(workspace=workspace, owner=owner, member=member, owner_key=owner_key, member_key=member_key)


async def _email_of(database_url: str, tenant: Tenant, owner: User) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "INSERT INTO email_accounts (workspace_id, user_id, email, provider) VALUES (%s, %s, %s, 'gmail') RETURNING id",
            (tenant.workspace.id, owner.id, f"box-{uuid.uuid4().hex[:8]}@example.com"),
        )
        row = await cursor.fetchone()
        assert row is not None
        cursor = await conn.execute(
            "INSERT INTO emails (workspace_id, account_id, subject, email_date, received_at) "
            "VALUES (%s, %s, 'Quarterly numbers', %s, %s) RETURNING id",
            (tenant.workspace.id, row[0], datetime.now(UTC), datetime.now(UTC)),
        )
        email = await cursor.fetchone()
        await conn.commit()
    assert email is not None
    return int(email[0])


def bearer(key: NewApiKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.key}"}


async def _json(response: aiohttp.ClientResponse) -> Any:
    return msgspec.json.decode(await response.read())


async def test_healthz_checks_postgres_and_redis(api_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api_url}/healthz") as response:
        assert response.status == 200
        assert await _json(response) == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Bearer nonsense"}, "malformed API key"),
        ({"X-API-Key": "mr_0123456789abcdef_" + "A" * 43}, "invalid API key"),
    ],
)
async def test_me_refuses_without_a_valid_key(
    api_url: str, http: aiohttp.ClientSession, headers: dict[str, str], reason: str
) -> None:
    async with http.get(f"{api_url}/v1/me", headers=headers) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        body = await _json(response)
        assert body["error"]["code"] == "unauthorized"
        assert reason in body["error"]["message"]


async def test_me_answers_with_the_callers_workspace_and_user(
    api_url: str, http: aiohttp.ClientSession, database_url: str
) -> None:
    tenant = await _tenant(database_url)
    for headers in (bearer(tenant.member_key), {"X-API-Key": tenant.member_key.key}):
        async with http.get(f"{api_url}/v1/me", headers=headers) as response:
            assert response.status == 200
            body = await _json(response)
        assert body["workspaceId"] == str(tenant.workspace.id)
        assert body["userId"] == str(tenant.member.id)
        assert body["role"] == "member"
        assert body["apiKeyId"] == str(tenant.member_key.info.id)


async def _audit_rows(database_url: str, workspace_id: uuid.UUID) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT action, user_id, api_key_id, resource_id, host(ip), user_agent FROM audit_log "
            "WHERE workspace_id = %s ORDER BY id",
            (workspace_id,),
        )
        return await cursor.fetchall()


async def test_creating_and_revoking_a_key_is_audited(
    api_url: str, http: aiohttp.ClientSession, database_url: str
) -> None:
    tenant = await _tenant(database_url)
    headers = {**bearer(tenant.member_key), "User-Agent": "mailray-tests/1"}
    async with http.post(f"{api_url}/v1/api-keys", json={"name": "ci"}, headers=headers) as response:
        assert response.status == 201
        created = await _json(response)
    new_key = created["key"]
    async with http.get(f"{api_url}/v1/me", headers={"X-API-Key": new_key}) as response:
        assert response.status == 200
    async with http.delete(f"{api_url}/v1/api-keys/{created['apiKey']['id']}", headers=headers) as response:
        assert response.status == 200
        assert (await _json(response))["revokedAt"] is not None
    async with http.get(f"{api_url}/v1/me", headers={"X-API-Key": new_key}) as response:
        assert response.status == 401
        assert "revoked" in (await _json(response))["error"]["message"]

    rows = await _audit_rows(database_url, tenant.workspace.id)
    assert [row[0] for row in rows] == ["api_key.create", "api_key.revoke"]
    for action, user_id, api_key_id, resource_id, ip, user_agent in rows:
        assert user_id == tenant.member.id
        assert api_key_id == tenant.member_key.info.id
        assert resource_id == created["apiKey"]["id"]
        assert ip == "127.0.0.1"
        assert user_agent == "mailray-tests/1"
        assert action in AUDITED_ROUTES.values()


async def test_bad_bodies_get_a_reason_and_change_nothing(
    api_url: str, http: aiohttp.ClientSession, database_url: str
) -> None:
    tenant = await _tenant(database_url)
    for body, fragment in (
        (b'{"name": "x", "scopes": 1}', "unknown field `scopes`"),
        (b"{not json", "not valid JSON"),
        (b'{"name": 5}', "Expected `str`"),
    ):
        async with http.post(
            f"{api_url}/v1/api-keys", data=body, headers=bearer(tenant.owner_key)
        ) as response:
            assert response.status == 422
            assert fragment in (await _json(response))["error"]["message"]
    async with http.delete(f"{api_url}/v1/api-keys/not-a-uuid", headers=bearer(tenant.owner_key)) as response:
        assert response.status == 422
        assert (await _json(response))["error"]["field"] == "path.key_id"
    assert await _audit_rows(database_url, tenant.workspace.id) == []


async def test_email_access_is_scoped_to_workspace_and_mailbox_owner(
    api_url: str, http: aiohttp.ClientSession, database_url: str
) -> None:
    tenant, other = await _tenant(database_url), await _tenant(database_url)
    email_id = await _email_of(database_url, tenant, tenant.member)
    url = f"{api_url}/v1/emails/{email_id}"

    async with http.get(url, headers=bearer(tenant.member_key)) as response:  # the mailbox owner
        assert response.status == 200
        assert (await _json(response))["subject"] == "Quarterly numbers"
    async with http.get(url, headers=bearer(tenant.owner_key)) as response:  # the workspace owner
        assert response.status == 200
    async with http.get(url, headers=bearer(other.owner_key)) as response:  # another workspace's owner
        assert response.status == 404
        assert (await _json(response))["error"]["code"] == "not_found"

    owner_mailbox_email = await _email_of(database_url, tenant, tenant.owner)
    async with http.get(
        f"{api_url}/v1/emails/{owner_mailbox_email}", headers=bearer(tenant.member_key)
    ) as response:
        assert response.status == 403  # same workspace, someone else's mailbox, not an admin
    assert [row[0] for row in await _audit_rows(database_url, tenant.workspace.id)] == [
        "email.read",
        "email.read",
    ]
    assert await _audit_rows(database_url, other.workspace.id) == []


async def test_audit_log_is_for_admins(api_url: str, http: aiohttp.ClientSession, database_url: str) -> None:
    tenant = await _tenant(database_url)
    async with http.get(f"{api_url}/v1/audit-log", headers=bearer(tenant.member_key)) as response:
        assert response.status == 403
    async with http.post(f"{api_url}/v1/api-keys", json={}, headers=bearer(tenant.owner_key)) as response:
        assert response.status == 201
    async with http.get(f"{api_url}/v1/audit-log", headers=bearer(tenant.owner_key)) as response:
        assert response.status == 200
        assert [entry["action"] for entry in await _json(response)] == ["api_key.create"]


async def test_unknown_routes_get_an_error_body(api_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api_url}/v1/nothing-here") as response:
        assert response.status == 404
        assert (await _json(response))["error"]["code"] == "not_found"


def test_every_state_changing_route_is_audited() -> None:
    from serve.api.deployment import api_app

    # The OpenAPI paths: FastAPI keeps an included router's routes inside it, not in app.routes.
    changing = {
        (method.upper(), path)
        for path, operations in api_app.openapi()["paths"].items()
        for method in operations
        if method in {"post", "put", "patch", "delete"}
    }
    assert changing == set(AUDITED_ROUTES)


def test_serve_config_names_an_importable_builder(tmp_path: Path) -> None:
    from cluster.bootstrap import serve_config

    settings = load_settings(
        environ={
            "MAILRAY_DATABASE__URL": "postgresql:///x",
            "MAILRAY_REDIS__URL": "redis://h",
            "MAILRAY_APP__DATA_DIR": str(tmp_path),
        }
    )
    config = serve_config(settings)
    application = config["applications"][0]
    assert application["import_path"] == "serve.api.deployment:build"
    assert application["runtime_env"]["env_vars"]["MAILRAY_DATABASE__URL"] == "postgresql:///x"


async def test_campaigns_and_contacts_over_http(
    api_url: str, http: aiohttp.ClientSession, database_url: str
) -> None:
    tenant = await _tenant(database_url)
    owner, member = bearer(tenant.owner_key), bearer(tenant.member_key)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO email_accounts (workspace_id, user_id, email, provider, sync_status) "
            "VALUES (%s, %s, 'news@http.test', 'smtp', 'synced')",
            (tenant.workspace.id, tenant.owner.id),
        )
    csv_body = (
        "email,firstName,tags\nann@example.com,Ann,customer\nbad,Bob,customer\nkim@example.com,Kim,customer\n"
    )
    async with http.post(f"{api_url}/v1/contacts/import", data=csv_body, headers=owner) as response:
        assert response.status == 200
        report = await _json(response)
    assert (report["created"], report["updated"]) == (2, 0)
    assert [(row["row"], row["error"].split(":")[0]) for row in report["rejected"]] == [(3, "email")]
    campaign = {
        "name": "Launch", "subject": "Hi {{firstName|there}}", "fromName": "Us", "fromEmail": "news@http.test",
        "bodyHtml": "<p>Hi</p>", "recipientFilter": {"tags": ["customer"]},
    }  # fmt: skip
    async with http.post(f"{api_url}/v1/campaigns", json=campaign, headers=owner) as response:
        assert response.status == 201
        created = await _json(response)
    assert (created["status"], created["recipientCount"], created["isAbTest"]) == ("draft", 2, False)
    path = f"{api_url}/v1/campaigns/{created['id']}"
    async with http.get(f"{path}/recipients/count", headers=owner) as response:
        assert await _json(response) == {"matching": 2, "excluded": 0, "suppressed": 0, "eligible": 2}
    async with http.get(path, headers=member) as response:
        assert response.status == 403  # another user's campaign
    bad = {
        **campaign,
        "isAbTest": True,
        "variants": [{"name": "A", "percentage": 70}, {"name": "B", "percentage": 20}],
    }
    async with http.post(f"{api_url}/v1/campaigns", json=bad, headers=owner) as response:
        assert response.status == 422
        assert "percentages must sum to 100, got 90" in (await _json(response))["error"]["message"]
    async with http.post(f"{path}/send", headers=owner) as response:
        assert response.status == 200
        assert (await _json(response))["status"] == "sending"
    async with http.patch(path, json={"subject": "late"}, headers=owner) as response:
        assert response.status == 409
        assert (await _json(response))["error"]["code"] == "conflict"
    async with http.post(f"{path}/winner", json={"variantId": str(uuid.uuid4())}, headers=owner) as response:
        assert response.status == 409
        assert "not an A/B test" in (await _json(response))["error"]["message"]
    async with http.post(f"{path}/winner", json={"variant": "A"}, headers=owner) as response:
        assert response.status == 422  # the body names no variantId
    async with http.get(f"{api_url}/v1/audit-log", headers=owner) as response:
        actions = [entry["action"] for entry in await _json(response)]
    assert actions[:3] == ["campaign.send", "campaign.create", "contact.import"]


async def test_sending_domains_over_http(
    api_url: str, http: aiohttp.ClientSession, database_url: str, dns_server: DnsServer
) -> None:
    """An admin adds a domain and gets its DNS records; it is verified once DNS publishes them,
    and a campaign may then send from it. Members list domains but change none."""
    tenant = await _tenant(database_url)
    owner, member = bearer(tenant.owner_key), bearer(tenant.member_key)
    domain = f"d{uuid.uuid4().hex[:8]}.example"
    async with http.post(f"{api_url}/v1/domains", json={"domain": domain}, headers=member) as response:
        assert response.status == 403
    async with http.post(f"{api_url}/v1/domains", json={"domain": "localhost"}, headers=owner) as response:
        assert response.status == 422
    async with http.post(
        f"{api_url}/v1/domains", json={"domain": domain, "selector": "m1"}, headers=owner
    ) as response:
        assert response.status == 201
        added = await _json(response)
    assert (added["domain"], added["selector"], added["verifiedAt"]) == (domain, "m1", None)
    dkim = added["records"][0]
    assert (dkim["name"], dkim["type"]) == (f"m1._domainkey.{domain}", "TXT")

    campaign = {
        "name": "From the domain",
        "subject": "Hi",
        "fromEmail": f"news@{domain}",
        "bodyHtml": "<p>Hi</p>",
    }
    async with http.post(f"{api_url}/v1/campaigns", json=campaign, headers=owner) as response:
        assert response.status == 201  # a draft may name any address; scheduling checks it
        campaign_path = f"{api_url}/v1/campaigns/{(await _json(response))['id']}"
    tomorrow = {"scheduledAt": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    async with http.post(f"{campaign_path}/schedule", json=tomorrow, headers=owner) as response:
        assert response.status == 422
        assert "verified sending domains" in (await _json(response))["error"]["message"]

    verify = f"{api_url}/v1/domains/{domain}/verify"
    async with http.post(verify, headers=owner) as response:
        assert response.status == 422
        assert "no TXT record yet" in (await _json(response))["error"]["message"]
    dns_server.txt[dkim["name"]] = [dkim["value"]]
    async with http.post(verify, headers=member) as response:
        assert response.status == 403
    async with http.post(verify, headers=owner) as response:
        assert response.status == 200
        assert (await _json(response))["verifiedAt"] is not None
    async with http.get(f"{api_url}/v1/domains", headers=member) as response:
        listed = await _json(response)
    assert [(item["domain"], item["selector"], item["verifiedAt"] is not None) for item in listed] == [
        (domain, "m1", True)
    ]
    async with http.post(f"{campaign_path}/schedule", json=tomorrow, headers=owner) as response:
        assert response.status == 200
        assert (await _json(response))["status"] == "scheduled"
    async with http.post(f"{campaign_path}/cancel", headers=owner) as response:
        assert response.status == 200
