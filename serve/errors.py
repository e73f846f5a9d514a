"""The one place where mailray errors become HTTP statuses and bodies.

Every 4xx body says what was wrong: `{"error": {"code", "message", "field"?}}`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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

log = logging.getLogger(__name__)

# Most specific first: the first isinstance match wins.
STATUS_BY_ERROR: tuple[tuple[type[MailrayError], int], ...] = (
    (ValidationError, 422),
    (Unauthorized, 401),
    (Forbidden, 403),
    (InvalidToken, 404),
    (NotFound, 404),
    (Conflict, 409),
    (QuotaExceeded, 429),
    (HistoryExpired, 409),
    (AuthError, 502),
    (TransientError, 503),
    (ProviderError, 502),
    (StorageError, 503),
    (CryptoError, 500),
    (ConfigError, 500),
)


def status_for(error: MailrayError) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return {"error": body}


def error_response(error: MailrayError) -> JSONResponse:
    status = status_for(error)
    if status >= 500:
        log.error("request failed: %s", error, exc_info=error)
    message = error.message if status < 500 else f"{error.code} error; see the server log"
    headers: dict[str, str] = {}
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, QuotaExceeded) and error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
    return JSONResponse(
        error_body(error.code, message, getattr(error, "field", None)), status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_mailray_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, MailrayError)
        return error_response(error)

    async def on_request_validation(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        first = error.errors()[0] if error.errors() else {}
        location = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{location}: {first.get('msg', 'invalid request')}" if location else first.get("msg", "")
        return JSONResponse(error_body("invalid", message, location or None), status_code=422)

    async def on_http_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse(error_body(code, str(error.detail)), status_code=error.status_code)

    app.add_exception_handler(MailrayError, on_mailray_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
