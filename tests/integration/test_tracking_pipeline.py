"""Tracking endpoints in process (bare ASGI, real Postgres and Redis) through the event writer:
pixel, click redirect, one-click unsubscribe, bad tokens, the spool when Redis is away, and
redelivery after a writer crash."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mail.services import Services
from mail.tracking.intake import EventIntake
from mail.tracking.records import TRACKING_STREAM, WRITER_GROUP
from mail.tracking.spool import Spool
from mail.tracking.tokens import TokenKind, TokenSigner, TrackingToken
from mail.tracking.writer import EventWriter, ensure_group
from serve.tracking.endpoints import GIF
from tests.tracking_helpers import (
    LINKS,
    client_for,
    drain,
    endpoints_for,
    fresh_streams,
    make_tracked_email,
    make_workspace,
    open_tracking_services,
    urls,
)

pytestmark = [pytest.mark.integration, pytest.mark.storage]

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"


@pytest.fixture
async def services(database_url: str, redis_url: str, tmp_path: Path) -> Any:
    opened = await open_tracking_services(database_url, redis_url, tmp_path)
    await fresh_streams(opened)
    yield opened
    await opened.close()


async def rows(services: Services, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with services.pool.connection() as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()


async def test_pixel_click_and_unsubscribe_are_recorded_once_each(services: Services, tmp_path: Path) -> None:
    workspace_id, _, _ = await make_workspace(services.settings.database.url or "")
    email_id = await make_tracked_email(services, workspace_id)
    signer = TokenSigner.from_keyring(services.keyring)
    paths = urls(signer, email_id)
    app = endpoints_for(services, tmp_path / "spool")
    async with client_for(app) as client:
        pixel = await client.get(paths["open"], headers={"user-agent": BROWSER})
        assert pixel.status_code == 200 and pixel.content == GIF
        assert pixel.headers["content-type"] == "image/gif"
        assert pixel.headers["cache-control"] == "no-store, no-cache, must-revalidate, private"
        assert (await client.get(paths["open"], headers={"user-agent": PROXY})).status_code == 200
        head = await client.head(paths["open"], headers={"user-agent": BROWSER})
        assert head.status_code == 200 and head.content == b""
        for position, path in enumerate(paths["clicks"]):
            # Whatever the request adds, the target is the stored URL: no open redirect.
            response = await client.get(path + "?url=https://evil.example/", headers={"user-agent": BROWSER})
            assert response.status_code == 302
            assert response.headers["location"] == LINKS[position]
        page = await client.get(paths["unsubscribe"])
        assert page.status_code == 200 and b"List-Unsubscribe" in page.content
        assert await rows(services, "SELECT 1 FROM suppressions WHERE workspace_id = %s", workspace_id) == []
        for _ in range(2):  # RFC 8058 one-click, twice: idempotent
            done = await client.post(
                paths["unsubscribe"],
                content=b"List-Unsubscribe=One-Click",
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            assert done.status_code == 200
        refused = await client.post(paths["unsubscribe"], content=b"")
        assert refused.status_code == 400
    await app.close()
    suppressed = await rows(
        services, "SELECT email, reason FROM suppressions WHERE workspace_id = %s", workspace_id
    )
    assert suppressed == [("ann@example.com", "unsubscribe")]
    assert await drain(services) == 3 + 3 + 2
    events = await rows(
        services,
        "SELECT event_type, link_url, is_machine, machine_reason FROM tracking_events WHERE email_id = %s "
        "ORDER BY occurred_at",
        email_id,
    )
    assert [e[0] for e in events].count("open") == 3
    assert sorted(e[1] for e in events if e[0] == "click") == sorted(LINKS)
    machine = {e[3] for e in events if e[2]}
    assert {"gmail_image_proxy", "head_request"} <= machine
    engagement = await rows(
        services,
        "SELECT opens, human_opens, clicks, unique_clicked_links, unsubscribes FROM email_engagement "
        "WHERE email_id = %s",
        email_id,
    )
    assert engagement == [(3, 1, 3, 3, 2)]
    link_clicks = await rows(services, "SELECT sum(clicks) FROM tracking_links WHERE email_id = %s", email_id)
    assert link_clicks == [(3,)]


async def test_bad_tokens_get_404_and_record_nothing(services: Services, tmp_path: Path) -> None:
    workspace_id, _, _ = await make_workspace(services.settings.database.url or "")
    email_id = await make_tracked_email(services, workspace_id)
    signer = TokenSigner.from_keyring(services.keyring)
    good = signer.sign(TrackingToken(kind=TokenKind.OPEN, email_id=email_id))
    forged = TokenSigner({1: b"k" * 32}).sign(TrackingToken(kind=TokenKind.OPEN, email_id=email_id))
    raw = bytearray(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    raw[4] ^= 1  # another email id, same MAC
    altered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    click = signer.sign(TrackingToken(kind=TokenKind.CLICK, email_id=email_id, link=len(LINKS)))
    app = endpoints_for(services, tmp_path / "spool")
    async with client_for(app) as client:
        for path in (
            f"/t/o/{forged}.gif", f"/t/o/{altered}.gif", "/t/o/nonsense.gif", f"/t/o/{good}",
            f"/t/c/{good}",  # an open token on the click route
            f"/t/c/{click}",  # a link position the email does not have
            f"/u/{good}", "/t/x/abc", "/",
        ):  # fmt: skip
            assert (await client.get(path)).status_code == 404, path
    await app.close()
    assert await drain(services) == 0


async def test_events_spool_when_redis_is_away_and_replay_later(services: Services, tmp_path: Path) -> None:
    workspace_id, _, _ = await make_workspace(services.settings.database.url or "")
    email_id = await make_tracked_email(services, workspace_id)
    paths = urls(TokenSigner.from_keyring(services.keyring), email_id)
    spool_dir = tmp_path / "spool"
    # Nothing listens on this port: every batch goes to the spool, and requests still succeed.
    away = endpoints_for(services, spool_dir, redis_url="redis://127.0.0.1:1/0")
    async with client_for(away) as client:
        for _ in range(5):
            assert (await client.get(paths["open"], headers={"user-agent": BROWSER})).status_code == 200
    assert away.intake is not None and away.intake.spooled_batches == 5
    assert Spool(spool_dir, "x").pending_files()
    await away.close()  # the process that spooled is gone; its file is left for others
    assert services.settings.redis.url is not None
    survivor = EventIntake.connect(services.settings.redis.url, spool_dir)
    assert await survivor.replay() == 5
    assert await survivor.replay() == 0
    await survivor.close()
    assert await drain(services) == 5


async def test_writer_crash_redelivers_pending_entries_without_doubles(
    services: Services, tmp_path: Path
) -> None:
    workspace_id, _, _ = await make_workspace(services.settings.database.url or "")
    email_id = await make_tracked_email(services, workspace_id)
    paths = urls(TokenSigner.from_keyring(services.keyring), email_id)
    app = endpoints_for(services, tmp_path / "spool")
    async with client_for(app) as client:
        for path in [paths["open"]] * 4 + paths["clicks"]:
            await client.get(path, headers={"user-agent": BROWSER})
    await app.close()
    # A writer that read the entries and died before acknowledging them.
    await ensure_group(services.redis)
    read = await services.redis.xreadgroup(WRITER_GROUP, "writer", {TRACKING_STREAM: ">"}, count=100)
    # RESP2, the client's protocol: [[stream, [(id, {field: value}), ...]]].
    assert isinstance(read, list) and read
    # ...and one that stored them, committed, and died before acknowledging.
    from mail.tracking.records import ENTRY_FIELD, decode_batch
    from mail.tracking.store import store_events

    entries: list[tuple[bytes, dict[bytes, bytes]]] = read[0][1]
    events = [event for _, fields in entries for event in decode_batch(fields[ENTRY_FIELD])]
    async with services.pool.connection() as conn, conn.transaction():
        stored, _ = await store_events(conn, events)
    assert len(stored) == 7
    assert await drain(services) == 0  # the restarted writer finds them pending and stores nothing twice
    assert await services.redis.xlen(TRACKING_STREAM) == 0
    pending = await services.redis.xpending(TRACKING_STREAM, WRITER_GROUP)
    assert pending["pending"] == 0
    counted = await rows(
        services,
        "SELECT count(*), count(DISTINCT event_id) FROM tracking_events WHERE email_id = %s",
        email_id,
    )
    assert counted == [(7, 7)]
    engagement = await rows(
        services, "SELECT opens, clicks FROM email_engagement WHERE email_id = %s", email_id
    )
    assert engagement == [(4, 3)]


async def test_a_step_that_fails_after_reading_leaves_nothing_behind_for_the_same_writer(
    services: Services, tmp_path: Path
) -> None:
    """The entries a failed step had read are pending for this consumer; the same writer (no
    restart) must store them on its next step, not read past them."""
    workspace_id, _, _ = await make_workspace(services.settings.database.url or "")
    email_id = await make_tracked_email(services, workspace_id)
    paths = urls(TokenSigner.from_keyring(services.keyring), email_id)
    app = endpoints_for(services, tmp_path / "spool")
    async with client_for(app) as client:
        for _ in range(3):
            assert (await client.get(paths["open"], headers={"user-agent": BROWSER})).status_code == 200
    await app.close()
    writer = EventWriter(services)
    locker = await psycopg.AsyncConnection.connect(services.settings.database.url or "")
    async with locker, locker.transaction():
        await locker.execute("LOCK TABLE tracking_events IN ACCESS EXCLUSIVE MODE")
        stuck = asyncio.create_task(writer.step(block_ms=50))
        await asyncio.sleep(0.5)  # it has read the entries and waits for the lock
        assert not stuck.done()
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
    report = await writer.step(block_ms=50)
    assert report.stored == 3
    pending = await services.redis.xpending(TRACKING_STREAM, WRITER_GROUP)
    assert pending["pending"] == 0
    assert await rows(services, "SELECT count(*) FROM tracking_events WHERE email_id = %s", email_id) == [
        (3,)
    ]
