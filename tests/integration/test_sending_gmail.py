"""A campaign with an accountId goes out through that Gmail account's API (users.messages.send on
the Gmail emulator, with the account's stored tokens), under the account's daily cap in Redis;
what the cap refuses waits in the queue unsent. Real Postgres and Redis; the emulator stands in
for Google."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from email import message_from_bytes
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest

from mail.campaigns import repository
from mail.errors import ValidationError
from mail.sending.campaign_compose import CampaignComposer
from mail.sending.sender import Sender
from mail.sending.transport import AccountTransports, SmtpTransport
from mail.services import Services
from models.campaigns import CampaignInput
from models.tenancy import Principal
from tests.sending_helpers import quiet_outbox
from tests.sync_helpers import connected_account, emulator_settings, open_test_services

pytestmark = [pytest.mark.integration, pytest.mark.storage]

USER = "sales@gmail-sender.test"


class Mailbox(NamedTuple):
    emulator: Any
    services: Services
    account_id: uuid.UUID


@pytest.fixture
async def gmail_sender(
    gmail_emulator_factory: Any, database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Mailbox]]]:
    """`await gmail_sender(**MAILRAY_variables)`: the emulator with USER's mailbox, services aimed
    at it, and USER connected as an account of a new workspace (closed after the test)."""
    opened: list[Services] = []

    async def make(**extra: str) -> Mailbox:
        emulator = await gmail_emulator_factory()
        emulator.add_user(USER)
        services = await open_test_services(
            emulator_settings(emulator.base_url, database_url, redis_url, tmp_path, **extra)
        )
        opened.append(services)
        return Mailbox(emulator, services, await connected_account(services, emulator, USER))

    yield make
    for services in opened:
        await services.close()


async def _owner(conn: Any, account_id: uuid.UUID) -> Principal:
    cursor = await conn.execute(
        "SELECT workspace_id, user_id FROM email_accounts WHERE id = %s", (account_id,)
    )
    row = await cursor.fetchone()
    assert row is not None
    return Principal(workspace_id=row[0], user_id=row[1], role="owner")


async def _send_campaign(services: Services, account_id: uuid.UUID, addresses: list[str]) -> uuid.UUID:
    async with services.pool.connection() as conn:
        await conn.set_autocommit(True)
        owner = await _owner(conn, account_id)
        async with conn.cursor().copy("COPY contacts (workspace_id, email, first_name) FROM STDIN") as copy:
            for index, address in enumerate(addresses):
                await copy.write_row((owner.workspace_id, address, f"R{index}"))
        campaign = await repository.create_campaign(conn, owner, CampaignInput(
            name="Through Gmail", subject="Hello {{firstName}}", from_name="Sales", from_email=USER,
            body_html="<p>Hi {{firstName}}</p>", account_id=account_id))  # fmt: skip
        await quiet_outbox(conn)
        await repository.send_now(conn, owner, campaign.id)
    return campaign.id


async def _drain(services: Services) -> None:
    relay = SmtpTransport("127.0.0.1", 9, connections=1)  # never used: every row has an account
    accounts = AccountTransports(services)
    sender = Sender(services, f"gmail-{uuid.uuid4().hex[:6]}", relay, CampaignComposer(services.settings,
                    services.keyring), accounts)  # fmt: skip
    try:
        while (await sender.step()).claimed:
            pass
    finally:
        await accounts.close()
        await relay.close()


async def _rows(database_url: str, campaign_id: uuid.UUID) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT email, state, message_id, provider_message_id, attempts, last_error, "
            "send_after > now() + interval '5 seconds' FROM campaign_recipients WHERE campaign_id = %s ORDER BY email",
            (campaign_id,),
        )
        return await cursor.fetchall()


async def test_a_campaign_with_an_account_is_sent_through_its_gmail_api_once_each(
    gmail_sender: Callable[..., Awaitable[Mailbox]], database_url: str
) -> None:
    emulator, services, account_id = await gmail_sender()
    addresses = [f"r{index}-{uuid.uuid4().hex[:6]}@example.org" for index in range(6)]
    campaign_id = await _send_campaign(services, account_id, addresses)
    await _drain(services)

    rows = await _rows(database_url, campaign_id)
    assert {row[1] for row in rows} == {"sent"}
    sent = {
        message_from_bytes(emulator.raw(USER, gmail_id))["Message-ID"]: (gmail_id, labels["labelIds"])
        for gmail_id, labels in emulator.state(USER).items()
    }
    assert len(sent) == len(addresses)  # one message each, in the account's sent mail
    for _, _, message_id, provider_id, *_ in rows:
        assert sent[message_id] == (provider_id, ["SENT"])
    one = message_from_bytes(emulator.raw(USER, rows[0][3]))
    assert one["To"] == f"R0 <{addresses[0]}>" and one["Subject"] == "Hello R0"
    assert one["X-Campaign-ID"] == str(campaign_id) and one["List-Unsubscribe-Post"]

    # Two rows come back uncertain, as after a sender died between Gmail's answer and the record.
    # One message really went out: the search of the sent mail finds it, and it is not sent again.
    # The other is gone from the mailbox (as if it never went out): it is sent once more.
    (first, second) = rows[0][0], rows[1][0]
    emulator.delete_message(USER, rows[1][3])
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE campaign_recipients SET state = 'queued', uncertain = true, claimed_by = NULL "
            "WHERE campaign_id = %s AND email IN (%s, %s)",
            (campaign_id, first, second),
        )
        await conn.execute("UPDATE campaigns SET status = 'sending' WHERE id = %s", (campaign_id,))
    await _drain(services)
    assert {row[1] for row in await _rows(database_url, campaign_id)} == {"sent"}
    resent = [message_from_bytes(emulator.raw(USER, gmail_id))["To"] for gmail_id in emulator.state(USER)]
    assert len(resent) == len(addresses) and sorted(resent).count(f"R1 <{second}>") == 1


async def test_the_accounts_daily_cap_holds_the_rest_back_unsent(
    gmail_sender: Callable[..., Awaitable[Mailbox]], database_url: str
) -> None:
    emulator, services, account_id = await gmail_sender(MAILRAY_SENDING__GMAIL_DAILY_CAP="3")
    campaign_id = await _send_campaign(services, account_id, [f"c{index}@example.org" for index in range(5)])
    await _drain(services)

    rows = await _rows(database_url, campaign_id)
    assert sorted(row[1] for row in rows) == ["queued", "queued", "sent", "sent", "sent"]
    assert len(emulator.state(USER)) == 3
    for _, state, _, _, attempts, error, later in rows:
        if state == "queued":  # back in the queue, unsent, its attempt given back, not due yet
            assert attempts == 0 and later and "daily cap (3) is spent" in error


async def test_an_account_must_be_a_gmail_account_sending_as_the_from_address(
    gmail_sender: Callable[..., Awaitable[Mailbox]],
) -> None:
    _, services, account_id = await gmail_sender()
    async with services.pool.connection() as conn:
        await conn.set_autocommit(True)
        owner = await _owner(conn, account_id)
        cursor = await conn.execute(
            "INSERT INTO email_accounts (workspace_id, user_id, email, provider, sync_status) "
            "VALUES (%s, %s, 'news@relay.test', 'smtp', 'synced') RETURNING id",
            (owner.workspace_id, owner.user_id),
        )
        relay_row = await cursor.fetchone()
        assert relay_row is not None

        def draft(from_email: str, account: uuid.UUID) -> CampaignInput:
            return CampaignInput(name="N", subject="S", from_name="F", from_email=from_email, body_text="Hi",
                                 account_id=account)  # fmt: skip

        with pytest.raises(ValidationError, match="no account"):  # a clear error, not a foreign key's
            await repository.create_campaign(conn, owner, draft(USER, uuid.uuid4()))
        for from_email, account, message in [
            ("news@relay.test", account_id, "fromEmail must be " + USER),
            ("news@relay.test", relay_row[0], "only a Gmail account sends through its API"),
        ]:
            campaign = await repository.create_campaign(conn, owner, draft(from_email, account))
            with pytest.raises(ValidationError, match=message):
                await repository.send_now(conn, owner, campaign.id)
            assert (await repository.load_campaign(conn, campaign.id)).status == "draft"
