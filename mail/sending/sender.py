"""One sender's loop: claim a batch of due outbox rows, compose their messages, take the batch's
tokens from the shared rate limits (a domain at a time), fence the batch (renew its claims and
keep only the rows still held), send, and record the outcomes.

Acceptances are recorded together every 50 ms, refusals at once: a crash leaves at most the
last 50 ms of accepted messages unrecorded (uncertain). Such a row comes back
after the lease (mail.sending.outbox.take_back); before sending it again the sender asks the
transport whether it went out, and where the transport cannot tell, `sending.uncertain` decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import msgspec

from mail.errors import ConfigError, MailrayError
from mail.sending import outbox
from mail.sending.outbox import Claimed
from mail.sending.transport import AccountTransports, Outcome, Transport
from mail.services import Services
from mail.store.ratelimit import RateLimiter, TokenBucket

log = logging.getLogger(__name__)

# Acceptances are recorded together at most this long after the server's 250: the window in
# which a crash leaves a row uncertain (the delivery probe settles those).
_FLUSH_INTERVAL_S = 0.05


class Composed(msgspec.Struct, frozen=True, kw_only=True):
    row: Claimed
    envelope_from: str
    message_id: str
    message: bytes
    # The Gmail account to send it through (the campaign's accountId); None: the SMTP relay.
    account_id: UUID | None = None


class NotComposed(msgspec.Struct, frozen=True, kw_only=True):
    row: Claimed
    error: str


Compose = Callable[[Any, Sequence[Claimed]], Awaitable[list[Composed | NotComposed]]]


class StepReport(msgspec.Struct, kw_only=True):
    claimed: int = 0
    sent: int = 0
    bounced: int = 0
    retried: int = 0
    failed: int = 0
    confirmed_earlier: int = 0  # uncertain rows the transport said were delivered already
    lost: int = 0  # rows whose claim lapsed before they were sent (another sender has them)


class Sender:
    def __init__(
        self,
        services: Services,
        name: str,
        transport: Transport,
        compose: Compose,
        accounts: AccountTransports | None = None,
    ) -> None:
        """`transport` sends through the SMTP relay; `accounts` gives the Gmail transport of a
        message composed with an account (the caller opens and closes both)."""
        self._services = services
        self._name = name
        self._transport = transport
        self._accounts = accounts
        self._compose = compose
        self._limiter = RateLimiter(services.redis)
        settings = services.settings.sending
        self._settings = settings
        self._global = TokenBucket(
            "send:global", settings.global_rate_per_s, max(1.0, settings.global_rate_per_s)
        )
        # Per step: the connection that records outcomes (one statement at a time), acceptances
        # not yet recorded, and the rows the batch fence found still held.
        self._recorder: Any = None
        self._recording = asyncio.Lock()
        self._accepted: list[tuple[int, str, str | None]] = []
        self._fenced: set[int] = set()
        self._fenced_at = 0.0
        self._batch: list[int] = []

    @property
    def batch(self) -> list[int]:
        """The ids of the rows the running step claimed (empty between steps): what the
        heartbeat renews."""
        return self._batch

    def _buckets(self, domain: str) -> list[TokenBucket]:
        rate = self._settings.per_domain_rate_per_s
        return [self._global, TokenBucket(f"send:domain:{domain}", rate, max(1.0, rate))]

    async def step(self) -> StepReport:
        pool = self._services.pool
        async with pool.connection() as conn, conn.transaction():
            rows = await outbox.claim(conn, self._name, self._settings.claim_batch)
        report = StepReport(claimed=len(rows))
        if not rows:
            return report
        self._batch = [row.id for row in rows]
        try:
            await self._send_batch(rows, report)
        finally:
            self._batch = []
        async with pool.connection() as conn, conn.transaction():
            await outbox.count_batch(conn, self._name, [row.id for row in rows])
            await outbox.refresh_counts(conn, set(await outbox.finish_campaigns(conn)))
        return report

    async def _send_batch(self, rows: list[Claimed], report: StepReport) -> None:
        async with self._services.pool.connection() as conn:
            composed = await self._compose(conn, rows)
            await conn.commit()  # end the composing reads: each record below is a transaction
            composed = await self._within_daily_caps(conn, composed)
            await self._take_tokens([item.row.email for item in composed if isinstance(item, Composed)])
            self._recorder = conn
            self._accepted = []
            self._fenced, self._fenced_at = await self._fence([row.id for row in rows]), time.monotonic()
            done = asyncio.Event()
            flusher = asyncio.create_task(self._flush_every(_FLUSH_INTERVAL_S, done))
            try:
                await asyncio.gather(*(self._deliver(item, report) for item in composed))
            finally:
                # Not cancelled: a flush cut off between taking the acceptances and committing
                # them would lose them (rows left 'sending' though their messages went out).
                done.set()
                await flusher
                await self._flush()

    async def _fence(self, row_ids: list[int]) -> set[int]:
        """The batch's rows still held, each with at least 3/4 of a lease left: _holds trusts this
        for half a lease, which leaves a quarter to spare."""
        async with self._recording, self._recorder.transaction():
            return await outbox.fence_fresh(
                self._recorder, row_ids, self._name, self._settings.lease_s * 0.75
            )

    async def _holds(self, row_id: int) -> bool:
        """Whether this sender may send the row: fenced with the batch (recently), or again now
        when the batch has run for half a lease (a stalled sender's claims may have lapsed)."""
        if time.monotonic() - self._fenced_at < self._settings.lease_s / 2:
            return row_id in self._fenced
        async with self._recording, self._recorder.transaction():
            return await outbox.still_mine(self._recorder, row_id, self._name)

    async def _flush_every(self, interval_s: float, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=interval_s)
            await self._flush()

    async def _flush(self) -> None:
        """Record the acceptances gathered since the last flush, in one statement. If recording
        fails (or is cancelled), they are kept for the next flush."""
        if not self._accepted:
            return
        accepted, self._accepted = self._accepted, []
        try:
            async with self._recording, self._recorder.transaction():
                await outbox.mark_sent_many(self._recorder, self._name, accepted)
        except BaseException:
            self._accepted = accepted + self._accepted
            raise

    async def _within_daily_caps(
        self, conn: Any, composed: list[Composed | NotComposed]
    ) -> list[Composed | NotComposed]:
        """Each message through a Gmail account takes a token of that account's daily cap (a
        shared bucket refilled over 24 hours); those it refuses go back to the queue unsent until
        it has tokens again, and are left out of the batch."""
        cap = self._settings.gmail_daily_cap
        by_account: dict[UUID, list[int]] = {}
        for item in composed:
            if isinstance(item, Composed) and item.account_id is not None:
                by_account.setdefault(item.account_id, []).append(item.row.id)
        later: set[int] = set()
        wait_s = 0.0
        for account_id, row_ids in by_account.items():
            bucket = TokenBucket(f"send:account-day:{account_id}", cap / 86_400, cap)
            if len(row_ids) <= cap and (await self._limiter.try_acquire(bucket, len(row_ids))).allowed:
                continue  # the whole batch fits: one call to Redis
            for position in range(len(row_ids)):  # it does not: as many as the bucket holds
                grant = await self._limiter.try_acquire(bucket)
                if not grant.allowed:
                    later.update(row_ids[position:])
                    wait_s = max(wait_s, grant.retry_after_s)
                    break
        if not later:
            return composed
        async with conn.transaction():
            await outbox.defer(
                conn,
                sorted(later),
                self._name,
                f"deferred: the sending account's daily cap ({cap}) is spent",
                wait_s,
            )
        return [item for item in composed if item.row.id not in later]

    async def _take_tokens(self, recipients: list[str]) -> None:
        """The batch's tokens from the shared buckets, a domain at a time, in chunks the buckets
        can grant: one Redis call per chunk instead of one per message."""
        by_domain: dict[str, int] = {}
        for recipient in recipients:
            domain = recipient.rpartition("@")[2].lower()
            by_domain[domain] = by_domain.get(domain, 0) + 1
        for domain, count in sorted(by_domain.items()):
            buckets = self._buckets(domain)
            chunk = int(min(bucket.capacity for bucket in buckets))
            while count > 0:
                take = min(count, chunk)
                await self._limiter.acquire_all(buckets, take)
                count -= take

    async def _record(self, call: Callable[[Any], Awaitable[Any]]) -> None:
        async with self._recording, self._recorder.transaction():
            await call(self._recorder)

    async def _deliver(self, item: Composed | NotComposed, report: StepReport) -> None:
        row = item.row
        if isinstance(item, NotComposed):
            report.failed += 1
            await self._record(lambda conn: outbox.mark_final(conn, row.id, self._name, "failed", item.error))
            return
        if not await self._holds(row.id):
            report.lost += 1  # its claim lapsed and the row went back: not ours to send
            return
        try:
            transport = await self._transport_for(item)
        except MailrayError as error:  # the account's tokens cannot be read: not the address's fault
            outcome = Outcome(verdict="retry", message=f"cannot open the sending account: {error}")
            await self._record(lambda conn: self._apply(conn, item, outcome, report))
            return
        if row.uncertain:
            went_out = await transport.delivered(item.message_id)
            if went_out:
                report.confirmed_earlier += 1
                self._accepted.append((row.id, item.message_id, None))
                return
            if went_out is None and self._settings.uncertain == "skip":
                report.failed += 1
                await self._record(lambda conn: outbox.mark_final(
                    conn, row.id, self._name, "failed", "uncertain: may have been delivered before a crash"))  # fmt: skip
                return
        outcome = await transport.send(item.envelope_from, row.email, item.message)
        if outcome.verdict == "accepted":
            report.sent += 1
            self._accepted.append((row.id, item.message_id, outcome.provider_message_id))
            return
        await self._record(lambda conn: self._apply(conn, item, outcome, report))

    async def _transport_for(self, item: Composed) -> Transport:
        if item.account_id is None:
            return self._transport
        if self._accounts is None:
            raise ConfigError("this sender sends through the SMTP relay only, not through a Gmail account")
        return await self._accounts.get(item.account_id)

    async def _apply(self, conn: Any, item: Composed, outcome: Outcome, report: StepReport) -> None:
        row = item.row
        if outcome.verdict == "bounced":
            report.bounced += 1
            await outbox.mark_final(conn, row.id, self._name, "bounced", outcome.describe())
            await record_rejection(conn, row, item.message_id, outcome)
        elif row.attempts >= self._settings.max_attempts:
            report.failed += 1
            await outbox.mark_final(
                conn, row.id, self._name, "failed", f"gave up after {row.attempts}: {outcome.describe()}"
            )
        else:
            report.retried += 1
            delay = outbox.backoff_s(row.attempts, self._settings.retry_base_s)
            await outbox.mark_retry(conn, row.id, self._name, outcome.describe(), delay)
            if outcome.verdict == "unknown":  # handed over, then the connection broke
                await conn.execute("UPDATE campaign_recipients SET uncertain = true WHERE id = %s", (row.id,))


def renewable_claims(
    batches: Sequence[Sequence[int]], progress_at: Sequence[float], now: float, lease_s: float
) -> tuple[list[int], int]:
    """A sender's heartbeat over its loops: the rows of each running batch (`batches`, one per
    loop) whose loop started a step (`progress_at`, monotonic seconds) within the last `lease_s`,
    and how many loops are past that. A loop stuck in one batch longer than the lease is not
    renewed, so its rows lapse and are taken back (uncertain), while the other loops keep theirs."""
    held: list[int] = []
    stuck = 0
    for batch, started in zip(batches, progress_at, strict=True):
        if now - started > lease_s:
            stuck += 1
        else:
            held.extend(batch)
    return held, stuck


async def record_rejection(conn: Any, row: Claimed, message_id: str, outcome: Outcome) -> None:
    """A 5xx at RCPT: store the bounce; a permanent address failure (5.1.x, or no enhanced code)
    suppresses the address for the workspace."""
    status = outcome.status or ""
    hard = status.startswith("5.1.") or not status
    await conn.execute(
        "INSERT INTO bounces (workspace_id, campaign_id, recipient_id, recipient_email, bounce_type, status_code, "
        "reply_code, diagnostic_code, action, source_message_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'failed', %s)",
        (row.workspace_id, row.campaign_id, row.id, row.email, "hard" if hard else "blocked", status or None,
         str(outcome.code or ""), outcome.message[:1000], message_id),
    )  # fmt: skip
    if hard:
        await conn.execute(
            "INSERT INTO suppressions (workspace_id, email, reason, source, campaign_id) "
            "VALUES (%s, lower(%s), 'hard_bounce', 'smtp', %s) ON CONFLICT DO NOTHING",
            (row.workspace_id, row.email, row.campaign_id),
        )
