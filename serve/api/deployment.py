"""The `Api` Serve deployment: the FastAPI app of serve.api.app behind Serve's ingress."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from mail.config import load_settings
from mail.services import Services, open_services
from serve.api.app import create_app


async def _open_services() -> Services:
    # Replicas get resolved URLs through their runtime_env (cluster.bootstrap sets them).
    return await open_services(load_settings())


api_app = create_app(_open_services)


@serve.deployment(name="Api")
@serve.ingress(api_app)
class Api:
    """REST API replica. Resources and replica counts come from configs/serve.yaml."""

    def __init__(self) -> None:
        self._config: dict[str, Any] = {}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self._config = dict(user_config)

    async def check_health(self) -> None:
        holder = api_app.state.services
        services = await holder.get()
        async with services.pool.connection() as conn:
            await conn.execute("SELECT 1")


def build(args: dict[str, Any]) -> Application:
    """Application builder named by configs/serve.yaml (`import_path: serve.api.deployment:build`)."""
    del args
    return Api.bind()  # type: ignore[attr-defined,no-any-return]
