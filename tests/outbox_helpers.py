"""The session's database is shared by every test: outbox tests start from an outbox that holds
nothing else due, so other tests' unfinished campaigns reach neither their claims nor their sinks."""

from __future__ import annotations

from typing import Any


async def quiet_outbox(conn: Any) -> None:
    await conn.execute(
        "UPDATE campaign_recipients SET state = 'cancelled' WHERE state IN ('held', 'queued', 'sending')"
    )
