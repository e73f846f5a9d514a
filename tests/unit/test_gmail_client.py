"""GmailClient over a scripted API: batching, per-message failures, token refresh and on_tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
import pytest
import redis.asyncio

from mail.errors import AuthError, TransientError
from mail.gmail import oauth
from mail.gmail.api_request import ApiRequest
from mail.gmail.client import GmailClient
from mail.gmail.quota import GmailQuota
from mail.gmail.transport import GmailTransport
from mail.store.ratelimit import Grant
from models.gmail import GmailMessage, MessageFetchError, TokenSet
from models.settings import GmailSettings
from tests.unit.gmail_fake_api import FakeGmail, Sleeps, raw_of

SETTINGS = msgspec.structs.replace(GmailSettings(), api_endpoint="http://127.0.0.1:8765", max_retries=3)


def _tokens(access: str = "t0", expires_in_s: float = 3600) -> TokenSet:
    return TokenSet(
        access_token=access,
        refresh_token="1//r",
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in_s),
    )


class _Refresher:
    """Stands in for the token endpoint: hands out t1, t2, ... and records the calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail: Exception | None = None) -> None:
        self.calls = 0
        self.fail = fail
        monkeypatch.setattr(oauth, "refresh", self)

    async def __call__(self, settings: GmailSettings, token_set: TokenSet, **kwargs: Any) -> TokenSet:
        self.calls += 1
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        return _tokens(f"t{self.calls}")


class _Stored:
    def __init__(self) -> None:
        self.tokens: list[TokenSet] = []

    async def __call__(self, tokens: TokenSet) -> None:
        self.tokens.append(tokens)


class _CountingQuota(GmailQuota):
    """The real sizing, with the charges recorded instead of taken from Redis."""

    def __init__(self, regime: str) -> None:
        super().__init__(
            cast(redis.asyncio.Redis, object()), msgspec.structs.replace(SETTINGS, quota_regime=regime)
        )
        self.units: list[int] = []

    async def charge(self, email: str, requests: Sequence[ApiRequest]) -> Grant:
        self.units.append(self.cost(requests))
        return Grant(allowed=True, retry_after_s=0, tokens_left=0, server_time_s=0)


def _client(
    server: FakeGmail,
    tokens: TokenSet | None = None,
    *,
    quota: GmailQuota | None = None,
    on_tokens: _Stored | None = None,
    settings: GmailSettings = SETTINGS,
) -> GmailClient:
    transport = server.install(GmailTransport(settings, sleep=Sleeps(), random_fraction=lambda: 0.0))
    return GmailClient(
        settings,
        tokens or _tokens(),
        email="ana@acme.test",
        quota=quota,
        on_tokens=on_tokens,
        transport=transport,
    )


async def test_get_messages_batches_keeps_order_and_reports_missing_messages() -> None:
    server = FakeGmail(lambda name, seen: (404, {}) if name == "m7" else (200, {}))
    client = _client(server)
    ids = [f"m{i}" for i in range(120)]
    results = await client.get_messages(ids)
    assert [len(exchange) for exchange in server.exchanges] == [50, 50, 20]
    assert [result.id for result in results] == ids
    missing = results[7]
    assert isinstance(missing, MessageFetchError) and missing.status == 404
    found = results[8]
    assert isinstance(found, GmailMessage) and found.raw == raw_of("m8")
    assert await client.get_messages([]) == []


async def test_batches_fit_the_quota_bucket() -> None:
    server = FakeGmail()
    quota = _CountingQuota("2026")
    await _client(server, quota=quota).get_messages([f"m{i}" for i in range(12)])
    assert [len(exchange) for exchange in server.exchanges] == [2] * 6  # half a 100-unit bucket
    assert quota.units == [40] * 6  # messages.get costs 20 in the 2026 regime
    legacy = _CountingQuota("legacy")
    server = FakeGmail()
    await _client(server, quota=legacy).get_messages([f"m{i}" for i in range(100)])
    assert [len(exchange) for exchange in server.exchanges] == [12] * 8 + [4]


async def test_a_message_failing_after_every_retry_raises() -> None:
    server = FakeGmail(lambda name, seen: (503, {}) if name == "m3" else (200, {}))
    with pytest.raises(TransientError):
        await _client(server).get_messages([f"m{i}" for i in range(10)])
    assert server.asked["m3"] == 1 + SETTINGS.max_retries


async def test_refresh_before_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    refresher = _Refresher(monkeypatch)
    stored = _Stored()
    server = FakeGmail(valid_tokens={"t0", "t1"})
    client = _client(server, _tokens("t0", expires_in_s=120), on_tokens=stored)
    await client.get_profile()
    await client.get_messages(["m1", "m2"])
    assert refresher.calls == 1
    assert server.tokens_seen == ["t1", "t1"]
    assert [tokens.access_token for tokens in stored.tokens] == ["t1"]
    assert client.tokens.access_token == "t1"


async def test_refresh_once_on_401_then_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    refresher = _Refresher(monkeypatch)
    stored = _Stored()
    server = FakeGmail(valid_tokens={"t1"})
    client = _client(server, on_tokens=stored)
    profile = await client.get_profile()
    assert profile.email_address == "ana@acme.test"
    assert server.tokens_seen == ["t0", "t1"]
    assert [tokens.access_token for tokens in stored.tokens] == ["t1"]

    server.valid_tokens = set()  # revoked: even fresh tokens are refused
    with pytest.raises(AuthError, match="re-authorisation"):
        await client.get_profile()
    assert refresher.calls == 2


async def test_a_401_on_a_token_refreshed_during_the_call_refreshes_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refresher = _Refresher(monkeypatch)
    server = FakeGmail(valid_tokens={"t2"})  # t1, fetched before the call went out, is refused
    client = _client(server, _tokens("t0", expires_in_s=120))
    await client.get_profile()
    assert server.tokens_seen == ["t1", "t2"]
    assert refresher.calls == 2


async def test_batch_parts_refused_with_401_are_sent_again_after_one_refresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refresher = _Refresher(monkeypatch)
    server = FakeGmail(valid_tokens={"t1"})
    client = _client(server)
    results = await asyncio.gather(
        client.get_messages([f"a{i}" for i in range(60)]), client.get_message("single")
    )
    assert refresher.calls == 1  # three exchanges saw 401 at once; one refresh serves them all
    assert all(isinstance(result, GmailMessage) for result in results[0])
    server.valid_tokens = set()
    with pytest.raises(AuthError):
        await client.get_messages(["b1", "b2"])


async def test_revoked_grant_is_an_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _Refresher(monkeypatch, fail=AuthError("OAuth refresh: invalid_grant: re-authorisation needed"))
    server = FakeGmail(valid_tokens=set())
    with pytest.raises(AuthError, match="invalid_grant"):
        await _client(server).get_profile()


async def test_token_endpoint_down_but_token_still_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    refresher = _Refresher(monkeypatch, fail=TransientError("token endpoint down"))
    server = FakeGmail()
    client = _client(server, _tokens("t0", expires_in_s=60))
    await client.get_profile()  # within the margin, not expired: the old token still serves
    assert server.tokens_seen == ["t0"]
    assert refresher.calls == 1 + SETTINGS.max_retries
    expired = _client(FakeGmail(), _tokens("t0", expires_in_s=-1))
    with pytest.raises(TransientError):
        await expired.get_profile()


async def test_send_is_never_repeated_after_a_server_error() -> None:
    server = FakeGmail(lambda name, seen: (500, {}))
    with pytest.raises(TransientError):
        await _client(server).send_raw(b"Subject: hi\r\n\r\nhello")
    assert server.asked == {"send": 1}


async def test_short_lived_tokens_are_not_refreshed_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    class _ShortLived(_Refresher):
        async def __call__(self, settings: GmailSettings, token_set: TokenSet, **kwargs: Any) -> TokenSet:
            await super().__call__(settings, token_set)
            return _tokens(f"t{self.calls}", expires_in_s=60)

    refresher = _ShortLived(monkeypatch)
    client = _client(FakeGmail(), _tokens("t0", expires_in_s=60))
    for _ in range(5):
        await client.get_profile()
    assert refresher.calls == 1  # then the margin is half of the 60 s life, not 300 s
