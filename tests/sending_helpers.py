"""Shared set-up of the sending tests: a sending campaign in a workspace of its own, a real SMTP
server (aiosmtpd) on a free port, and a quiet outbox.

The session's database is shared by every test: sending tests start from an outbox that holds
nothing else due, so other tests' unfinished campaigns reach neither their claims nor their sinks.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from mail import auth
from mail.campaigns import repository
from mail.config import load_settings
from mail.services import Services, open_services
from models.campaigns import CampaignInput
from models.tenancy import Principal
from tests.fix_serve import free_port

FROM_EMAIL = "news@sender.test"


async def quiet_outbox(conn: Any) -> None:
    await conn.execute(
        "UPDATE campaign_recipients SET state = 'cancelled' WHERE state IN ('held', 'queued', 'sending')"
    )


async def sending_campaign(conn: Any, addresses: list[str]) -> tuple[Principal, uuid.UUID]:
    """A workspace with a connected sending account, these contacts, and a campaign to all of
    them, started (its outbox written); `conn` must be in autocommit mode."""
    suffix = uuid.uuid4().hex[:8]
    workspace, user = await auth.create_workspace(
        conn, f"Send {suffix}", owner_email=f"o-{suffix}@example.com"
    )
    owner = Principal(workspace_id=workspace.id, user_id=user.id, role="owner")
    await conn.execute(
        "INSERT INTO email_accounts (workspace_id, user_id, email, provider, sync_status) "
        "VALUES (%s, %s, %s, 'smtp', 'synced')",
        (workspace.id, user.id, FROM_EMAIL),
    )
    async with conn.cursor().copy("COPY contacts (workspace_id, email) FROM STDIN") as copy:
        for address in addresses:
            await copy.write_row((workspace.id, address))
    campaign = await repository.create_campaign(
        conn,
        owner,
        CampaignInput(name="Send", subject="News", from_name="Us", from_email=FROM_EMAIL, body_text="Hi"),
    )
    await quiet_outbox(conn)
    await repository.send_now(conn, owner, campaign.id)
    return owner, campaign.id


@contextlib.asynccontextmanager
async def sending_services(
    database_url: str, redis_url: str, data_dir: Path, **environ: str
) -> AsyncIterator[Services]:
    """Services for a sender in this process, its rate limits out of the way; `environ` adds
    MAILRAY_ variables."""
    settings = load_settings(
        environ={
            "MAILRAY_DATABASE__URL": database_url,
            "MAILRAY_REDIS__URL": redis_url,
            "MAILRAY_APP__DATA_DIR": str(data_dir),
            "MAILRAY_SENDING__GLOBAL_RATE_PER_S": "10000",
            "MAILRAY_SENDING__PER_DOMAIN_RATE_PER_S": "10000",
            **environ,
        }
    )
    opened = await open_services(settings)
    try:
        yield opened
    finally:
        await opened.close()


@contextlib.contextmanager
def smtp_server(handler: object) -> Iterator[int]:
    """aiosmtpd with `handler`'s hooks on a free port; yields the port."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
