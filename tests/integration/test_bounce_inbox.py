"""Bounces in a synced inbox, end to end: the sending account's Gmail mailbox (the emulator)
receives DSNs for a campaign it sent; syncing the mailbox acts on them for that account's
workspace only, once, whether they arrive before the first full sync or by history later."""

from __future__ import annotations

import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cluster.emulators.smtp.dsn import build_dsn
from cluster.emulators.smtp.rules import Reply
from mail.campaigns import repository
from mail.gmail.account_client import open_account_client
from mail.services import Services
from mail.sync.engine import SyncEngine
from models.campaigns import CampaignInput
from models.tenancy import Principal
from tests.sending_helpers import quiet_outbox, sending_campaign
from tests.sync_helpers import connected_account, emulator_settings, open_test_services

pytestmark = [pytest.mark.integration, pytest.mark.storage]

USER = "news@bounces.test"


async def _campaign(services: Services, account_id: uuid.UUID, addresses: list[str]) -> uuid.UUID:
    """A campaign from the synced account to `addresses`, every message sent."""
    async with services.pool.connection() as conn:
        await conn.set_autocommit(True)
        cursor = await conn.execute(
            "SELECT workspace_id, user_id FROM email_accounts WHERE id = %s", (account_id,)
        )
        workspace_id, user_id = await cursor.fetchone()  # type: ignore[misc]
        owner = Principal(workspace_id=workspace_id, user_id=user_id, role="owner")
        async with conn.cursor().copy("COPY contacts (workspace_id, email) FROM STDIN") as copy:
            for address in addresses:
                await copy.write_row((workspace_id, address))
        campaign = await repository.create_campaign(
            conn, owner, CampaignInput(name="News", subject="News", from_email=USER, body_text="Hi")
        )
        await quiet_outbox(conn)
        await repository.send_now(conn, owner, campaign.id)
        await _mark_sent(conn, campaign.id)
    return campaign.id


async def _mark_sent(conn: Any, campaign_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE campaign_recipients SET state = 'sent', sent_at = now(), "
        "message_id = '<c-' || id || '@bounces.test>' WHERE campaign_id = %s",
        (campaign_id,),
    )


async def _row(database_url: str, campaign_id: uuid.UUID, address: str) -> tuple[str, str | None]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT state, message_id FROM campaign_recipients WHERE campaign_id = %s AND email = %s",
            (campaign_id, address),
        )
        row = await cursor.fetchone()
        assert row is not None
        return row[0], row[1]


async def _suppressed(database_url: str, address: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT count(*) FROM suppressions WHERE email = lower(%s)", (address,))
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


def _dsn(recipient: str, message_id: str | None, reply: Reply) -> bytes:
    original = EmailMessage()
    original["From"] = USER
    original["To"] = recipient
    original["Subject"] = "News"
    if message_id:
        original["Message-ID"] = message_id
    original.set_content("Hi")
    now = time.time()
    return build_dsn(
        original=original.as_bytes(), envelope_from=USER, failures=[(recipient, reply)],
        reporting_mta="mx.receiver.test", arrival=now - 5, now=now,
    )  # fmt: skip


async def _sync(services: Services, account_id: uuid.UUID) -> None:
    client = await open_account_client(services, account_id)
    try:
        await SyncEngine(services, account_id, client, fetch_chunk=100).sync()
    finally:
        await client.close()


async def test_bounces_in_the_synced_inbox_are_acted_on_for_its_workspace_once(
    gmail_emulator_factory: Any, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    emulator = await gmail_emulator_factory()
    emulator.add_user(USER)
    emulator.generate(USER, 40, seed=5)
    services = await open_test_services(
        emulator_settings(emulator.base_url, database_url, redis_url, tmp_path)
    )
    try:
        tag = uuid.uuid4().hex[:6]
        gone, full, fine = f"gone-{tag}@example.com", f"full-{tag}@example.com", f"fine-{tag}@example.com"
        account_id = await connected_account(services, emulator, USER)
        campaign_id = await _campaign(services, account_id, [gone, full, fine])
        # Another workspace sent to the same address: its message did not bounce here.
        async with services.pool.connection() as conn:
            await conn.set_autocommit(True)
            _, elsewhere_id = await sending_campaign(conn, [gone])
            await _mark_sent(conn, elsewhere_id)

        _, gone_message_id = await _row(database_url, campaign_id, gone)
        unknown = Reply(code=550, status="5.1.1", text="user unknown")
        emulator.add_message(USER, _dsn(gone, gone_message_id, unknown))
        await _sync(services, account_id)  # the first full sync reads it

        assert (await _row(database_url, campaign_id, gone))[0] == "bounced"
        assert (await _row(database_url, elsewhere_id, gone))[0] == "sent"
        assert await _suppressed(database_url, gone) == 1  # this workspace's suppression only

        # Later, by history: a soft bounce that quotes no Message-ID, linked by address.
        emulator.add_message(USER, _dsn(full, None, Reply(code=452, status="4.2.2", text="mailbox full")))
        await _sync(services, account_id)
        assert (await _row(database_url, campaign_id, full))[0] == "queued"
        assert (await _row(database_url, campaign_id, fine))[0] == "sent"

        # Everything read again by a full resync changes nothing more.
        async with services.pool.connection() as conn:
            await conn.execute(
                "UPDATE campaign_recipients SET state = 'sent' WHERE campaign_id = %s", (campaign_id,)
            )
            await conn.execute("UPDATE sync_state SET phase = 'pending' WHERE account_id = %s", (account_id,))
            await conn.execute("DELETE FROM emails WHERE account_id = %s", (account_id,))
        await _sync(services, account_id)
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cursor = await conn.execute("SELECT count(*) FROM bounces WHERE campaign_id = %s", (campaign_id,))
            assert await cursor.fetchone() == (2,)
            cursor = await conn.execute(
                "SELECT count(*) FROM emails WHERE account_id = %s AND deleted_at IS NULL", (account_id,)
            )
            assert await cursor.fetchone() == (42,)  # stored again, the two reports with them
        assert (await _row(database_url, campaign_id, gone))[0] == "sent"  # not acted on twice
    finally:
        await services.close()
