"""The outbox on real Postgres: concurrent claimers never share a row, suppression is honoured
at claim time, a dead sender's rows come back uncertain, retries back off, campaigns finish."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from mail.sending import outbox
from models.tenancy import Principal
from tests.sending_helpers import sending_campaign

pytestmark = [pytest.mark.integration, pytest.mark.storage]

Conn = psycopg.AsyncConnection[Any]
RECIPIENTS = 300


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[Conn]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        yield connection


async def _sending_campaign(conn: Conn, recipients: int = RECIPIENTS) -> tuple[Principal, uuid.UUID]:
    return await sending_campaign(conn, [f"r{index:04}@example.com" for index in range(recipients)])


async def _states(conn: Conn, campaign_id: uuid.UUID) -> dict[str, int]:
    cursor = await conn.execute(
        "SELECT state, count(*) FROM campaign_recipients WHERE campaign_id = %s GROUP BY state",
        (campaign_id,),
    )
    return {state: count for state, count in await cursor.fetchall()}


async def test_concurrent_claimers_never_share_a_row(conn: Conn, database_url: str) -> None:
    _, campaign_id = await _sending_campaign(conn)

    async def claimer(name: str) -> list[int]:
        got: list[int] = []
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as own:
            while True:
                rows = await outbox.claim(own, name, 7)
                rows = [row for row in rows if row.campaign_id == campaign_id]
                if not rows:
                    return got
                got += [row.id for row in rows]

    claimed = await asyncio.gather(*(claimer(f"sender-{n}") for n in range(4)))
    every = [row_id for rows in claimed for row_id in rows]
    assert len(every) == len(set(every)) == RECIPIENTS
    assert all(rows for rows in claimed)  # the work was shared
    assert await _states(conn, campaign_id) == {"sending": RECIPIENTS}


async def test_suppressed_after_start_is_never_claimed(conn: Conn) -> None:
    owner, campaign_id = await _sending_campaign(conn, recipients=5)
    await conn.execute(
        "INSERT INTO suppressions (workspace_id, email, reason) VALUES (%s, 'r0002@example.com', 'unsubscribe')",
        (owner.workspace_id,),
    )
    rows = [row for row in await outbox.claim(conn, "s", 100) if row.campaign_id == campaign_id]
    assert sorted(row.email for row in rows) == [f"r{i:04}@example.com" for i in (0, 1, 3, 4)]
    assert await _states(conn, campaign_id) == {"sending": 4, "suppressed": 1}


async def test_a_dead_senders_rows_come_back_uncertain_and_the_campaign_finishes(conn: Conn) -> None:
    _, campaign_id = await _sending_campaign(conn, recipients=6)
    rows = [row for row in await outbox.claim(conn, "dead", 100) if row.campaign_id == campaign_id]
    assert len(rows) == 6
    assert await outbox.mark_sent(conn, rows[0].id, "dead", "<m0@x>", None)
    await conn.execute(
        "UPDATE campaign_recipients SET claimed_at = now() - interval '10 minutes' WHERE campaign_id = %s",
        (campaign_id,),
    )
    assert await outbox.take_back(conn, lease_s=60) == 5
    again = [row for row in await outbox.claim(conn, "alive", 100) if row.campaign_id == campaign_id]
    assert len(again) == 5 and all(row.uncertain and row.attempts == 2 for row in again)
    # The dead sender's late report does not overwrite the new owner's claim.
    assert not await outbox.mark_sent(conn, again[0].id, "dead", "<late@x>", None)
    await outbox.mark_retry(conn, again[0].id, "alive", "451 4.3.0 busy", delay_s=3600)
    await outbox.mark_final(conn, again[1].id, "alive", "bounced", "550 5.1.1 user unknown")
    for row in again[2:]:
        assert await outbox.mark_sent(conn, row.id, "alive", f"<m{row.id}@x>", None)
    assert campaign_id not in await outbox.finish_campaigns(conn)  # one is still queued (retry)
    await conn.execute("UPDATE campaign_recipients SET send_after = now() WHERE id = %s", (again[0].id,))
    retried = [row for row in await outbox.claim(conn, "alive", 100) if row.campaign_id == campaign_id]
    assert [row.id for row in retried] == [again[0].id]
    await outbox.mark_sent(conn, again[0].id, "alive", "<m@x>", None)
    assert campaign_id in await outbox.finish_campaigns(conn)
    await outbox.refresh_counts(conn, {campaign_id})
    cursor = await conn.execute("SELECT status, sent_count FROM campaigns WHERE id = %s", (campaign_id,))
    assert await cursor.fetchone() == ("sent", 5)
    assert await _states(conn, campaign_id) == {"sent": 5, "bounced": 1}


async def test_the_heartbeat_renews_the_running_batch_only(conn: Conn) -> None:
    """A claim an earlier incarnation of the same sender committed (Ray had already replaced it)
    is not the running batch's: the heartbeat leaves it to lapse, and it comes back uncertain."""
    _, campaign_id = await _sending_campaign(conn, recipients=4)
    orphaned = [row for row in await outbox.claim(conn, "sender-0", 2) if row.campaign_id == campaign_id]
    running = [row for row in await outbox.claim(conn, "sender-0", 2) if row.campaign_id == campaign_id]
    assert len(orphaned) == len(running) == 2
    await conn.execute(
        "UPDATE campaign_recipients SET claimed_at = now() - interval '10 minutes' WHERE campaign_id = %s",
        (campaign_id,),
    )
    assert await outbox.renew(conn, "sender-0", [row.id for row in running]) == 2
    assert await outbox.renew(conn, "sender-1", [row.id for row in running]) == 0
    assert await outbox.renew(conn, "sender-0", []) == 0
    assert await outbox.take_back(conn, lease_s=60) == 2
    cursor = await conn.execute(
        "SELECT id, state, uncertain FROM campaign_recipients WHERE campaign_id = %s ORDER BY id",
        (campaign_id,),
    )
    states = {row_id: (state, uncertain) for row_id, state, uncertain in await cursor.fetchall()}
    assert {states[row.id] for row in orphaned} == {("queued", True)}
    assert {states[row.id] for row in running} == {("sending", False)}


async def test_the_batch_fence_reads_fresh_claims_and_renews_old_ones(conn: Conn) -> None:
    """A claim made moments ago is only read (no row rewritten); one past the freshness bound is
    renewed; a row another sender holds, or one taken back, is not this sender's to send."""
    _, campaign_id = await _sending_campaign(conn, recipients=4)
    rows = [row.id for row in await outbox.claim(conn, "sender-0", 4) if row.campaign_id == campaign_id]
    fresh, old, taken, other = rows
    await conn.execute("UPDATE campaign_recipients SET claimed_at = now() - interval '100 seconds' WHERE id = %s",
                       (old,))  # fmt: skip
    await conn.execute(
        "UPDATE campaign_recipients SET state = 'queued', claimed_by = NULL WHERE id = %s", (taken,)
    )
    await conn.execute("UPDATE campaign_recipients SET claimed_by = 'sender-1' WHERE id = %s", (other,))

    async def versions() -> dict[int, tuple[str, float]]:
        cursor = await conn.execute(
            "SELECT id, xmin::text, extract(epoch FROM now() - claimed_at)::float FROM campaign_recipients "
            "WHERE id = ANY(%s)",
            ([fresh, old],),
        )
        return {row_id: (xmin, age) for row_id, xmin, age in await cursor.fetchall()}

    before = await versions()
    assert await outbox.fence_fresh(conn, rows, "sender-0", fresh_s=90) == {fresh, old}
    after = await versions()
    assert after[fresh][0] == before[fresh][0]  # read, not rewritten
    assert after[old][0] != before[old][0] and after[old][1] < 10  # renewed


def test_backoff_grows_and_stays_within_its_cap() -> None:
    for attempts in range(1, 8):
        for _ in range(50):
            assert 0 <= outbox.backoff_s(attempts, 30) <= 30 * 2 ** (attempts - 1)


async def test_a_campaign_over_its_bounce_rate_pauses_itself_with_the_reason(conn: Conn) -> None:
    from mail.sending import guardrails
    from models.settings import SendingSettings

    _, campaign_id = await _sending_campaign(conn, recipients=250)
    limits = SendingSettings(guardrail_min_sample=200, max_bounce_rate=0.05)
    rows = [row for row in await outbox.claim(conn, "g", 1000) if row.campaign_id == campaign_id]
    for row in rows[:180]:
        await outbox.mark_sent(conn, row.id, "g", f"<{row.id}@x>", None)
    for row in rows[180:190]:
        await outbox.mark_final(conn, row.id, "g", "bounced", "550 5.1.1")
    assert await guardrails.enforce(conn, limits) == []  # 190 attempted: below the minimum sample
    for row in rows[190:202]:
        await outbox.mark_final(conn, row.id, "g", "bounced", "550 5.1.1")
    trips = [trip for trip in await guardrails.enforce(conn, limits) if trip.campaign_id == campaign_id]
    assert [trip.reason for trip in trips] == ["bounce rate 10.9% over 5.0% (22 of 202 attempted deliveries)"]
    cursor = await conn.execute("SELECT status, pause_reason FROM campaigns WHERE id = %s", (campaign_id,))
    assert await cursor.fetchone() == ("paused", "guardrail: " + trips[0].reason)
    # A paused campaign's rows are not claimed.
    await outbox.release(conn, "g")
    assert [row for row in await outbox.claim(conn, "h", 1000) if row.campaign_id == campaign_id] == []


def test_complaints_are_judged_against_sent_mail() -> None:
    from mail.sending.guardrails import judge
    from models.settings import SendingSettings

    limits = SendingSettings(guardrail_min_sample=100, max_complaint_rate=0.003)
    assert judge(sent=1000, bounced=0, complaints=3, limits=limits) is None
    assert (
        judge(sent=1000, bounced=0, complaints=4, limits=limits)
        == "complaint rate 0.40% over 0.30% (4 of 1000 sent)"
    )
    assert judge(sent=50, bounced=40, complaints=0, limits=limits) is None  # too few to judge


async def _sent_counts(conn: Conn, campaign_id: uuid.UUID) -> tuple[int, list[int]]:
    cursor = await conn.execute("SELECT sent_count FROM campaigns WHERE id = %s", (campaign_id,))
    row = await cursor.fetchone()
    assert row is not None
    cursor = await conn.execute(
        "SELECT sent_count FROM campaign_variants WHERE campaign_id = %s ORDER BY name", (campaign_id,)
    )
    return int(row[0]), [int(count) for (count,) in await cursor.fetchall()]


async def test_sent_counts_move_by_batch_without_a_recount(conn: Conn) -> None:
    """At the end of each batch, campaigns.sent_count and the variants' grow by what the batch
    sent; a late report of a sender whose claim lapsed counts nothing, nor does another sender's
    batch; the recount when the campaign finishes agrees."""
    owner, campaign_id = await _sending_campaign(conn, recipients=12)
    variants = []
    for name in ("A", "B"):
        cursor = await conn.execute(
            "INSERT INTO campaign_variants (campaign_id, workspace_id, name, percentage) "
            "VALUES (%s, %s, %s, 50) RETURNING id",
            (campaign_id, owner.workspace_id, name),
        )
        variants.append((await cursor.fetchone())[0])  # type: ignore[index]
    first = [row for row in await outbox.claim(conn, "s", 8) if row.campaign_id == campaign_id]
    second = [row for row in await outbox.claim(conn, "t", 100) if row.campaign_id == campaign_id]
    assert (len(first), len(second)) == (8, 4)
    # Variant A for the first four rows, B for the next four, none for the rest.
    for index, row in enumerate(first):
        await conn.execute(
            "UPDATE campaign_recipients SET variant_id = %s WHERE id = %s", (variants[index // 4], row.id)
        )
    assert await outbox.mark_sent_many(conn, "s", [(row.id, f"<{row.id}@x>", None) for row in first[:6]]) == 6
    assert await outbox.mark_sent(conn, first[6].id, "s", "<6@x>", None)
    assert not await outbox.mark_sent(conn, first[7].id, "t", "<7@x>", None)  # not t's row
    assert await _sent_counts(conn, campaign_id) == (0, [0, 0])  # counted when the batch ends
    await outbox.count_batch(conn, "t", [row.id for row in first])  # rows of s: nothing for t
    await outbox.count_batch(conn, "s", [row.id for row in first])
    assert await _sent_counts(conn, campaign_id) == (7, [4, 3])
    await outbox.mark_final(conn, first[7].id, "s", "failed", "550 no")
    assert await outbox.mark_sent_many(conn, "t", [(row.id, f"<{row.id}@x>", None) for row in second]) == 4
    await outbox.count_batch(conn, "t", [row.id for row in second])
    assert await _sent_counts(conn, campaign_id) == (11, [4, 3])
    assert campaign_id in await outbox.finish_campaigns(conn)
    await outbox.refresh_counts(conn, {campaign_id})
    assert await _sent_counts(conn, campaign_id) == (11, [4, 3])
