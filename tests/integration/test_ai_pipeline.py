"""The email AI on stored mail and over the API, in process (the model loaded here, no Ray): synced
mail is analyzed once, stored encrypted, shown to those who may read the email, and sorted into
the priority inbox; the AI routes answer, refuse bad input clearly, and are audited."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from mail import auth
from mail.ai.backend import LocalBackend
from mail.ai.classifier import Classifier
from mail.ai.doorbell import DOORBELL_KEY
from mail.ai.pipeline import analyze_pending
from mail.gmail.account_client import open_account_client
from mail.services import Services
from mail.sync.engine import SyncEngine
from models.ai import CATEGORIES
from serve.api import routes_ai
from serve.api.app import create_app
from tests.sync_helpers import connected_account, emulator_settings, open_test_services

pytestmark = [pytest.mark.integration, pytest.mark.storage]

USER = "kim@ai.test"
BASE = "http://mailray.test"


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    local = LocalBackend(Classifier.load())
    routes_ai._backend = local  # the API routes use the same model, loaded once
    yield local
    routes_ai._backend = None


class Rig:
    def __init__(self, services: Services, account_id: uuid.UUID, api: httpx.AsyncClient, key: str) -> None:
        self.services, self.account_id, self.api, self.headers = (
            services,
            account_id,
            api,
            {"Authorization": f"Bearer {key}"},
        )

    async def sync(self) -> None:
        client = await open_account_client(self.services, self.account_id)
        try:
            await SyncEngine(self.services, self.account_id, client).sync()
        finally:
            await client.close()

    async def count(self, query: str) -> int:
        async with self.services.pool.connection() as conn:
            cursor = await conn.execute(query, (self.account_id,))
            row = await cursor.fetchone()
            return int(row[0]) if row else 0


@pytest.fixture
async def rig(
    gmail_emulator_factory: Any, database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Rig]:
    emulator = await gmail_emulator_factory()
    emulator.add_user(USER)
    emulator.generate(USER, 24, seed=11)
    services = await open_test_services(
        emulator_settings(emulator.base_url, database_url, redis_url, tmp_path)
    )
    account_id = await connected_account(services, emulator, USER)
    async with services.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT workspace_id, user_id FROM email_accounts WHERE id = %s", (account_id,)
        )
        workspace_id, user_id = await cursor.fetchone()  # type: ignore[misc]
        key = await auth.create_api_key(conn, workspace_id, user_id)

    async def factory() -> Services:
        return services

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(factory)), base_url=BASE
    ) as api:
        yield Rig(services, account_id, api, key.key)
    await services.close()


async def test_synced_mail_is_analyzed_once_stored_encrypted_and_shown(
    rig: Rig, backend: LocalBackend
) -> None:
    await rig.services.redis.delete(DOORBELL_KEY)
    await rig.sync()
    assert await rig.services.redis.llen(DOORBELL_KEY) == 1  # sync rang for the worker
    unanalyzed = "SELECT count(*) FROM emails WHERE account_id = %s AND analyzed_at IS NULL"
    assert await rig.count(unanalyzed) == 24
    for _ in range(10):  # newest first: this account's mail is the newest in the database
        await analyze_pending(rig.services, backend, 32)
        if await rig.count(unanalyzed) == 0:
            break
    assert await rig.count(unanalyzed) == 0
    assert (
        await rig.count(
            "SELECT count(*) FROM emails WHERE account_id = %s AND category IS NOT NULL AND priority IS NOT NULL "
            "AND sentiment IS NOT NULL AND primary_intent IS NOT NULL AND ai_analysis_enc IS NOT NULL"
        )
        == 24
    )

    async with rig.services.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT id, priority, ai_analysis_enc FROM emails WHERE account_id = %s ORDER BY id LIMIT 1",
            (rig.account_id,),
        )
        email_id, priority, blob = await cursor.fetchone()  # type: ignore[misc]
    shown = await rig.api.get(f"/v1/emails/{email_id}/analysis", headers=rig.headers)
    assert shown.status_code == 200, shown.text
    analysis = shown.json()
    assert analysis["category"] in CATEGORIES and analysis["priority"] == priority
    assert set(analysis) >= {
        "entities",
        "actionItems",
        "questions",
        "summary",
        "keyPoints",
        "suggestedResponses",
    }
    if analysis["summary"]:
        assert analysis["summary"].encode() not in bytes(blob)  # content is stored encrypted

    inbox = await rig.api.get("/v1/inbox/priority", params={"priority": priority}, headers=rig.headers)
    assert inbox.status_code == 200
    items = inbox.json()["items"]
    assert items and {item["priority"] for item in items} == {priority}
    assert {item["folder"] for item in items} == {"inbox"}

    other = await _stranger_key(rig)
    assert (await rig.api.get(f"/v1/emails/{email_id}/analysis", headers=other)).status_code == 404
    assert (await rig.api.get("/v1/emails/999999999999/analysis", headers=rig.headers)).status_code == 404


async def _stranger_key(rig: Rig) -> dict[str, str]:
    async with rig.services.pool.connection() as conn:
        suffix = uuid.uuid4().hex[:8]
        workspace, owner = await auth.create_workspace(
            conn, f"Other {suffix}", owner_email=f"x-{suffix}@example.com"
        )
        key = await auth.create_api_key(conn, workspace.id, owner.id)
    return {"Authorization": f"Bearer {key.key}"}


MEETING = {
    "subject": "Can we meet next Tuesday about the renewal?",
    "body": (
        "Hi Sam,\n\nThanks for the proposal. Could you send the updated pricing for the 40 seats by Friday? "
        "The quote was $12,400.00 per year. Can we meet next Tuesday at 3pm to go over it? "
        "You can reach me at +1 415 555 0132.\n\nBest,\nAna Ruiz\nAcme Corp"
    ),
    "senderName": "Ana Ruiz",
    "senderEmail": "ana@acme-corp.test",
    "context": {"relationship": "customer", "interactionCount": 4, "activeDeals": ["Acme renewal"]},
}


async def test_ai_routes_answer_refuse_bad_input_and_are_audited(rig: Rig, backend: LocalBackend) -> None:
    analyzed = await rig.api.post("/v1/ai/analyze", json=MEETING, headers=rig.headers)
    assert analyzed.status_code == 200, analyzed.text
    body = analyzed.json()
    assert body["category"] in CATEGORIES
    assert "+14155550132" in body["entities"]["phoneNumbers"]
    assert [amount["amount"] for amount in body["entities"]["amounts"]] == [12400.0]
    assert body["questions"] and body["summary"]
    assert len(body["suggestedResponses"]) == 3
    assert body["suggestedResponses"][0]["type"] == "schedule"  # a meeting request is answered with a time

    replies = await rig.api.post("/v1/ai/replies", json=MEETING, headers=rig.headers)
    assert replies.status_code == 200
    suggestions = replies.json()["suggestions"]
    assert len({item["type"] for item in suggestions}) == 3
    assert all(0.0 <= item["confidence"] <= 1.0 and "Ana" in item["text"] for item in suggestions)

    template = await rig.api.post(
        "/v1/ai/templates",
        json={"purpose": "follow_up", "context": {"recipientName": "John", "companyName": "Acme Corp",
              "lastInteraction": "Demo call on Monday", "nextStep": "Proposal review"}, "tone": "professional"},
        headers=rig.headers,
    )  # fmt: skip
    assert template.status_code == 200
    generated = template.json()
    assert "John" in generated["bodyText"] and generated["subject"]
    assert set(generated["variations"]) == {"formal", "casual", "enthusiastic"}

    bad = [
        await rig.api.post("/v1/ai/analyze", json={"subject": " ", "body": ""}, headers=rig.headers),
        await rig.api.post("/v1/ai/analyze", json={**MEETING, "colour": "red"}, headers=rig.headers),
        await rig.api.post(
            "/v1/ai/replies", json={**MEETING, "context": {"interactionCount": -1}}, headers=rig.headers
        ),
        await rig.api.post("/v1/ai/templates", json={"purpose": "<script>"}, headers=rig.headers),
    ]
    assert [response.status_code for response in bad] == [422] * 4
    assert all(response.json()["error"]["message"] for response in bad)
    assert (await rig.api.post("/v1/ai/analyze", json=MEETING)).status_code == 401

    async with await psycopg.AsyncConnection.connect(_url(rig)) as conn:
        cursor = await conn.execute(
            "SELECT action FROM audit_log WHERE workspace_id = (SELECT workspace_id FROM email_accounts WHERE id = %s) "
            "AND action LIKE 'ai.%%'",
            (rig.account_id,),
        )
        actions = sorted(row[0] for row in await cursor.fetchall())
    assert actions == ["ai.analyze", "ai.replies", "ai.template"]


def _url(rig: Rig) -> str:
    url = rig.services.settings.database.url
    assert url is not None
    return url
