"""Finding named actors, and starting the detached singletons (writer, worker, supervisor)."""

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


def start_detached(actor_class: Any, name: str, namespace: str, env: dict[str, str]) -> Any:
    """The named detached actor, created with `env` when none lives, once its loop is running."""
    actor = actor_class.options(
        name=name,
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        runtime_env={"env_vars": env},
    ).remote()
    ray.get(actor.ensure_running.remote())
    return actor
