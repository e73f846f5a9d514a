"""The `Tracking` Serve deployment (HAProxy ingress, many concurrent requests per replica)."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from mail.config import load_settings
from mail.services import Services, open_services
from serve.tracking.app import create_tracking_app


async def _open_services() -> Services:
    return await open_services(load_settings())


tracking_app = create_tracking_app(_open_services)


@serve.deployment(name="Tracking")
@serve.ingress(tracking_app)
class Tracking:
    async def check_health(self) -> None:
        services = await tracking_app.state.services.get()
        await services.redis.ping()


def build(args: dict[str, Any]) -> Application:
    del args
    return Tracking.bind()  # type: ignore[attr-defined,no-any-return]
