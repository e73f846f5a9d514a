"""Gmail failures map to mailray's errors in one table; waits follow backoff and Retry-After."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import aiohttp
import pytest

from mail.errors import (
    AuthError,
    HistoryExpired,
    MailrayError,
    NotFound,
    ProviderError,
    QuotaExceeded,
    TransientError,
    ValidationError,
)
from mail.gmail.api_request import ApiResponse
from mail.gmail.backoff import Backoff, retry_after_s
from mail.gmail.error_mapping import AccessTokenRejected, error_details, is_retryable, map_error

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def _google_error(code: int, reason: str, message: str = "m", *, status: str = "") -> bytes:
    error = {"code": code, "message": message, "errors": [{"reason": reason, "domain": "global"}]}
    if status:
        error["status"] = status
    return json.dumps({"error": error}).encode()


def _response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse(status=status, headers=headers or {}, body=body)


@pytest.mark.parametrize(
    ("status", "reason", "method_id", "expected"),
    [
        (401, "authError", "users.messages.get", AccessTokenRejected),
        (429, "rateLimitExceeded", "users.messages.get", QuotaExceeded),
        (429, "", "users.messages.get", QuotaExceeded),
        (403, "rateLimitExceeded", "users.messages.get", QuotaExceeded),
        (403, "userRateLimitExceeded", "users.messages.list", QuotaExceeded),
        (403, "insufficientPermissions", "users.messages.get", AuthError),
        (403, "forbidden", "users.getProfile", AuthError),
        (400, "invalidArgument", "users.messages.get", ValidationError),
        (404, "notFound", "users.history.list", HistoryExpired),
        (404, "notFound", "users.messages.get", NotFound),
        (404, "notFound", "users.messages.attachments.get", NotFound),
        (408, "", "users.messages.get", TransientError),
        (500, "backendError", "users.messages.get", TransientError),
        (502, "", "batch", TransientError),
        (503, "backendError", "users.history.list", TransientError),
        (409, "aborted", "users.labels.create", ProviderError),
    ],
)
def test_status_table(status: int, reason: str, method_id: str, expected: type[MailrayError]) -> None:
    error = map_error(_response(status, _google_error(status, reason)), method_id=method_id)
    assert type(error) is expected
    assert isinstance(error, ProviderError | ValidationError | NotFound)
    if expected is not HistoryExpired:
        assert f"HTTP {status}" in error.message and method_id in error.message


def test_401_is_an_auth_error() -> None:
    assert isinstance(map_error(_response(401), method_id="users.getProfile"), AuthError)


def test_upper_case_reasons_from_newer_answers() -> None:
    body = json.dumps(
        {"error": {"code": 403, "message": "slow down", "details": [{"reason": "RATE_LIMIT_EXCEEDED"}]}}
    ).encode()
    assert isinstance(map_error(_response(403, body), method_id="users.messages.get"), QuotaExceeded)


@pytest.mark.parametrize(
    "exception",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientConnectionError("refused"),
        aiohttp.ClientPayloadError("truncated"),
        TimeoutError(),
        ConnectionResetError(),
    ],
)
def test_connection_failures_are_transient(exception: BaseException) -> None:
    error = map_error(exception, method_id="users.messages.get")
    assert isinstance(error, TransientError)
    assert is_retryable(error)


def test_other_exceptions_are_not_swallowed() -> None:
    with pytest.raises(KeyError):
        map_error(KeyError("bug"), method_id="users.messages.get")


def test_retryable() -> None:
    assert is_retryable(QuotaExceeded("q"))
    assert is_retryable(TransientError("t"))
    for error in (AuthError("a"), NotFound("n"), ValidationError("v"), HistoryExpired("h")):
        assert not is_retryable(error)


def test_quota_error_carries_retry_after() -> None:
    header = _response(429, _google_error(429, "rateLimitExceeded"), {"retry-after": "7"})
    error = map_error(header, method_id="users.messages.get")
    assert isinstance(error, QuotaExceeded) and error.retry_after_s == 7
    body = _google_error(
        429, "rateLimitExceeded", "User-rate limit exceeded.  Retry after 2099-01-01T00:00:00Z"
    )
    error = map_error(_response(429, body), method_id="users.messages.get")
    assert isinstance(error, QuotaExceeded) and error.retry_after_s is not None
    assert error.retry_after_s > 3600


@pytest.mark.parametrize(
    ("headers", "message", "expected"),
    [
        ({"retry-after": "5"}, "", 5.0),
        ({"retry-after": "0.25"}, "", 0.25),
        ({"retry-after": "Fri, 01 May 2026 12:00:30 GMT"}, "", 30.0),
        ({}, "User-rate limit exceeded.  Retry after 2026-05-01T12:00:02.500Z", 2.5),
        ({}, "Retry after 2026-05-01T11:59:00Z", 0.0),  # already past: no wait
        ({}, "retry after 3s", 3.0),
        ({"retry-after": "soon"}, "Retry after 2026-05-01T12:00:04Z", 4.0),
        ({}, "User-rate limit exceeded.", None),
        ({"retry-after": "garbage"}, "", None),
    ],
)
def test_retry_after(headers: dict[str, str], message: str, expected: float | None) -> None:
    assert retry_after_s(headers, message, now=NOW) == expected


def test_error_details_of_odd_bodies() -> None:
    assert error_details(b"<html>Bad Gateway</html>") == ("<html>Bad Gateway</html>", frozenset())
    assert error_details(b'{"error": "invalid_grant", "error_description": "Bad"}') == (
        "Bad",
        frozenset({"invalidgrant"}),
    )
    message, reasons = error_details(_google_error(404, "notFound", "gone", status="NOT_FOUND"))
    assert message == "gone" and reasons == {"notfound"}


def test_backoff_ceiling_doubles_from_half_a_second_to_32() -> None:
    backoff = Backoff()
    assert [backoff.ceiling(attempt) for attempt in range(9)] == [0.5, 1, 2, 4, 8, 16, 32, 32, 32]
    assert backoff.ceiling(10_000) == 32


def test_backoff_is_full_jitter() -> None:
    backoff = Backoff()
    assert backoff.delay(3, random_fraction=lambda: 0.0) == 0.0
    assert backoff.delay(3, random_fraction=lambda: 0.5) == 2.0
    assert backoff.delay(3, random_fraction=lambda: 0.999) == pytest.approx(3.996)
    delays = [backoff.delay(4) for _ in range(2000)]
    assert 0 <= min(delays) < 0.5 and 7.5 < max(delays) <= 8


def test_backoff_never_undercuts_the_server() -> None:
    backoff = Backoff()
    assert backoff.delay(0, retry_after_s=10, random_fraction=lambda: 1.0) == 10
    assert backoff.delay(6, retry_after_s=1, random_fraction=lambda: 1.0) == 32
