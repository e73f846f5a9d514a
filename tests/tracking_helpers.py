"""Shared set-up of the tracking tests: a workspace with tracked emails, the endpoints in process."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from mail import auth
from mail.config import load_settings
from mail.services import Services, open_services
from mail.tracking import registry
from mail.tracking.intake import EventIntake
from mail.tracking.records import TRACKING_STREAM
from mail.tracking.tokens import TokenKind, TokenSigner, TrackingToken
from mail.tracking.writer import DEAD_LETTER_STREAM, EventWriter
from models.tenancy import NewApiKey
from serve.tracking.endpoints import TrackingEndpoints

BASE = "http://t.mailray.test"
LINKS = ["https://example.com/a", "https://example.org/b?x=1&y=2", "https://example.net/c#frag"]


def tracking_settings(database_url: str, redis_url: str, data_dir: Path, **extra: str) -> Any:
    return load_settings(
        environ={
            "MAILRAY_DATABASE__URL": database_url,
            "MAILRAY_REDIS__URL": redis_url,
            "MAILRAY_APP__DATA_DIR": str(data_dir),
            "MAILRAY_TRACKING__BASE_URL": BASE,
            **extra,
        }
    )


async def fresh_streams(services: Services) -> None:
    await services.redis.delete(TRACKING_STREAM, DEAD_LETTER_STREAM)


async def drain(services: Services) -> int:
    """Run an in-process writer until the stream is empty; return the events it stored."""
    writer = EventWriter(services)
    stored = 0
    while True:
        report = await writer.step(block_ms=50)
        stored += report.stored
        if report.entries == 0:
            return stored


async def make_workspace(database_url: str) -> tuple[uuid.UUID, uuid.UUID, NewApiKey]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        suffix = uuid.uuid4().hex[:8]
        workspace, owner = await auth.create_workspace(
            conn, f"Track {suffix}", owner_email=f"o-{suffix}@example.com"
        )
        key = await auth.create_api_key(conn, workspace.id, owner.id)
    return workspace.id, owner.id, key


async def make_tracked_email(
    services: Services,
    workspace_id: uuid.UUID,
    *,
    recipient: str = "ann@example.com",
    campaign_id: uuid.UUID | None = None,
    sent_ago_s: float = 3600,
    links: list[str] = LINKS,
) -> int:
    async with services.pool.connection() as conn, conn.transaction():
        email_id = await registry.create_tracked_email(
            conn,
            registry.NewTrackedEmail(
                workspace_id=workspace_id,
                recipient_email=recipient,
                campaign_id=campaign_id,
                message_id=f"<{uuid.uuid4().hex}@mailray.test>",
                subject="Hello",
                sent_at=datetime.now(UTC) - timedelta(seconds=sent_ago_s),
            ),
        )
        await registry.store_links(
            conn, workspace_id, email_id,
            [registry.LinkRow(position=i, url=url, text=f"link {i}") for i, url in enumerate(links)],
        )  # fmt: skip
    return email_id


def urls(signer: TokenSigner, email_id: int, recipient_id: int | None = None) -> dict[str, Any]:
    def sign(kind: TokenKind, link: int | None = None) -> str:
        return signer.sign(TrackingToken(kind=kind, email_id=email_id, recipient_id=recipient_id, link=link))

    return {
        "open": f"/t/o/{sign(TokenKind.OPEN)}.gif",
        "clicks": [f"/t/c/{sign(TokenKind.CLICK, i)}" for i in range(len(LINKS))],
        "unsubscribe": f"/u/{sign(TokenKind.UNSUBSCRIBE)}",
    }


def endpoints_for(services: Services, spool_dir: Path, redis_url: str | None = None) -> TrackingEndpoints:
    async def factory() -> Services:
        return services

    url = redis_url or services.settings.redis.url
    assert url is not None
    return TrackingEndpoints(factory, lambda _: EventIntake.connect(url, spool_dir))


def client_for(app: TrackingEndpoints) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


async def open_tracking_services(database_url: str, redis_url: str, data_dir: Path) -> Services:
    return await open_services(tracking_settings(database_url, redis_url, data_dir))
