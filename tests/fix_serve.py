"""One Serve stack (HAProxy ingress, every application of configs/serve.yaml) per test session.

Tests that need the stack on other services (the durability test's own Redis) deploy it with
their settings through `ServeStack.deploy` and put the session's back with `restore`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from cluster.bootstrap import deploy_serve
from mail.config import load_settings
from models.settings import Settings
from tests.dns_helpers import DnsServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServeStack:
    settings: Settings
    deployed_with: Settings | None = None
    session_deployed: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.serve.http_port}"

    def deploy(self, settings: Settings) -> None:
        assert settings.serve.http_port == self.settings.serve.http_port, "one HTTP port per Serve instance"
        if self.deployed_with is not settings:
            deploy_serve(settings)
            self.deployed_with = settings
            self.session_deployed |= settings is self.settings

    def restore(self) -> None:
        """Redeploy the session's settings where tests use them and something else replaced them."""
        if self.session_deployed and self.deployed_with is not self.settings:
            self.deploy(self.settings)


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsServer]:
    """The DNS server the session's stack asks when it verifies a sending domain."""
    with DnsServer() as server:
        yield server


@pytest.fixture(scope="session")
def serve_stack(
    ray_session: None,
    database_url: str,
    redis_url: str,
    dns_server: DnsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServeStack]:
    settings = load_settings(
        environ={
            "MAILRAY_DATABASE__URL": database_url,
            "MAILRAY_REDIS__URL": redis_url,
            "MAILRAY_APP__DATA_DIR": str(tmp_path_factory.mktemp("serve-data")),
            "MAILRAY_SERVE__HTTP_PORT": str(free_port()),
            "MAILRAY_SENDING__DNS_NAMESERVER": dns_server.address,
        }
    )
    stack = ServeStack(settings)
    yield stack
    if stack.deployed_with is not None:
        from ray import serve

        shutdown: Callable[[], None] = serve.shutdown
        shutdown()


@pytest.fixture(scope="session")
def api_url(serve_stack: ServeStack) -> str:
    """The session's stack, deployed on the session's Postgres and Redis."""
    serve_stack.deploy(serve_stack.settings)
    return serve_stack.url
