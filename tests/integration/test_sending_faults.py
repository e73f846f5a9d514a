"""A 5,000-recipient campaign through the sender pool (Ray actors, real Postgres, Redis and SMTP)
while senders are killed 10 times and the scheduler once: the SMTP server ends with exactly one
message per recipient. A killed sender's rows come back uncertain, and the relay's delivery probe
(GET ?message_id=) says which of them went out before the kill."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from cluster.bootstrap import worker_env
from mail.campaigns import repository
from mail.config import load_settings
from models.campaigns import CampaignInput
from tests.fix_serve import free_port
from tests.sending_helpers import sending_campaign, smtp_server

pytestmark = [pytest.mark.integration, pytest.mark.storage, pytest.mark.slow]

RECIPIENTS = 5000
SENDERS = 3
SENDER_KILLS = 10


class Relay:
    """Accepts everything; remembers each Message-ID and how often each recipient got mail."""

    def __init__(self) -> None:
        self.per_recipient: Counter[str] = Counter()
        self.message_ids: set[str] = set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: Any = envelope.original_content
        for line in bytes(content).split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                self.message_ids.add(line.split(b":", 1)[1].strip().decode())
                break
        for recipient in envelope.rcpt_tos:
            self.per_recipient[recipient.lower()] += 1
        return "250 2.0.0 queued"


@pytest.fixture
async def probe(relay: Relay) -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"delivered": request.query.get("message_id", "") in relay.message_ids})

    app = web.Application()
    app.router.add_get("/probe", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/probe"
    await runner.cleanup()


@pytest.fixture
def relay() -> Relay:
    return Relay()


async def _campaign(database_url: str) -> tuple[uuid.UUID, list[str]]:
    addresses = [f"f{index:05}-{uuid.uuid4().hex[:6]}@example.com" for index in range(RECIPIENTS)]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        _, campaign_id = await sending_campaign(conn, addresses)
    return campaign_id, addresses


async def _status(database_url: str, campaign_id: uuid.UUID) -> tuple[str, dict[str, int]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT status FROM campaigns WHERE id = %s", (campaign_id,))
        status = (await cursor.fetchone())[0]  # type: ignore[index]
        cursor = await conn.execute(
            "SELECT state, count(*) FROM campaign_recipients WHERE campaign_id = %s GROUP BY state",
            (campaign_id,),
        )
        return status, {state: count for state, count in await cursor.fetchall()}


async def _stuck(database_url: str, campaign_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """Who holds the rows that did not finish, since when, and how often they were tried."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT claimed_by, state, uncertain, attempts, count(*), round(extract(epoch FROM now() - min(claimed_at))) "
            "FROM campaign_recipients WHERE campaign_id = %s AND state <> 'sent' GROUP BY 1, 2, 3, 4",
            (campaign_id,),
        )
        return await cursor.fetchall()


async def test_killed_senders_and_scheduler_lose_nothing_and_send_nothing_twice(
    ray_session: None, database_url: str, redis_url: str, relay: Relay, probe: str, tmp_path: Path
) -> None:
    import ray

    from actors.sender import start_sending_actors

    campaign_id, addresses = await _campaign(database_url)
    with smtp_server(relay) as port:
        settings = load_settings(
            environ={
                "MAILRAY_DATABASE__URL": database_url,
                "MAILRAY_REDIS__URL": redis_url,
                "MAILRAY_APP__DATA_DIR": str(tmp_path),
            }
        )
        env = {
            **worker_env(settings),
            "MAILRAY_SENDING__SMTP_PORT": str(port),
            "MAILRAY_SENDING__DELIVERY_PROBE_URL": probe,
            "MAILRAY_SENDING__LEASE_S": "6",
            "MAILRAY_SENDING__CLAIM_BATCH": "25",
            # Paced so that every kill lands while the campaign is still sending.
            "MAILRAY_SENDING__GLOBAL_RATE_PER_S": "400",
            "MAILRAY_SENDING__PER_DOMAIN_RATE_PER_S": "400",
        }
        namespace = f"sending-faults-{uuid.uuid4().hex[:6]}"
        actors = await asyncio.to_thread(start_sending_actors, namespace, env, SENDERS)
        scheduler, senders = actors[0], actors[1:]
        rng = random.Random(5)
        kills = 0
        started = time.monotonic()
        try:
            while kills < SENDER_KILLS and sum(relay.per_recipient.values()) < RECIPIENTS * 0.9:
                await asyncio.sleep(rng.uniform(0.3, 1.2))
                ray.kill(rng.choice(senders), no_restart=False)
                kills += 1
                if kills == SENDER_KILLS // 2:
                    ray.kill(scheduler, no_restart=False)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                status, states = await _status(database_url, campaign_id)
                if status == "sent":
                    break
                await asyncio.sleep(0.5)
            elapsed = time.monotonic() - started
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)
    print(f"sending faults: {RECIPIENTS} recipients, {kills} sender kills + 1 scheduler kill, {elapsed:.1f}s")
    assert kills == SENDER_KILLS, "the campaign finished before every kill happened; lower the pace"
    assert (status, states) == ("sent", {"sent": RECIPIENTS}), await _stuck(database_url, campaign_id)
    assert set(relay.per_recipient) == set(addresses)
    doubled = {address: count for address, count in relay.per_recipient.items() if count != 1}
    assert doubled == {}


async def test_a_campaign_that_cannot_start_is_paused_and_does_not_stop_the_others(
    ray_session: None, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    import ray

    from actors.sender import CampaignScheduler

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        owner, _ = await sending_campaign(conn, ["someone@example.com"])
        ids: list[uuid.UUID] = []
        for name in ("broken", "fine"):
            campaign = await repository.create_campaign(conn, owner, CampaignInput(
                name=name, subject="Hi", from_name="Us", from_email="news@sender.test", body_text="Hi",
                scheduled_at=datetime.now(UTC) + timedelta(hours=1)))  # fmt: skip
            ids.append(campaign.id)
        # The broken one's sender went away after it was scheduled; then both fall due.
        await conn.execute("UPDATE campaigns SET from_email = 'gone@nowhere.test' WHERE id = %s", (ids[0],))
        await conn.execute(
            "UPDATE campaigns SET scheduled_at = now() - interval '1 minute' WHERE id = ANY(%s)", (ids,)
        )
    settings = load_settings(environ={"MAILRAY_DATABASE__URL": database_url, "MAILRAY_REDIS__URL": redis_url,
                                      "MAILRAY_APP__DATA_DIR": str(tmp_path)})  # fmt: skip
    scheduler = CampaignScheduler.options(  # type: ignore[attr-defined]
        namespace=f"scheduler-{uuid.uuid4().hex[:6]}", runtime_env={"env_vars": worker_env(settings)}
    ).remote()
    try:
        # Its own loop ticks too, at once: whichever round takes a campaign reports it, and a
        # round that finds it taken reports nothing about it.
        result = await scheduler.tick.remote()
        rows = await _campaign_states(database_url, ids)
        deadline = time.monotonic() + 30
        while any(status == "scheduled" for _, status, _ in rows) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            rows = await _campaign_states(database_url, ids)
    finally:
        ray.kill(scheduler, no_restart=True)
    # The session's database may hold other due campaigns: look at these two only.
    assert str(ids[0]) not in result["started"]
    assert set(result["failedToStart"]) & {str(ids[1])} == set()
    if str(ids[0]) in result["failedToStart"]:
        assert "neither a connected account" in result["failedToStart"][str(ids[0])]
    assert [(name, status) for name, status, _ in rows] == [("broken", "paused"), ("fine", "sending")]
    assert rows[0][2].startswith("could not start: fromEmail:")
    assert "neither a connected account" in rows[0][2]


async def _campaign_states(database_url: str, ids: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT name, status, pause_reason FROM campaigns WHERE id = ANY(%s) ORDER BY name", (ids,)
        )
        return await cursor.fetchall()
