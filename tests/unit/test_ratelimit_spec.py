"""Bucket specs, costs and Redis URLs are checked in Python, before anything reaches Redis."""

from __future__ import annotations

import math
from typing import Any, cast

import msgspec
import pytest
import redis.asyncio
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

from mail.errors import ValidationError
from mail.store.ratelimit import Grant, RateLimiter, TokenBucket
from mail.store.redis_client import create_redis, create_redis_from_settings
from models.settings import RedisSettings


class _NoRedis:
    """Stands in for a client in tests that must fail before any command is sent."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Redis was called ({name}) although the request was invalid")


def _limiter() -> RateLimiter:
    return RateLimiter(cast(redis.asyncio.Redis, _NoRedis()))


def test_valid_bucket_is_frozen() -> None:
    bucket = TokenBucket("gmail:send", rate_per_s=2.5, capacity=10)
    assert (bucket.key, bucket.rate_per_s, bucket.capacity) == ("gmail:send", 2.5, 10)
    with pytest.raises(AttributeError):
        bucket.capacity = 11  # type: ignore[misc]
    assert TokenBucket("a", rate_per_s=0.001, capacity=1).capacity == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"key": "", "rate_per_s": 1, "capacity": 1}, "key"),
        ({"key": "k", "rate_per_s": 0, "capacity": 1}, "rate_per_s"),
        ({"key": "k", "rate_per_s": -1.0, "capacity": 1}, "rate_per_s"),
        ({"key": "k", "rate_per_s": math.nan, "capacity": 1}, "rate_per_s"),
        ({"key": "k", "rate_per_s": math.inf, "capacity": 1}, "rate_per_s"),
        ({"key": "k", "rate_per_s": "5", "capacity": 1}, "rate_per_s"),
        ({"key": "k", "rate_per_s": True, "capacity": 1}, "rate_per_s"),
        ({"key": "k", "rate_per_s": 1, "capacity": 0.5}, "capacity"),
        ({"key": "k", "rate_per_s": 1, "capacity": 0}, "capacity"),
        ({"key": "k", "rate_per_s": 1, "capacity": math.inf}, "capacity"),
    ],
)
def test_invalid_bucket_is_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TokenBucket(**kwargs)
    assert caught.value.field == field


def test_decoded_bucket_is_validated_too() -> None:
    with pytest.raises(ValidationError):
        msgspec.json.decode(b'{"key": "k", "rate_per_s": 1, "capacity": 0}', type=TokenBucket)


@pytest.mark.parametrize("cost", [0, -1, math.nan, 10.5, 11])
async def test_impossible_cost_is_refused_before_redis(cost: float) -> None:
    bucket = TokenBucket("k", rate_per_s=1, capacity=10)
    with pytest.raises(ValidationError) as caught:
        await _limiter().try_acquire(bucket, cost)
    assert caught.value.field == "cost"
    with pytest.raises(ValidationError):
        await _limiter().acquire(bucket, cost, timeout_s=1)


async def test_cost_above_capacity_names_the_bucket() -> None:
    small = TokenBucket("per-account", rate_per_s=1, capacity=2)
    big = TokenBucket("global", rate_per_s=100, capacity=100)
    with pytest.raises(ValidationError, match=r"capacity 2.*'per-account'.*never be granted"):
        await _limiter().try_acquire_all([big, small], cost=3)


async def test_bucket_lists_are_checked() -> None:
    bucket = TokenBucket("k", rate_per_s=1, capacity=2)
    with pytest.raises(ValidationError):
        await _limiter().try_acquire_all([])
    with pytest.raises(ValidationError, match="twice"):
        await _limiter().try_acquire_all([bucket, TokenBucket("k", rate_per_s=2, capacity=2)])
    with pytest.raises(ValidationError):
        await _limiter().acquire(bucket, timeout_s=-1)
    with pytest.raises(ValidationError):
        RateLimiter(cast(redis.asyncio.Redis, _NoRedis()), jitter=-0.1)


def test_grant_is_a_frozen_struct() -> None:
    grant = Grant(allowed=True, retry_after_s=0.0, tokens_left=3.5, server_time_s=1.0)
    assert msgspec.json.decode(msgspec.json.encode(grant), type=Grant) == grant
    with pytest.raises(AttributeError):
        grant.allowed = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "connection_class"),
    [
        ("redis://127.0.0.1:6379/0", None),
        ("rediss://user:pw@redis.example:6380/1", SSLConnection),
        ("unix:///run/redis/redis.sock?db=2", UnixDomainSocketConnection),
    ],
)
async def test_create_redis_accepts_supported_schemes(url: str, connection_class: type | None) -> None:
    client = create_redis(url, max_connections=7, socket_timeout_s=1.5)  # connects lazily
    try:
        pool = client.connection_pool
        assert pool.max_connections == 7
        kwargs = pool.connection_kwargs
        assert kwargs["socket_timeout"] == 1.5
        assert kwargs["health_check_interval"] > 0
        assert not kwargs.get("decode_responses", False)
        if connection_class is not None:
            assert pool.connection_class is connection_class
    finally:
        await client.aclose()


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "", "redis+sentinel://h/0"])
def test_create_redis_refuses_unsupported_schemes(url: str) -> None:
    with pytest.raises(ValidationError, match="Redis URL") as caught:
        create_redis(url)
    assert caught.value.field == "redis.url"


def test_create_redis_hides_the_password_in_errors() -> None:
    with pytest.raises(ValidationError) as caught:
        create_redis("redis://u:hunter2@h:6379/0?db=notanumber")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        create_redis("memcached://u:hunter2@h:11211")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(("max_connections", "timeout"), [(0, 1.0), (8, 0.0), (8, math.inf)])
def test_create_redis_refuses_bad_limits(max_connections: int, timeout: float) -> None:
    with pytest.raises(ValidationError):
        create_redis("redis://127.0.0.1/0", max_connections=max_connections, socket_timeout_s=timeout)


async def test_create_redis_from_settings_uses_the_limits() -> None:
    settings = RedisSettings(max_connections=3, socket_timeout_s=2.0)
    client = create_redis_from_settings(settings, "redis://127.0.0.1:6379/0")
    try:
        assert client.connection_pool.max_connections == 3
        assert client.connection_pool.connection_kwargs["socket_timeout"] == 2.0
    finally:
        await client.aclose()
