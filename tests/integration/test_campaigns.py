"""Contacts and campaigns on real Postgres: CSV import, recipient filters and their count, the
validation rules, the status machine, the outbox it writes, A/B cohorts and local-time sending."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest

from mail import auth, contacts
from mail.campaigns import ab_round, filters, repository
from mail.campaigns.abtest import AbDecision
from mail.errors import Conflict, ValidationError
from models.campaigns import AbTestSettings, CampaignInput, ContactInput, RecipientFilter, VariantInput
from models.settings import CampaignSettings
from models.tenancy import Principal

pytestmark = [pytest.mark.integration, pytest.mark.storage]

Conn = psycopg.AsyncConnection[Any]


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[Conn]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
async def owner(conn: Conn) -> Principal:
    suffix = uuid.uuid4().hex[:8]
    workspace, user = await auth.create_workspace(
        conn, f"Campaigns {suffix}", owner_email=f"o-{suffix}@example.com"
    )
    await conn.execute(
        "INSERT INTO email_accounts (workspace_id, user_id, email, provider, sync_status) "
        "VALUES (%s, %s, 'news@sender.test', 'smtp', 'synced')",
        (workspace.id, user.id),
    )
    return Principal(workspace_id=workspace.id, user_id=user.id, role="owner")


async def _add(conn: Conn, owner: Principal, email: str, *tags: str, **extra: Any) -> uuid.UUID:
    contact_id, _ = await contacts.upsert_contact(
        conn, owner.workspace_id, ContactInput(email=email, tags=list(tags), **extra)
    )
    return contact_id


def _campaign(**fields: Any) -> CampaignInput:
    base: dict[str, Any] = {
        "name": "Launch",
        "subject": "Hello {{firstName|there}}",
        "from_name": "Sender",
        "from_email": "news@sender.test",
        "body_html": "<p>Hi {{firstName|there}}</p>",
        "body_text": "Hi",
    }
    return CampaignInput(**{**base, **fields})


async def _outbox(conn: Conn, campaign_id: uuid.UUID) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(
        "SELECT email, cohort, variant_id, state, send_after FROM campaign_recipients WHERE campaign_id = %s "
        "ORDER BY email",
        (campaign_id,),
    )
    return await cursor.fetchall()


async def test_csv_import_takes_good_rows_and_reports_bad_ones(conn: Conn, owner: Principal) -> None:
    await _add(conn, owner, "known@example.com", first_name="Old")
    text = (
        "email,First Name,company,tags,plan,timeZone\n"
        "ann@example.com,Ann,Acme,customer;engaged,pro,Europe/Paris\n"
        "not-an-address,Bob,,,,\n"
        "KNOWN@example.com,Kim,,customer,,\n"
        "eve@example.com,Eve,,,,Mars/Olympus\n"
        "short@example.com,Sam\n"
        "\n"
        "zoe@example.com,Zoë,,,basic,\n"
    )
    report = await contacts.import_csv(conn, owner.workspace_id, text)
    assert (report.created, report.updated) == (2, 1)
    assert [(error.row, error.error.split(":")[0]) for error in report.rejected] == [
        (3, "email"), (5, "timeZone"), (6, "expected 6 cells, got 2"),
    ]  # fmt: skip
    found = {
        c.email.lower(): c
        for c in await contacts.list_contacts(conn, owner.workspace_id, tag=None, limit=10, offset=0)
    }
    assert set(found) == {"known@example.com", "ann@example.com", "zoe@example.com"}
    assert found["ann@example.com"].tags == ["customer", "engaged"]
    assert found["ann@example.com"].attributes == {"plan": "pro"}
    assert found["ann@example.com"].time_zone == "Europe/Paris"
    assert found["known@example.com"].first_name == "Kim"  # the existing contact, updated
    with pytest.raises(ValidationError, match="no email column"):
        await contacts.import_csv(conn, owner.workspace_id, "name,company\nAnn,Acme\n")


async def test_filters_count_and_exclusions(conn: Conn, owner: Principal) -> None:
    await _add(conn, owner, "a@example.com", "customer", "engaged", attributes={"plan": "pro"})
    await _add(conn, owner, "b@example.com", "customer", attributes={"plan": "free"})
    await _add(conn, owner, "c@example.com", "engaged")
    await _add(conn, owner, "d@example.com", "customer", "engaged")
    await _add(conn, owner, "e@example.com", "customer", "engaged")
    await conn.execute(
        "INSERT INTO suppressions (workspace_id, email, reason) VALUES (%s, 'd@example.com', 'unsubscribe')",
        (owner.workspace_id,),
    )
    await conn.execute(
        "UPDATE contacts SET status = 'bounced' WHERE workspace_id = %s AND email = 'e@example.com'",
        (owner.workspace_id,),
    )

    async def count(
        include: RecipientFilter, exclude: RecipientFilter | None = None
    ) -> tuple[int, int, int, int]:
        counted = await filters.count_recipients(conn, owner.workspace_id, include, exclude)
        return counted.matching, counted.excluded, counted.suppressed, counted.eligible

    assert await count(RecipientFilter(tags=["customer"])) == (4, 0, 2, 2)
    assert await count(RecipientFilter(tags=["customer", "engaged"], tags_match="all")) == (3, 0, 2, 1)
    assert await count(RecipientFilter(tags=["customer", "engaged"])) == (5, 0, 2, 3)
    assert await count(RecipientFilter(attributes={"plan": "pro"})) == (1, 0, 0, 1)
    assert await count(RecipientFilter(tags=["customer"]), RecipientFilter(attributes={"plan": "free"})) == (
        4,
        1,
        2,
        1,
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await count(RecipientFilter(created_after=later)) == (0, 0, 0, 0)


async def test_engagement_windows_count_human_opens_only(conn: Conn, owner: Principal) -> None:
    await _add(conn, owner, "reader@example.com")
    await _add(conn, owner, "proxy@example.com")
    await _add(conn, owner, "quiet@example.com")
    for address, machine in (("reader@example.com", False), ("proxy@example.com", True)):
        cursor = await conn.execute(
            "INSERT INTO tracked_emails (workspace_id, recipient_email) VALUES (%s, %s) RETURNING id",
            (owner.workspace_id, address),
        )
        email_id = (await cursor.fetchone())[0]  # type: ignore[index]
        await conn.execute(
            "INSERT INTO tracking_events (event_id, workspace_id, email_id, event_type, occurred_at, is_machine) "
            "VALUES (%s, %s, %s, 'open', now() - interval '3 days', %s)",
            (uuid.uuid4(), owner.workspace_id, email_id, machine),
        )
    opened = await filters.count_recipients(
        conn, owner.workspace_id, RecipientFilter(has_opened_in_last=7), None
    )
    assert opened.eligible == 1
    too_short = await filters.count_recipients(
        conn, owner.workspace_id, RecipientFilter(has_opened_in_last=2), None
    )
    assert too_short.eligible == 0
    clicked = await filters.count_recipients(
        conn, owner.workspace_id, RecipientFilter(has_clicked_in_last=30), None
    )
    assert clicked.eligible == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": " "}, "name: must not be empty"),
        ({"from_email": "news@@"}, "fromEmail: not an email address"),
        ({"reply_to": "a@b.test\r\nBcc: x@y.test"}, "replyTo: not an email address"),
        ({"is_ab_test": True, "variants": [VariantInput(name="A", percentage=100)]}, "at least 2 variants"),
        ({"is_ab_test": True, "variants": [VariantInput(name="A", percentage=50), VariantInput(name="B", percentage=40)]},
         "percentages must sum to 100, got 90"),
        ({"is_ab_test": True, "variants": [VariantInput(name="A", percentage=50), VariantInput(name="A", percentage=50)]},
         "a name of its own"),
        ({"variants": [VariantInput(name="A", percentage=100)]}, "only an A/B test"),
        ({"recipient_filter": RecipientFilter(has_opened_in_last=0)}, "hasOpenedInLast: expected 1 to 3650"),
        ({"scheduled_at": datetime.now(UTC) - timedelta(minutes=1)}, "scheduledAt: must be in the future"),
        ({"from_email": "someone@elsewhere.test", "scheduled_at": datetime.now(UTC) + timedelta(days=1)},
         "neither a connected account"),
    ],
)  # fmt: skip
async def test_bad_campaigns_are_refused_and_nothing_is_saved(
    conn: Conn, owner: Principal, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        async with conn.transaction():
            await repository.create_campaign(conn, owner, _campaign(**fields))
    assert await repository.list_campaigns(conn, owner, None, 10) == []


async def test_status_machine_and_an_outbox_that_adds_nobody_twice(conn: Conn, owner: Principal) -> None:
    for index in range(5):
        await _add(conn, owner, f"r{index}@example.com", "customer")
    await conn.execute(
        "INSERT INTO suppressions (workspace_id, email, reason) VALUES (%s, 'r4@example.com', 'hard_bounce')",
        (owner.workspace_id,),
    )
    campaign = await repository.create_campaign(
        conn, owner, _campaign(recipient_filter=RecipientFilter(tags=["customer"]))
    )
    assert (campaign.status, campaign.recipient_count) == ("draft", 4)
    updated = await repository.update_campaign(conn, owner, campaign.id, CampaignInput(subject="New subject"))
    assert (updated.subject, updated.name) == ("New subject", "Launch")
    scheduled = await repository.schedule(conn, owner, campaign.id, datetime.now(UTC) + timedelta(days=1))
    assert scheduled.status == "scheduled"
    sending = await repository.send_now(conn, owner, campaign.id)
    assert (sending.status, sending.recipient_count) == ("sending", 4)
    assert [row[0] for row in await _outbox(conn, campaign.id)] == [f"r{i}@example.com" for i in range(4)]
    with pytest.raises(Conflict, match="is sending; only a draft or scheduled campaign can be changed"):
        await repository.update_campaign(conn, owner, campaign.id, CampaignInput(subject="Too late"))
    # Starting again (a scheduler retry, say) adds nobody twice.
    assert await repository.start_sending(conn, await repository.get_campaign(conn, owner, campaign.id)) == 0
    paused = await repository.pause(conn, owner, campaign.id, "bounce rate 7% over 5%")
    assert (paused.status, paused.pause_reason) == ("paused", "bounce rate 7% over 5%")
    assert (await repository.resume(conn, owner, campaign.id)).status == "sending"
    cancelled = await repository.cancel(conn, owner, campaign.id)
    assert cancelled.status == "cancelled"
    assert {row[3] for row in await _outbox(conn, campaign.id)} == {"cancelled"}
    with pytest.raises(Conflict):
        await repository.resume(conn, owner, campaign.id)


async def test_another_users_campaign_is_forbidden_and_another_workspace_does_not_exist(
    conn: Conn, owner: Principal
) -> None:
    from mail.errors import Forbidden, NotFound

    campaign = await repository.create_campaign(conn, owner, _campaign())
    member = await auth.create_user(conn, owner.workspace_id, f"m-{uuid.uuid4().hex[:6]}@example.com")
    as_member = Principal(workspace_id=owner.workspace_id, user_id=member.id, role="member")
    with pytest.raises(Forbidden):
        await repository.get_campaign(conn, as_member, campaign.id)
    stranger = Principal(workspace_id=uuid.uuid4(), user_id=uuid.uuid4(), role="owner")
    with pytest.raises(NotFound):
        await repository.cancel(conn, stranger, campaign.id)


async def test_ab_test_cohorts_follow_the_percentages_and_the_rest_waits(
    conn: Conn, owner: Principal
) -> None:
    for index in range(200):
        await _add(conn, owner, f"ab{index:03}@example.com")
    variants = [
        VariantInput(name="A", percentage=50, subject="A"),
        VariantInput(name="B", percentage=50, subject="B"),
    ]
    campaign = await repository.create_campaign(
        conn, owner, _campaign(is_ab_test=True, variants=variants, ab_test=AbTestSettings(test_percentage=20))
    )
    await repository.send_now(conn, owner, campaign.id)
    rows = await _outbox(conn, campaign.id)
    test = [row for row in rows if row[1] == "test"]
    rest = [row for row in rows if row[1] == "rest"]
    assert (len(test), len(rest)) == (40, 160)
    by_variant: dict[Any, int] = {}
    for row in test:
        by_variant[row[2]] = by_variant.get(row[2], 0) + 1
    assert sorted(by_variant.values()) == [20, 20]
    assert {row[3] for row in test} == {"queued"}
    assert {(row[2], row[3]) for row in rest} == {(None, "held")}  # no variant until the decision


async def _sent_ab_test(
    conn: Conn, owner: Principal, opens: dict[str, int], *, wait_hours: float = 1.0
) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    """An A/B test of 400 recipients (half of them the test cohort, 100 per variant) whose test
    rows were sent two hours ago; `opens[name]` of each variant's test recipients opened as
    humans, and 50 more of variant A's only through an image proxy (machine opens)."""
    suffix = uuid.uuid4().hex[:6]
    for index in range(400):
        await _add(conn, owner, f"abd{index:03}-{suffix}@example.com", f"ab-{suffix}")
    variants = [
        VariantInput(name="A", percentage=50, subject="A"),
        VariantInput(name="B", percentage=50, subject="B"),
    ]
    campaign = await repository.create_campaign(conn, owner, _campaign(
        is_ab_test=True, variants=variants, ab_test=AbTestSettings(test_percentage=50, wait_hours=wait_hours),
        recipient_filter=RecipientFilter(tags=[f"ab-{suffix}"])))  # fmt: skip
    await repository.send_now(conn, owner, campaign.id)
    await conn.execute(
        "UPDATE campaign_recipients SET state = 'sent', sent_at = now() - interval '2 hours' "
        "WHERE campaign_id = %s AND cohort = 'test'",
        (campaign.id,),
    )
    names = {
        variant.name: variant.id for variant in (await repository.load_campaign(conn, campaign.id)).variants
    }
    for name, variant_id in names.items():
        cursor = await conn.execute(
            "SELECT id, email FROM campaign_recipients WHERE campaign_id = %s AND variant_id = %s ORDER BY id",
            (campaign.id, variant_id),
        )
        for index, (recipient_id, email) in enumerate(await cursor.fetchall()):
            human = index < opens[name]
            machine = name == "A" and opens[name] <= index < opens[name] + 50
            cursor = await conn.execute(
                "INSERT INTO tracked_emails (workspace_id, campaign_id, variant_id, recipient_id, recipient_email) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (owner.workspace_id, campaign.id, variant_id, recipient_id, email),
            )
            (email_id,) = await cursor.fetchone()  # type: ignore[misc]
            if human or machine:
                await conn.execute(
                    "INSERT INTO email_engagement (email_id, workspace_id, campaign_id, opens, human_opens) "
                    "VALUES (%s, %s, %s, 1, %s)",
                    (email_id, owner.workspace_id, campaign.id, 1 if human else 0),
                )
    return campaign.id, names


async def test_an_ab_test_is_decided_after_its_wait_on_human_opens_and_the_rest_gets_the_winner(
    conn: Conn, owner: Principal
) -> None:
    campaign_id, names = await _sent_ab_test(conn, owner, {"A": 10, "B": 40})
    decided = await ab_round.decide_due(conn, CampaignSettings())
    decision = decided[campaign_id]
    assert decision.winner == str(names["B"]) and decision.significant
    assert [(v.sent, v.successes) for v in decision.variants] == [(100, 10), (100, 40)]  # proxy opens ignored
    campaign = await repository.load_campaign(conn, campaign_id)
    assert campaign.winning_variant == names["B"]
    assert campaign.ab_decision is not None and campaign.ab_decision["significant"] is True
    assert {v.name: v.status for v in campaign.variants} == {"A": "loser", "B": "winner"}
    rest = [row for row in await _outbox(conn, campaign_id) if row[1] == "rest"]
    assert len(rest) == 200 and {(row[2], row[3]) for row in rest} == {(names["B"], "queued")}
    assert campaign_id not in await ab_round.decide_due(conn, CampaignSettings())  # decided once


async def test_an_ab_test_without_significance_uses_the_fallback_or_waits(
    conn: Conn, owner: Principal
) -> None:
    close, names = await _sent_ab_test(conn, owner, {"A": 20, "B": 23})
    decision = (await ab_round.decide_due(conn, CampaignSettings()))[close]
    assert decision.winner == str(names["B"]) and not decision.significant  # "highest"
    assert decision.reason and decision.fallback == "highest"

    held, _ = await _sent_ab_test(conn, owner, {"A": 20, "B": 23})
    decision = (await ab_round.decide_due(conn, CampaignSettings(ab_fallback="none")))[held]
    assert decision.winner is None
    assert {row[3] for row in await _outbox(conn, held) if row[1] == "rest"} == {"held"}

    waiting, _ = await _sent_ab_test(conn, owner, {"A": 10, "B": 40}, wait_hours=3)
    assert waiting not in await ab_round.decide_due(conn, CampaignSettings())  # sent 2 hours ago
    await conn.execute("UPDATE campaign_recipients SET state = 'queued' WHERE id = (SELECT min(id) FROM "
                       "campaign_recipients WHERE campaign_id = %s AND cohort = 'test')", (waiting,))  # fmt: skip
    await conn.execute(
        "UPDATE campaigns SET ab_test = ab_test || '{\"waitHours\": 0}' WHERE id = %s", (waiting,)
    )
    assert waiting not in await ab_round.decide_due(conn, CampaignSettings())  # a test row is still to send


async def test_a_person_chooses_the_winner_the_method_could_not(conn: Conn, owner: Principal) -> None:
    held, names = await _sent_ab_test(conn, owner, {"A": 20, "B": 23})
    settings = CampaignSettings(ab_fallback="none")
    assert (await ab_round.decide_due(conn, settings))[held].winner is None  # the rest stays held
    campaign = await ab_round.choose_winner(conn, settings, owner, held, names["A"])
    assert campaign.winning_variant == names["A"] and campaign.ab_decision is not None
    decision = msgspec.convert(campaign.ab_decision, AbDecision)  # as stored, camelCase
    assert decision.winner == str(names["A"]) and decision.chosen_by == str(owner.user_id)
    assert not decision.significant
    assert str(decision.reason).startswith("chosen by hand; the method found no winner")
    assert [(v.sent, v.successes) for v in decision.variants] == [(100, 20), (100, 23)]
    assert {v.name: v.status for v in campaign.variants} == {"A": "winner", "B": "loser"}
    rest = [row for row in await _outbox(conn, held) if row[1] == "rest"]
    assert len(rest) == 200 and {(row[2], row[3]) for row in rest} == {(names["A"], "queued")}
    with pytest.raises(Conflict, match="has its winner already: A"):
        await ab_round.choose_winner(conn, settings, owner, held, names["B"])
    assert held not in await ab_round.decide_due(conn, settings)


async def test_a_winner_chosen_early_ends_the_test_and_bad_choices_change_nothing(
    conn: Conn, owner: Principal
) -> None:
    early, names = await _sent_ab_test(conn, owner, {"A": 10, "B": 40}, wait_hours=3)  # not due for an hour
    settings = CampaignSettings()
    with pytest.raises(ValidationError, match="is not a variant of campaign") as refused:
        await ab_round.choose_winner(conn, settings, owner, early, uuid.uuid4())
    assert refused.value.field == "variantId" and "A (" in str(refused.value)
    await repository.pause(conn, owner, early)
    campaign = await ab_round.choose_winner(conn, settings, owner, early, names["A"])  # over the method's B
    assert campaign.status == "paused" and campaign.winning_variant == names["A"]
    assert campaign.ab_decision is not None
    assert campaign.ab_decision["reason"] == f"chosen by hand over {names['B']}, which the method found best"
    rest = {(row[2], row[3]) for row in await _outbox(conn, early) if row[1] == "rest"}
    assert rest == {(names["A"], "queued")}

    plain = await repository.create_campaign(conn, owner, _campaign())
    await repository.send_now(conn, owner, plain.id)
    with pytest.raises(Conflict, match="not an A/B test"):
        await ab_round.choose_winner(conn, settings, owner, plain.id, names["A"])
    variants = [VariantInput(name="A", percentage=50), VariantInput(name="B", percentage=50)]
    draft = await repository.create_campaign(conn, owner, _campaign(is_ab_test=True, variants=variants))
    with pytest.raises(Conflict, match="only a sending or paused campaign can be given a winner"):
        await ab_round.choose_winner(conn, settings, owner, draft.id, draft.variants[0].id)
    assert (await repository.load_campaign(conn, draft.id)).ab_decision is None


async def test_local_time_sending_is_due_at_the_hour_in_each_zone(conn: Conn, owner: Principal) -> None:
    await _add(conn, owner, "paris@example.com", time_zone="Europe/Paris")
    await _add(conn, owner, "ny@example.com", time_zone="America/New_York")
    await _add(conn, owner, "nowhere@example.com")
    at = (datetime.now(UTC) + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
    campaign = await repository.create_campaign(
        conn, owner, _campaign(send_at_local_time=True, scheduled_at=at)
    )
    assert campaign.status == "scheduled"
    await repository.send_now(conn, owner, campaign.id)
    due = {row[0]: row[4] for row in await _outbox(conn, campaign.id)}
    from zoneinfo import ZoneInfo

    wall = at.replace(tzinfo=None)
    assert due["paris@example.com"] == wall.replace(tzinfo=ZoneInfo("Europe/Paris"))
    assert due["ny@example.com"] == wall.replace(tzinfo=ZoneInfo("America/New_York"))
    assert due["nowhere@example.com"] == at
