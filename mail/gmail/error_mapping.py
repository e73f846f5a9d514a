"""The one mapping from Gmail API failures (HTTP statuses, aiohttp exceptions) to mailray errors.

    401                                        AccessTokenRejected (an AuthError): the client
                                               refreshes the token once and tries again
    403/429 rateLimitExceeded,
            userRateLimitExceeded (any 429)    QuotaExceeded, retry_after_s from Retry-After or
                                               from "Retry after <time>" in the message
    403 otherwise                              AuthError (scopes missing, access blocked)
    400                                        ValidationError
    404 from users.history.list                HistoryExpired: the start history id is too old
    404 otherwise                              NotFound
    408, 5xx, connection errors, timeouts      TransientError
    other 4xx                                  ProviderError

Gmail's error body is {"error": {"code", "message", "errors": [{"reason", ...}], "details":
[{"reason", ...}]}}; reasons come in camelCase (`rateLimitExceeded`) or, in newer answers,
upper case (`RATE_LIMIT_EXCEEDED`), and are compared in one normal form.
"""

from __future__ import annotations

import aiohttp
import msgspec

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
from mail.gmail.backoff import retry_after_s

_RATE_LIMIT_REASONS = frozenset({"ratelimitexceeded", "userratelimitexceeded"})
_RATE_LIMIT_STATUSES = frozenset({403, 429})
# Failures of the connection rather than of the request: aiohttp's, the socket's, the clock's.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, ConnectionError)


class AccessTokenRejected(AuthError):
    """The API answered 401: the access token expired or was revoked before its time."""


class _ErrorItem(msgspec.Struct, kw_only=True):
    reason: str = ""
    message: str = ""


class _ErrorBody(msgspec.Struct, kw_only=True):
    code: int = 0
    message: str = ""
    status: str = ""
    errors: list[_ErrorItem] = msgspec.field(default_factory=list)
    details: list[_ErrorItem] = msgspec.field(default_factory=list)


class _ErrorEnvelope(msgspec.Struct, kw_only=True):
    error: _ErrorBody | str = ""
    error_description: str = ""


_decode_error = msgspec.json.Decoder(_ErrorEnvelope).decode


def _normal(reason: str) -> str:
    return reason.replace("_", "").lower()


def error_details(body: bytes) -> tuple[str, frozenset[str]]:
    """The message and the reasons (in normal form) of a Gmail error body."""
    try:
        envelope = _decode_error(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return body[:200].decode("utf-8", "replace").strip(), frozenset()
    if isinstance(envelope.error, str):
        return envelope.error_description or envelope.error, frozenset({_normal(envelope.error)})
    error = envelope.error
    reasons = {_normal(item.reason) for item in (*error.errors, *error.details) if item.reason}
    if error.status:
        reasons.add(_normal(error.status))
    message = error.message or next((item.message for item in error.errors if item.message), "")
    return message, frozenset(reasons)


def map_error(failure: ApiResponse | BaseException, *, method_id: str) -> MailrayError:
    """The mailray error for a failed Gmail call: a non-2xx response or a connection failure.

    Exceptions other than connection failures are not the provider's fault: they are returned
    as a TransientError only when listed in CONNECTION_ERRORS, otherwise re-raised.
    """
    if isinstance(failure, BaseException):
        if isinstance(failure, CONNECTION_ERRORS):
            kind = "timed out" if isinstance(failure, TimeoutError) else "connection failed"
            return TransientError(f"Gmail {method_id}: {kind}: {failure!r}")
        raise failure
    status = failure.status
    message, reasons = error_details(failure.body)
    text = f"Gmail {method_id}: HTTP {status}" + (f": {message}" if message else "")
    if status == 401:
        return AccessTokenRejected(text)
    if status == 429 or (status in _RATE_LIMIT_STATUSES and reasons & _RATE_LIMIT_REASONS):
        return QuotaExceeded(text, retry_after_s=retry_after_s(failure.headers, message))
    if status == 403:
        return AuthError(text)
    if status == 400:
        return ValidationError(text)
    if status == 404:
        if method_id == "users.history.list":
            return HistoryExpired(
                f"Gmail {method_id}: the start history id is older than Gmail keeps; a full resync is needed"
            )
        return NotFound(text)
    if status == 408 or status >= 500:
        return TransientError(text)
    return ProviderError(text)


def is_retryable(error: MailrayError) -> bool:
    """Worth the same call again after a wait: transient failures and rate limits."""
    return isinstance(error, TransientError | QuotaExceeded)
