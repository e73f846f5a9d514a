"""serve.errors: every mailray error has a deliberate HTTP status, and bodies say what was wrong
(4xx) without leaking internals (5xx)."""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

import pytest

import mail.errors
from mail.errors import (
    AuthError,
    ConfigError,
    Conflict,
    CryptoError,
    Forbidden,
    HistoryExpired,
    InvalidToken,
    MailrayError,
    NotFound,
    ProviderError,
    QuotaExceeded,
    StorageError,
    TransientError,
    Unauthorized,
    ValidationError,
)
from serve.errors import STATUS_BY_ERROR, error_response, status_for

# The intended status of every error class. A new class in mail.errors fails
# test_every_error_class_has_a_decided_status until it is added here and to STATUS_BY_ERROR.
EXPECTED_STATUS: dict[type[MailrayError], int] = {
    ValidationError: 422,
    Unauthorized: 401,
    Forbidden: 403,
    InvalidToken: 404,
    NotFound: 404,
    Conflict: 409,
    QuotaExceeded: 429,
    HistoryExpired: 409,
    AuthError: 502,
    TransientError: 503,
    ProviderError: 502,
    StorageError: 503,
    CryptoError: 500,
    ConfigError: 500,
}

INTERNAL = "connection to db-7.internal:5432 failed: password authentication failed for user 'mail'"


def _error_classes() -> set[type[MailrayError]]:
    return {
        value
        for value in vars(mail.errors).values()
        if inspect.isclass(value)
        and issubclass(value, MailrayError)
        and value is not MailrayError
        and value.__module__ == mail.errors.__name__
    }


def _make(error_type: type[MailrayError], message: str = "boom") -> MailrayError:
    if error_type is ValidationError:
        return ValidationError(message, field="name")
    if error_type is QuotaExceeded:
        return QuotaExceeded(message, retry_after_s=30)
    return error_type(message)


def _body(error: MailrayError) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = error_response(error)
    assert response.media_type == "application/json"
    return response.status_code, json.loads(bytes(response.body)), dict(response.headers)


def test_every_error_class_has_a_decided_status() -> None:
    classes = _error_classes()
    assert len(classes) >= 12
    assert classes == set(EXPECTED_STATUS), "add the new error to EXPECTED_STATUS and serve.errors"
    explicit = {error_type for error_type, _ in STATUS_BY_ERROR}
    missing = sorted(cls.__name__ for cls in classes - explicit)
    assert not missing, f"no explicit entry in serve.errors.STATUS_BY_ERROR for {missing}"


@pytest.mark.parametrize("error_type", list(EXPECTED_STATUS), ids=lambda cls: cls.__name__)
def test_status_for_maps_each_error_to_its_intended_status(error_type: type[MailrayError]) -> None:
    assert status_for(_make(error_type)) == EXPECTED_STATUS[error_type]
    # The table says the same, and no earlier, broader entry shadows it.
    assert dict(STATUS_BY_ERROR)[error_type] == EXPECTED_STATUS[error_type]


def test_subclasses_inherit_their_parents_status_and_the_root_is_500() -> None:
    class NoSuchMailbox(NotFound):
        pass

    class RateLimitedByGmail(QuotaExceeded):
        pass

    assert status_for(NoSuchMailbox("x")) == 404
    assert status_for(RateLimitedByGmail("x")) == 429
    assert status_for(MailrayError("x")) == 500


@pytest.mark.parametrize(
    "error_type", [cls for cls, status in EXPECTED_STATUS.items() if status < 500], ids=lambda c: c.__name__
)
def test_4xx_bodies_carry_code_and_message(error_type: type[MailrayError]) -> None:
    error = _make(error_type, "the name is taken")
    status, body, _ = _body(error)
    assert status == EXPECTED_STATUS[error_type]
    expected: dict[str, Any] = {"code": error_type.code, "message": "the name is taken"}
    if error_type is ValidationError:
        expected["field"] = "name"
    assert body == {"error": expected}


def test_validation_error_without_field_has_no_field_key() -> None:
    status, body, _ = _body(ValidationError("limit must be positive"))
    assert status == 422
    assert body == {"error": {"code": "invalid", "message": "limit must be positive"}}


def test_error_codes_are_distinct() -> None:
    # InvalidToken answers like any missing resource on purpose: a forged link learns nothing.
    codes = [cls.code for cls in EXPECTED_STATUS if cls is not InvalidToken]
    assert len(set(codes)) == len(codes)
    assert InvalidToken.code == NotFound.code


@pytest.mark.parametrize(
    "error_type", [cls for cls, status in EXPECTED_STATUS.items() if status >= 500], ids=lambda c: c.__name__
)
def test_5xx_bodies_do_not_leak_the_internal_message(
    error_type: type[MailrayError], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="serve.errors"):
        status, body, _ = _body(error_type(INTERNAL))
    assert status == EXPECTED_STATUS[error_type]
    assert body["error"]["code"] == error_type.code
    assert set(body["error"]) == {"code", "message"}
    serialized = json.dumps(body)
    for secret in ("db-7.internal", "5432", "password", "'mail'"):
        assert secret not in serialized
    # ... but the server log has it, for whoever investigates.
    assert INTERNAL in caplog.text


@pytest.mark.parametrize(("retry_after_s", "header"), [(30, "30"), (29.6, "30"), (0.2, "1"), (0, "1")])
def test_quota_exceeded_is_429_with_retry_after(retry_after_s: float, header: str) -> None:
    status, body, headers = _body(QuotaExceeded("Gmail quota spent", retry_after_s=retry_after_s))
    assert status == 429
    assert headers["retry-after"] == header
    assert body == {"error": {"code": "quota_exceeded", "message": "Gmail quota spent"}}


def test_quota_exceeded_without_a_delay_has_no_retry_after() -> None:
    status, _, headers = _body(QuotaExceeded("Gmail quota spent"))
    assert status == 429
    assert "retry-after" not in headers


def test_unauthorized_asks_for_a_bearer_token_and_others_do_not() -> None:
    assert _body(Unauthorized("missing API key"))[2]["www-authenticate"] == "Bearer"
    assert "www-authenticate" not in _body(Forbidden("admins only"))[2]
