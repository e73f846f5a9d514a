"""Envelope encryption throughput: one JSON line per figure (operations per second, one core).

.venv/bin/python benchmarks/crypto.py
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from functools import partial

from mail.crypto import Keyring

SECONDS_PER_FIGURE = 1.0  # 6 figures, about 7 s in all


def _rate(operation: Callable[[], object]) -> float:
    """Calls per second of `operation`, timed in rounds until SECONDS_PER_FIGURE have passed."""
    for _ in range(50):  # warm-up
        operation()
    calls, started = 0, time.perf_counter()
    rounds = 100
    while (elapsed := time.perf_counter() - started) < SECONDS_PER_FIGURE:
        for _ in range(rounds):
            operation()
        calls += rounds
    return calls / elapsed


def _emit(figure: str, value: float, **detail: object) -> None:
    print(json.dumps({"benchmark": "crypto", "figure": figure, **detail, "value": round(value)}), flush=True)


def main() -> None:
    key_1, key_2 = os.urandom(32), os.urandom(32)
    ring = Keyring({1: key_1, 2: key_2})
    context = b"accounts.refresh_token:12345"
    for size in (200, 20_000):
        payload = os.urandom(size)
        blob = ring.encrypt(payload, context=context)
        _emit("encrypt_per_s", _rate(partial(ring.encrypt, payload, context=context)), payload_bytes=size)
        _emit("decrypt_per_s", _rate(partial(ring.decrypt, blob, context=context)), payload_bytes=size)

    # Rotation: a value on key 1 moved to key 2. Without a context only the 48-byte wrap is
    # redone; with one (what `mail.key_rotation.rotate` does) the payload is authenticated too.
    stale = Keyring({1: key_1}).encrypt(os.urandom(200), context=context)
    _emit("rewrap_per_s", _rate(lambda: ring.rewrap(stale)), payload_bytes=200, checked=False)
    _emit("rewrap_per_s", _rate(lambda: ring.rewrap(stale, context=context)), payload_bytes=200, checked=True)


if __name__ == "__main__":
    main()
