"""Serve deployments of the public endpoints, all behind HAProxy ingress (configs/serve.yaml):

- `Tracking` (route prefix /t): the open pixel and click redirects, the hot path;
- `Unsubscribe` (route prefix /u): the same ASGI application, deployed on its own route prefix;
- `Push` (route prefix /push): the Gmail Pub/Sub push webhook.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from mail.config import data_dir, load_settings
from mail.services import Services, open_services
from mail.tracking.intake import EventIntake, spool_directory
from serve.tracking.endpoints import TrackingEndpoints
from serve.tracking.push import create_push_app


async def _open_services() -> Services:
    return await open_services(load_settings())


def _intake(services: Services) -> EventIntake:
    assert services.settings.redis.url is not None
    return EventIntake.connect(services.settings.redis.url, spool_directory(str(data_dir(services.settings))))


def _build_endpoints() -> TrackingEndpoints:
    """Run on the replica when it starts: one ASGI application per replica process."""
    return TrackingEndpoints(_open_services, _intake)


@serve.deployment(name="Tracking")
@serve.ingress(_build_endpoints)
class Tracking:
    """No Redis ping in a health check here: while Redis is away the replica still answers and
    spools its events, and Serve must not restart it for that."""


@serve.deployment(name="Unsubscribe")
@serve.ingress(_build_endpoints)
class Unsubscribe:
    pass


push_app = create_push_app(_open_services)


@serve.deployment(name="Push")
@serve.ingress(push_app)
class Push:
    async def check_health(self) -> None:
        services = await push_app.state.services.get()
        await services.redis.ping()


def build(args: dict[str, Any]) -> Application:
    del args
    return Tracking.bind()  # type: ignore[attr-defined,no-any-return]


def build_unsubscribe(args: dict[str, Any]) -> Application:
    del args
    return Unsubscribe.bind()  # type: ignore[attr-defined,no-any-return]


def build_push(args: dict[str, Any]) -> Application:
    del args
    return Push.bind()  # type: ignore[attr-defined,no-any-return]
