"""GmailClient end to end against the Gmail emulator over HTTP, quota on a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import msgspec
import pytest
import redis.asyncio

from mail.errors import AuthError, HistoryExpired, NotFound
from mail.gmail.backoff import Backoff
from mail.gmail.client import GmailClient
from mail.gmail.oauth import authorization_url, exchange_code, refresh, revoke
from mail.gmail.quota import GmailQuota
from mail.gmail.transport import GmailTransport
from models.gmail import GmailMessage, MessageFetchError, TokenSet
from models.settings import GmailSettings

pytestmark = [pytest.mark.integration, pytest.mark.storage]

# Retries wait milliseconds here: the tests check that failures are retried, not how long for.
FAST_BACKOFF = Backoff(base_s=0.01, cap_s=0.05)


def _settings(emulator: Any, **overrides: Any) -> GmailSettings:
    base = emulator.base_url
    return msgspec.structs.replace(
        GmailSettings(),
        api_endpoint=base,
        oauth_token_uri=f"{base}/token",
        oauth_auth_uri=f"{base}/o/oauth2/auth",
        oauth_revoke_uri=f"{base}/revoke",
        client_id="mailray-dev",
        client_secret="mailray-dev-secret",
        **overrides,
    )


def _token_set(issued: dict[str, Any], *, expires_in_s: float | None = None) -> TokenSet:
    lifetime = issued["expires_in"] if expires_in_s is None else expires_in_s
    return TokenSet(
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=datetime.now(UTC) + timedelta(seconds=lifetime),
    )


def _raw(number: int, tag: str = "") -> bytes:
    return (
        f"From: Ana <ana@acme.test>\r\nTo: bo@example.test\r\nSubject: message {number} {tag}\r\n"
        f"Message-ID: <{number}.{tag}@acme.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"body {number} \u00e9\u00e8 {'x' * number}\r\n"
    ).encode()


class _Stored:
    def __init__(self) -> None:
        self.tokens: list[TokenSet] = []

    async def __call__(self, tokens: TokenSet) -> None:
        self.tokens.append(tokens)


@pytest.fixture
def email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@acme.test"


@pytest.fixture
async def make_client(gmail_emulator: Any) -> AsyncIterator[Callable[..., GmailClient]]:
    clients: list[GmailClient] = []

    def make(
        email: str,
        *,
        tokens: TokenSet | None = None,
        quota: GmailQuota | None = None,
        on_tokens: _Stored | None = None,
        emulator: Any = None,
        **settings: Any,
    ) -> GmailClient:
        server = emulator or gmail_emulator
        gmail = _settings(server, **settings)
        client = GmailClient(
            gmail,
            tokens or _token_set(server.issue_tokens(email)),
            email=email,
            quota=quota,
            on_tokens=on_tokens,
            transport=GmailTransport(gmail, backoff=FAST_BACKOFF),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def _all_ids(client: GmailClient, **kwargs: Any) -> list[str]:
    ids: list[str] = []
    page_token: str | None = None
    while True:
        page = await client.list_messages(page_token=page_token, **kwargs)
        ids += [ref.id for ref in page.messages]
        page_token = page.next_page_token
        if page_token is None:
            return ids


async def test_oauth_code_flow(gmail_emulator: Any, email: str) -> None:
    settings = _settings(gmail_emulator)
    gmail_emulator.add_user(email)
    url = authorization_url(settings, "state-1", login_hint=email)
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as answer:
        assert answer.status == 302
        location = answer.headers["Location"]
    assert location.startswith(settings.redirect_uri)
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["state-1"]

    tokens = await exchange_code(settings, query["code"][0])
    assert tokens.refresh_token and tokens.access_token
    assert tokens.expires_at > datetime.now(UTC) + timedelta(minutes=30)
    assert set(settings.scopes) <= set(tokens.scopes)

    client = GmailClient(settings, tokens, email=email, quota=None)
    try:
        profile = await client.get_profile()
    finally:
        await client.close()
    assert profile.email_address == email

    refreshed = await refresh(settings, tokens)
    assert refreshed.access_token != tokens.access_token
    assert refreshed.refresh_token == tokens.refresh_token  # Google sends none with a refresh

    await revoke(settings, tokens.refresh_token or "")
    with pytest.raises(AuthError, match="re-authorisation"):
        await refresh(settings, tokens)
    await revoke(settings, tokens.refresh_token or "")  # already revoked: no error


async def test_list_every_page_and_labels(
    gmail_emulator: Any, make_client: Callable[..., GmailClient], email: str
) -> None:
    gmail_emulator.add_user(email)
    gmail_emulator.generate(email, 1_234, seed=3)
    client = make_client(email)
    profile = await client.get_profile()
    ids = await _all_ids(client, max_results=500)
    assert len(ids) == len(set(ids)) == profile.messages_total == 1_234
    labels = {label.id: label for label in await client.list_labels()}
    assert {"INBOX", "SENT", "TRASH", "SPAM"} <= set(labels)
    assert labels["INBOX"].type == "system"
    inbox = await _all_ids(client, label_ids=["INBOX"], include_spam_trash=False)
    assert 0 < len(inbox) < len(ids) and set(inbox) <= set(ids)


async def test_get_messages_returns_exact_raw_bytes(
    gmail_emulator: Any, make_client: Callable[..., GmailClient], email: str
) -> None:
    gmail_emulator.add_user(email)
    raws = {gmail_emulator.add_message(email, _raw(number)): _raw(number) for number in range(120)}
    client = make_client(email)
    before = gmail_emulator.stats.batch_requests
    ids = list(raws)[::-1]
    results = await client.get_messages(ids)
    assert gmail_emulator.stats.batch_requests - before == 3  # 50 + 50 + 20
    assert [result.id for result in results] == ids
    for result in results:
        assert isinstance(result, GmailMessage)
        assert result.raw == raws[result.id] == gmail_emulator.raw(email, result.id)
        assert result.internal_date_ms > 0 and result.history_id > 0 and "INBOX" in result.label_ids

    single = await client.get_message(ids[0])
    assert single.raw == raws[ids[0]]
    metadata = await client.get_message(ids[0], format="minimal")
    assert metadata.raw is None and metadata.id == ids[0]


async def test_deleted_message_is_a_fetch_error_in_its_place(
    gmail_emulator: Any, make_client: Callable[..., GmailClient], email: str
) -> None:
    gmail_emulator.add_user(email)
    ids = [gmail_emulator.add_message(email, _raw(number)) for number in range(10)]
    gmail_emulator.delete_message(email, ids[4])
    client = make_client(email)
    results = await client.get_messages(ids)
    missing = results[4]
    assert isinstance(missing, MessageFetchError)
    assert (missing.id, missing.status) == (ids[4], 404)
    assert all(isinstance(result, GmailMessage) for index, result in enumerate(results) if index != 4)
    with pytest.raises(NotFound):
        await client.get_message(ids[4])


async def test_history_after_changes(
    gmail_emulator: Any, make_client: Callable[..., GmailClient], email: str
) -> None:
    gmail_emulator.add_user(email)
    first, second = (gmail_emulator.add_message(email, _raw(number)) for number in range(2))
    client = make_client(email)
    start = (await client.get_profile()).history_id

    gmail_emulator.modify_labels(email, first, add=("STARRED",), remove=("INBOX",))
    gmail_emulator.delete_message(email, second)
    third = gmail_emulator.add_message(email, _raw(3, "new"))

    page = await client.list_history(start)
    changes = [
        (change.kind, change.message.id, change.label_ids)
        for record in page.records
        for change in record.changes
    ]
    assert ("labelAdded", first, ["STARRED"]) in changes
    assert ("labelRemoved", first, ["INBOX"]) in changes
    assert any(kind == "messageDeleted" and message_id == second for kind, message_id, _ in changes)
    assert any(kind == "messageAdded" and message_id == third for kind, message_id, _ in changes)
    assert page.history_id >= max(record.id for record in page.records) > start
    assert [record.id for record in page.records] == sorted(record.id for record in page.records)

    only_added = await client.list_history(start, history_types=["messageAdded"])
    assert {change.kind for record in only_added.records for change in record.changes} == {"messageAdded"}

    # Paging: one record per page still yields them all.
    seen: list[int] = []
    page_token: str | None = None
    while True:
        small = await client.list_history(start, page_token=page_token, max_results=1)
        seen += [record.id for record in small.records]
        page_token = small.next_page_token
        if page_token is None:
            break
    assert seen == [record.id for record in page.records]


async def test_expired_history_means_full_resync(
    gmail_emulator: Any, make_client: Callable[..., GmailClient], email: str
) -> None:
    gmail_emulator.add_user(email)
    gmail_emulator.add_message(email, _raw(1))
    client = make_client(email)
    start = (await client.get_profile()).history_id
    gmail_emulator.add_message(email, _raw(2))
    gmail_emulator.expire_history(email)
    with pytest.raises(HistoryExpired):
        await client.list_history(start)


async def test_refresh_before_expiry(
    gmail_emulator: Any, make_client: Callable[..., GmailClient], email: str
) -> None:
    gmail_emulator.add_user(email)
    issued = gmail_emulator.issue_tokens(email)
    stored = _Stored()
    # Still valid for a minute, inside the five-minute margin: refreshed before the call.
    client = make_client(email, tokens=_token_set(issued, expires_in_s=60), on_tokens=stored)
    refreshed_before = gmail_emulator.stats.tokens_refreshed
    refused_before = gmail_emulator.stats.auth_failures
    await client.get_profile()
    await client.get_profile()
    assert gmail_emulator.stats.tokens_refreshed - refreshed_before == 1
    assert gmail_emulator.stats.auth_failures == refused_before  # refreshed before, not after a 401
    assert len(stored.tokens) == 1
    assert stored.tokens[0] == client.tokens
    assert client.tokens.access_token != issued["access_token"]
    assert client.tokens.refresh_token == issued["refresh_token"]


async def test_refresh_on_401_after_the_server_expired_the_token(
    gmail_emulator: Any, make_client: Callable[..., GmailClient], email: str
) -> None:
    gmail_emulator.add_user(email)
    ids = [gmail_emulator.add_message(email, _raw(number)) for number in range(60)]
    stored = _Stored()
    client = make_client(email, on_tokens=stored)
    await client.get_profile()
    assert stored.tokens == []

    gmail_emulator.expire_access_tokens()  # the client still believes its token is good
    await client.get_profile()
    assert len(stored.tokens) == 1

    gmail_emulator.expire_access_tokens()
    results = await client.get_messages(ids)  # a batch: refreshed once, the parts sent again
    assert all(isinstance(result, GmailMessage) for result in results)
    assert len(stored.tokens) == 2
    assert stored.tokens[-1] == client.tokens


async def test_revoked_grant_is_an_auth_error(
    gmail_emulator: Any, make_client: Callable[..., GmailClient], email: str
) -> None:
    gmail_emulator.add_user(email)
    issued = gmail_emulator.issue_tokens(email)
    client = make_client(email, tokens=_token_set(issued))
    await client.get_profile()
    gmail_emulator.revoke(issued["refresh_token"])
    with pytest.raises(AuthError, match=r"re-authori[sz]ation"):
        await client.get_profile()


async def test_faults_are_retried_until_everything_arrives(
    gmail_emulator_factory: Callable[..., Any], make_client: Callable[..., GmailClient], email: str
) -> None:
    emulator = await gmail_emulator_factory(seed=7)
    emulator.add_user(email)
    raws = {emulator.add_message(email, _raw(number)): _raw(number) for number in range(150)}
    client = make_client(email, emulator=emulator)
    emulator.set_faults(fault_rate=0.2)
    results = await client.get_messages(list(raws))
    assert [result.raw for result in results if isinstance(result, GmailMessage)] == list(raws.values())
    assert emulator.stats.faults_injected > 0
    assert client.stats.retries > 0

    emulator.set_faults(fault_rate=0.1, drop_rate=0.2)
    results = await client.get_messages(list(raws))
    assert [result.raw for result in results if isinstance(result, GmailMessage)] == list(raws.values())
    assert emulator.stats.connections_dropped > 0


async def test_legacy_quota_at_real_time_without_a_single_429(
    gmail_emulator_factory: Callable[..., Any],
    make_client: Callable[..., GmailClient],
    redis_client: redis.asyncio.Redis,
    email: str,
) -> None:
    emulator = await gmail_emulator_factory(quota="legacy")
    emulator.add_user(email)
    emulator.generate(email, 300, seed=5)
    settings = _settings(emulator, quota_regime="legacy")
    quota = GmailQuota(redis_client, settings, project=f"test-{uuid.uuid4().hex[:8]}")
    client = make_client(email, quota=quota, emulator=emulator, quota_regime="legacy")
    ids = await _all_ids(client)
    assert len(ids) == 300
    results = await client.get_messages(ids)
    assert all(isinstance(result, GmailMessage) for result in results)
    assert emulator.stats.quota_errors == 0
    assert client.stats.rate_limited == 0
    usage = await quota.usage(email)
    assert usage["units_charged"] == 300 * 5 + 5 + 0  # 300 messages.get and one messages.list
    assert usage["user_capacity"] == 125


async def test_two_clients_of_one_user_share_the_bucket(
    gmail_emulator_factory: Callable[..., Any],
    make_client: Callable[..., GmailClient],
    redis_client: redis.asyncio.Redis,
    email: str,
) -> None:
    emulator = await gmail_emulator_factory(quota="legacy")
    emulator.add_user(email)
    ids = [emulator.add_message(email, _raw(number)) for number in range(300)]
    settings = _settings(emulator, quota_regime="legacy")
    project = f"test-{uuid.uuid4().hex[:8]}"
    # Two quotas as two actors on two nodes would have: only Redis is shared.
    clients = [
        make_client(email, quota=GmailQuota(redis_client, settings, project=project), emulator=emulator)
        for _ in range(2)
    ]
    halves = await asyncio.gather(clients[0].get_messages(ids[:150]), clients[1].get_messages(ids[150:]))
    assert all(isinstance(result, GmailMessage) for half in halves for result in half)
    assert emulator.stats.quota_errors == 0
