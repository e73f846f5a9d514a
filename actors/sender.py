"""The sender pool and the campaign scheduler: named, detached actors Ray restarts when they die.

- `Sender` (`sender-0`, `sender-1`, ...): runs `sending.loops_per_sender` of mail.sending.sender's
  loops over one set of connections, so one loop's messages are on the wire while another
  composes and signs. On (re)start it takes back the rows it held under its name (it may have
  sent any of them: they come back uncertain), and while it runs it renews its loops' claims so
  the scheduler never takes back a live sender's rows.
- `CampaignScheduler` (`campaign-scheduler`): every second starts the scheduled campaigns that
  are due, acts on the bounces in `sending.bounce_maildir` (mail.bounces.ingest), decides the A/B
  tests whose wait is over (mail.campaigns.ab_round), takes back rows whose sender stopped renewing them (a sender that died for good),
  pauses campaigns over a guardrail (mail.sending.guardrails), and marks campaigns with nothing
  left to send as sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import ray

from actors.looping import LoopingActor
from mail.bounces.ingest import ingest_maildir
from mail.campaigns import ab_round, repository
from mail.errors import MailrayError
from mail.sending import guardrails, outbox
from mail.sending.campaign_compose import CampaignComposer
from mail.sending.sender import Sender as SenderLoop
from mail.sending.sender import renewable_claims
from mail.sending.transport import AccountTransports, SmtpTransport
from mail.services import Services

log = logging.getLogger(__name__)

SCHEDULER_NAME = "campaign-scheduler"
_IDLE_S = 0.5
_TICK_S = 1.0


def sender_name(index: int) -> str:
    return f"sender-{index}"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class Sender(LoopingActor):
    def __init__(self, name: str) -> None:
        self._name = name
        self._sent = 0
        self._progress_at: list[float] = []  # per loop: when it last started a step
        super().__init__()

    async def _loop(self) -> None:
        services = await self._open()
        settings = services.settings.sending
        transport = SmtpTransport(
            settings.smtp_host, settings.smtp_port, connections=settings.smtp_connections,
            username=settings.smtp_username or None, password=settings.smtp_password or None,
            start_tls=settings.smtp_start_tls, timeout_s=settings.smtp_timeout_s,
            probe_url=settings.delivery_probe_url,
        )  # fmt: skip
        async with services.pool.connection() as conn, conn.transaction():
            taken = await outbox.take_back_own(conn, self._name)
        if taken:
            log.warning("%s: took back %d rows it held before it restarted (uncertain)", self._name, taken)
        composer = CampaignComposer(services.settings, services.keyring)
        accounts = AccountTransports(services)  # campaigns with an accountId: that Gmail account's API
        loops = [
            SenderLoop(services, self._name, transport, composer, accounts)
            for _ in range(settings.loops_per_sender)
        ]
        self._progress_at = [time.monotonic()] * len(loops)
        heartbeat = asyncio.create_task(self._renew(services, loops))
        try:
            async with asyncio.TaskGroup() as group:  # a loop that fails stops the others: all restart
                for index, loop in enumerate(loops):
                    group.create_task(self._drain(index, loop))
        finally:
            heartbeat.cancel()
            await transport.close()
            await accounts.close()

    async def _drain(self, index: int, loop: SenderLoop) -> None:
        while True:
            self._progress_at[index] = time.monotonic()
            report = await loop.step()
            self._sent += report.sent
            if report.claimed == 0:
                await asyncio.sleep(_IDLE_S)

    async def _renew(self, services: Services, loops: list[SenderLoop]) -> None:
        """Renew the claims of each loop's running batch while that loop makes progress. A loop
        stuck in one batch longer than the lease stops renewing it, and the scheduler takes its
        rows back (uncertain)."""
        lease_s = services.settings.sending.lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            held, stuck = renewable_claims(
                [loop.batch for loop in loops], self._progress_at, time.monotonic(), lease_s
            )
            if stuck:
                log.warning(
                    "%s: %d batches have run longer than the lease; their claims lapse", self._name, stuck
                )
            try:
                async with services.pool.connection() as conn, conn.transaction():
                    await outbox.renew(conn, self._name, held)
            except Exception:
                log.exception("%s: renewing claims failed", self._name)

    async def sent(self) -> int:
        return self._sent


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class CampaignScheduler(LoopingActor):
    async def _loop(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(_TICK_S)

    async def tick(self) -> dict[str, Any]:
        """One round. Each part stands alone: a campaign that cannot start (its from-address
        was disconnected, say) is paused with the reason, and never keeps the rest from running."""
        services = await self._open()
        result: dict[str, Any] = {"started": [], "failedToStart": {}}
        async with services.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT id FROM campaigns WHERE status = 'scheduled' AND scheduled_at <= now() ORDER BY scheduled_at LIMIT 10"
            )
            due = [row[0] for row in await cursor.fetchall()]
            await conn.commit()
            for campaign_id in due:
                try:
                    async with conn.transaction():
                        started = await self._start(conn, campaign_id)
                    if started:
                        result["started"].append(str(campaign_id))
                except MailrayError as error:
                    async with conn.transaction():
                        await conn.execute(
                            "UPDATE campaigns SET status = 'paused', pause_reason = %s, updated_at = now() "
                            "WHERE id = %s AND status = 'scheduled'",
                            (f"could not start: {error}"[:500], campaign_id),
                        )
                    result["failedToStart"][str(campaign_id)] = str(error)
        if services.settings.sending.bounce_maildir:
            try:
                result["bounces"] = await self._ingest_bounces(services)
            except Exception:
                log.exception("campaign scheduler: ingesting bounces failed this round")
        for name, step in (
            ("decided", self._decide_ab_tests),
            ("takenBack", self._take_back),
            ("paused", self._guard),
            ("finished", self._finish),
        ):
            try:
                async with services.pool.connection() as conn, conn.transaction():
                    result[name] = await step(conn, services)
            except Exception:
                log.exception("campaign scheduler: %s failed this round", name)
        return result

    async def _start(self, conn: Any, campaign_id: Any) -> bool:
        """Start a due campaign; False when another round holds it or has already started it."""
        cursor = await conn.execute(
            "SELECT 1 FROM campaigns WHERE id = %s AND status = 'scheduled' FOR UPDATE SKIP LOCKED",
            (campaign_id,),
        )
        if await cursor.fetchone() is None:
            return False
        await repository.start_sending(conn, await repository.load_campaign(conn, campaign_id))
        return True

    async def _ingest_bounces(self, services: Services) -> dict[str, int]:
        found = await ingest_maildir(
            services.pool,
            services.redis,
            Path(services.settings.sending.bounce_maildir),
            services.settings.sending,
        )
        return {"reports": found.reports, "hard": found.hard, "softRetried": found.soft_retried,
                "blocked": found.blocked, "unmatched": found.unmatched}  # fmt: skip

    async def _decide_ab_tests(self, conn: Any, services: Services) -> dict[str, str | None]:
        decided = await ab_round.decide_due(conn, services.settings.campaigns)
        for campaign_id, decision in decided.items():
            log.info("campaign %s: A/B test decided: winner %s (%s)", campaign_id, decision.winner,
                     "significant" if decision.significant else decision.reason)  # fmt: skip
        return {str(campaign_id): decision.winner for campaign_id, decision in decided.items()}

    async def _take_back(self, conn: Any, services: Services) -> int:
        return await outbox.take_back(conn, services.settings.sending.lease_s)

    async def _guard(self, conn: Any, services: Services) -> dict[str, str]:
        trips = await guardrails.enforce(conn, services.settings.sending)
        for trip in trips:
            log.warning("campaign %s paused: %s", trip.campaign_id, trip.reason)
        return {str(trip.campaign_id): trip.reason for trip in trips}

    async def _finish(self, conn: Any, services: Services) -> list[str]:
        del services
        return [str(campaign_id) for campaign_id in await outbox.finish_campaigns(conn)]


def start_sending_actors(namespace: str, env: dict[str, str], senders: int) -> list[Any]:
    """Start (or find) the scheduler and `senders` senders; returns their handles."""
    options: dict[str, Any] = {"namespace": namespace, "lifetime": "detached", "get_if_exists": True,
                               "runtime_env": {"env_vars": env}}  # fmt: skip
    actors = [CampaignScheduler.options(name=SCHEDULER_NAME, **options).remote()]  # type: ignore[attr-defined]
    actors += [
        Sender.options(name=sender_name(index), **options).remote(sender_name(index))  # type: ignore[attr-defined]
        for index in range(senders)
    ]
    ray.get([actor.ensure_running.remote() for actor in actors])
    return actors
