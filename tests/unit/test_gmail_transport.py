"""The transport's retries, with a scripted server in place of HTTP and a fake sleep."""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec
import pytest

from mail.errors import AuthError, MailrayError, NotFound, QuotaExceeded, TransientError
from mail.gmail.api_request import ApiResponse
from mail.gmail.discovery import GmailRequests
from mail.gmail.transport import GmailTransport
from models.settings import GmailSettings
from tests.unit.gmail_fake_api import Answer, FakeGmail, Sleeps

ENDPOINT = "http://127.0.0.1:8765"
REQUESTS = GmailRequests(ENDPOINT)


def _transport(server: FakeGmail, sleeps: Sleeps, *, max_retries: int = 6) -> GmailTransport:
    settings = msgspec.structs.replace(GmailSettings(), api_endpoint=ENDPOINT, max_retries=max_retries)
    return server.install(GmailTransport(settings, sleep=sleeps, random_fraction=lambda: 1.0))


def _ids(results: Sequence[ApiResponse | MailrayError]) -> list[str | int]:
    """The id of each successful answer, the status of each failed one."""
    out: list[str | int] = []
    for result in results:
        assert isinstance(result, ApiResponse)
        out.append(json.loads(result.body)["id"] if result.ok else result.status)
    return out


async def test_single_call_retries_transient_failures_with_backoff() -> None:
    server = FakeGmail(lambda _, seen: (503, {}) if seen < 3 else (200, {}))
    sleeps = Sleeps()
    transport = _transport(server, sleeps)
    response = await transport.call(
        REQUESTS.get_message("m1"), access_token=server.access_token, before_send=server.charge
    )
    assert json.loads(response.body)["id"] == "m1"
    assert sleeps.waits == [0.5, 1.0, 2.0]  # full jitter at its ceiling (random_fraction = 1)
    assert len(server.charged) == 4  # every attempt is charged to the quota
    assert transport.stats.retries == 3 and transport.stats.transient_failures == 3


async def test_single_call_gives_up_after_max_retries() -> None:
    server = FakeGmail(lambda _, seen: None)  # every connection dropped
    sleeps = Sleeps()
    transport = _transport(server, sleeps, max_retries=4)
    with pytest.raises(TransientError, match="connection failed"):
        await transport.call(REQUESTS.get_message("m1"), access_token=server.access_token)
    assert server.asked["m1"] == 5
    assert sleeps.waits == [0.5, 1.0, 2.0, 4.0]


async def test_rate_limit_waits_as_long_as_the_server_says() -> None:
    server = FakeGmail(lambda _, seen: (429, {"retry-after": "9"}) if seen == 0 else (200, {}))
    sleeps = Sleeps()
    transport = _transport(server, sleeps)
    await transport.call(REQUESTS.get_message("m1"), access_token=server.access_token)
    assert sleeps.waits == [9.0]
    assert transport.stats.rate_limited == 1


async def test_a_very_long_retry_after_is_left_to_the_caller() -> None:
    server = FakeGmail(lambda _, seen: (429, {"retry-after": "3600"}))
    sleeps = Sleeps()
    with pytest.raises(QuotaExceeded) as caught:
        await _transport(server, sleeps).call(REQUESTS.get_message("m1"), access_token=server.access_token)
    assert caught.value.retry_after_s == 3600
    assert sleeps.waits == []


@pytest.mark.parametrize(("status", "error"), [(404, NotFound), (401, AuthError)])
async def test_final_answers_are_not_retried(status: int, error: type[MailrayError]) -> None:
    server = FakeGmail(lambda _, seen: (status, {}))
    sleeps = Sleeps()
    with pytest.raises(error):
        await _transport(server, sleeps).call(REQUESTS.get_message("m1"), access_token=server.access_token)
    assert server.asked["m1"] == 1 and sleeps.waits == []


async def test_send_is_not_retried_after_a_server_error() -> None:
    server = FakeGmail(lambda _, seen: (500, {}))
    sleeps = Sleeps()
    with pytest.raises(TransientError):
        await _transport(server, sleeps).call(
            REQUESTS.get_message("send"), access_token=server.access_token, idempotent=False
        )
    assert server.asked["send"] == 1
    # ... but it is after a rate limit: the server did not act on the request.
    limited = FakeGmail(lambda _, seen: (429, {"retry-after": "1"}) if seen == 0 else (200, {}))
    await _transport(limited, sleeps).call(
        REQUESTS.get_message("send"), access_token=limited.access_token, idempotent=False
    )
    assert limited.asked["send"] == 2


async def test_batch_retries_only_the_failed_parts() -> None:
    flaky = {"m2": 2, "m4": 1}  # failures before success, per message

    def script(message_id: str, seen: int) -> Answer:
        if message_id == "m3":
            return (404, {})
        if message_id == "m5" and seen == 0:
            return None  # left out of the first answer
        if seen < flaky.get(message_id, 0):
            return (503, {}) if message_id == "m2" else (429, {"retry-after": "3"})
        return (200, {})

    server = FakeGmail(script)
    sleeps = Sleeps()
    transport = _transport(server, sleeps)
    requests = [REQUESTS.get_message(f"m{i}") for i in range(1, 7)]
    results = await transport.call_batch(
        requests, access_token=server.access_token, before_send=server.charge
    )
    assert _ids(results) == ["m1", "m2", 404, "m4", "m5", "m6"]
    assert server.exchanges == [
        ["m1", "m2", "m3", "m4", "m5", "m6"],
        ["m2", "m4", "m5"],  # the 404 is final, the rest of the first answer stood
        ["m2"],
    ]
    assert server.charged == server.exchanges  # every attempt charged for what it sent
    assert sleeps.waits == [3.0, 1.0]  # the first wait honours m4's Retry-After
    assert transport.stats.retries == 4


async def test_batch_outer_failure_retries_everything_pending() -> None:
    server = FakeGmail(lambda _, seen: (200, {}), batch_status=lambda exchange: 503 if exchange == 1 else 200)
    sleeps = Sleeps()
    requests = [REQUESTS.get_message(f"m{i}") for i in range(1, 4)]
    results = await _transport(server, sleeps).call_batch(requests, access_token=server.access_token)
    assert _ids(results) == ["m1", "m2", "m3"]
    assert len(server.exchanges) == 2 and sleeps.waits == [0.5]


async def test_batch_part_failing_for_good_is_returned_as_its_last_answer() -> None:
    server = FakeGmail(lambda message_id, seen: (500, {}) if message_id == "m2" else (200, {}))
    sleeps = Sleeps()
    requests = [REQUESTS.get_message(f"m{i}") for i in range(1, 4)]
    results = await _transport(server, sleeps, max_retries=3).call_batch(
        requests, access_token=server.access_token
    )
    assert _ids(results) == ["m1", 500, "m3"]
    assert server.asked["m2"] == 4 and server.asked["m1"] == 1
    assert sleeps.waits == [0.5, 1.0, 2.0]


async def test_batch_that_never_gets_through_returns_the_error_per_part() -> None:
    server = FakeGmail(lambda _, seen: (200, {}), batch_status=lambda exchange: 502)
    sleeps = Sleeps()
    results = await _transport(server, sleeps, max_retries=2).call_batch(
        [REQUESTS.get_message("m1"), REQUESTS.get_message("m2")], access_token=server.access_token
    )
    assert all(isinstance(result, TransientError) for result in results)
    assert len(server.exchanges) == 3


async def test_batch_uri_is_the_configured_server() -> None:
    transport = GmailTransport(msgspec.structs.replace(GmailSettings(), api_endpoint=ENDPOINT + "/"))
    assert transport.batch_uri == ENDPOINT + "/batch/gmail/v1"
    await transport.close()
