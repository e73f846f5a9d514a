"""Unit tests run without Ray, Postgres or Redis; starting Ray here is a bug in the test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _refuse_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import ray

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("unit tests must not start Ray; move this test to tests/integration")

    monkeypatch.setattr(ray, "init", refuse)
    yield
