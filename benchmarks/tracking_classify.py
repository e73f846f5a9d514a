"""Tracking event classification throughput: one JSON line per figure (classifications per second, one core).

"cached" is the writer's steady state (every user agent seen before); "uncached" clears the
user-agent cache before each call, so every call parses with ua-parser. `parse_per_s` is ua-parser
alone, once per installed backend ("regex" is ua-parser-rs, "basic" the pure-Python one).

.venv/bin/python benchmarks/tracking_classify.py
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import ua_parser

from mail.tracking import classify as classify_module
from mail.tracking.classify import EventContext, EventKind, classify

SECONDS_PER_FIGURE = 1.0  # 3 or 4 figures, about 5 s in all

SENT_AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
# (user agent, kind, ip, method): the recorded mix from tests/unit/test_tracking_classify.py.
MIX: list[tuple[str | None, EventKind, str, str]] = [
    ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "open", "66.249.84.1", "GET"),
    ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", "open", "98.136.1.1", "GET"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)", "open", "17.58.101.12", "GET"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)", "open", "203.0.113.7", "GET"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", "open", "203.0.113.8", "GET"),
    ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)", "open", "203.0.113.9", "GET"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "click", "203.0.113.10", "GET"),
    ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "click", "203.0.113.11", "GET"),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36", "click", "203.0.113.12", "GET"),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "click", "203.0.113.13", "GET"),
    ("curl/8.5.0", "click", "198.51.100.1", "GET"),
    ("python-requests/2.32.3", "click", "198.51.100.2", "GET"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "click", "198.51.100.3", "HEAD"),
    (None, "open", "198.51.100.4", "GET"),
]  # fmt: skip
EVENTS = [
    EventContext(
        kind=kind,
        user_agent=user_agent,
        ip=ip,
        method=method,
        occurred_at=SENT_AT + timedelta(minutes=5),
        sent_at=SENT_AT,
    )
    for user_agent, kind, ip, method in MIX
]
USER_AGENTS = [user_agent for user_agent, *_ in MIX if user_agent]


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
    line = {"benchmark": "tracking_classify", "figure": figure, **detail, "value": round(value)}
    print(json.dumps(line), flush=True)


def main() -> None:
    backend = ua_parser.BestAvailableResolver.__module__.rsplit(".", 1)[-1]

    events = itertools.cycle(EVENTS)
    _emit("classify_per_s", _rate(lambda: classify(next(events))), cached=True, backend=backend)

    def uncached() -> None:
        classify_module._describe_agent.cache_clear()
        classify(next(events))

    _emit("classify_per_s", _rate(uncached), cached=False, backend=backend)

    # ua-parser alone, without any cache, per installed backend.
    backends: list[tuple[str, Callable[[ua_parser.Matchers], ua_parser.Resolver] | None]] = [
        ("regex", ua_parser.RegexResolver),
        ("basic", ua_parser.BasicResolver),
    ]
    for name, resolver in backends:
        if resolver is None:
            continue
        matchers = ua_parser.load_builtins() if name == "basic" else ua_parser.load_lazy_builtins()
        parser = ua_parser.Parser(resolver(matchers))
        user_agents = itertools.cycle(USER_AGENTS)
        _emit("parse_per_s", _rate(lambda: parser.parse(next(user_agents))), backend=name)  # noqa: B023


if __name__ == "__main__":
    main()
