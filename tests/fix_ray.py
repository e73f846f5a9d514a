"""One local Ray for the whole test session (2 CPUs, no dashboard), started only when a test asks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_session(database_url: str, redis_url: str) -> Iterator[None]:
    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace="mailray-tests",
        log_to_driver=False,
        runtime_env={
            "env_vars": {
                "MAILRAY_DATABASE__URL": database_url,
                "MAILRAY_REDIS__URL": redis_url,
                "RAY_SERVE_ENABLE_HA_PROXY": "1",
                "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            }
        },
    )
    yield
    ray.shutdown()
