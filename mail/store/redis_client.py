"""The one way mailray makes a Redis client: `create_redis(url)`.

Accepts `redis://` (TCP), `rediss://` (TLS) and `unix:///path/to.sock` URLs, with the database,
credentials and any redis-py option in the URL as redis-py reads them, e.g.
`redis://:secret@10.0.0.5:6379/2` or `unix:///run/redis.sock?db=1`. The client is asyncio,
returns bytes (decode_responses=False: callers decide what is text) and pings connections that
sat idle before reusing them, so a Redis restart costs one failed check instead of one failed
command.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio

from mail.errors import ValidationError
from models.settings import RedisSettings

SCHEMES = ("redis", "rediss", "unix")
# Seconds a pooled connection may sit idle before it is pinged ahead of its next command. Short
# enough to catch a restarted server or a dropped NAT entry, long enough to cost nothing when busy.
HEALTH_CHECK_INTERVAL_S = 15


def _redacted(url: str) -> str:
    """The URL without its password, fit for an error message or a log line."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URL>"


def create_redis(
    url: str, *, max_connections: int = 64, socket_timeout_s: float = 5.0
) -> redis.asyncio.Redis:
    """An asyncio Redis client for `url`, pooling at most `max_connections` connections.

    `socket_timeout_s` bounds both connecting and each command's wait for its reply. Raises
    `ValidationError` for a URL redis-py cannot use (unsupported scheme, bad query value) and
    for limits that are not positive. Nothing connects until the first command.
    """
    if not isinstance(url, str) or not url:
        raise ValidationError("Redis URL is empty", field="redis.url")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValidationError(
            f"Redis URL {_redacted(url)!r} has an unsupported scheme {scheme or '(none)'!r}; "
            "expected redis://host:port/db, rediss://host:port/db or unix:///path/to.sock",
            field="redis.url",
        )
    if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
        raise ValidationError(
            f"max_connections must be a positive integer, got {max_connections!r}",
            field="redis.max_connections",
        )
    if not (isinstance(socket_timeout_s, int | float) and math.isfinite(socket_timeout_s)) or (
        socket_timeout_s <= 0
    ):
        raise ValidationError(
            f"socket_timeout_s must be a positive number of seconds, got {socket_timeout_s!r}",
            field="redis.socket_timeout_s",
        )
    try:
        # A blocking pool: when every connection is busy a command waits (up to the timeout)
        # for one, instead of failing with "Too many connections" under a burst.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            decode_responses=False,
            max_connections=max_connections,
            timeout=socket_timeout_s,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
        )
        return redis.asyncio.Redis.from_pool(pool)  # the client owns the pool and closes it
    except ValueError as exc:
        # redis-py parses the query string (db=, ssl_cert_reqs=, ...) and the port here.
        raise ValidationError(f"Redis URL {_redacted(url)!r} is invalid: {exc}", field="redis.url") from exc


def create_redis_from_settings(settings: RedisSettings, url: str) -> redis.asyncio.Redis:
    """`create_redis` with the pool size and timeout of `settings`.

    The URL comes separately because `settings.url` is None when mailray starts its own
    embedded Redis; the caller passes whichever URL it resolved.
    """
    return create_redis(
        url, max_connections=settings.max_connections, socket_timeout_s=settings.socket_timeout_s
    )
