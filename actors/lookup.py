"""Finding named actors."""

from __future__ import annotations

from typing import Any

import ray

# ray.get_actor's annotations confuse type checkers (its decorator hides the return type).
_get_actor: Any = ray.get_actor


def find_actor(name: str, namespace: str) -> Any | None:
    """The named actor, or None when no such actor lives."""
    try:
        return _get_actor(name, namespace=namespace)
    except ValueError:
        return None
