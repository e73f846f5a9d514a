"""Google's JSON error bodies, as the Gmail API answers them.

{"error": {"code": 404, "message": "Requested entity was not found.",
           "errors": [{"message": "...", "domain": "global", "reason": "notFound"}],
           "status": "NOT_FOUND"}}
"""

from __future__ import annotations

from typing import Any

import msgspec

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An error answer of the API; `body()` is what goes on the wire."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str,
        domain: str = "global",
        status: str | None = None,
        error_message: str | None = None,
        location: str | None = None,
        location_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.status = status or _STATUS_NAMES.get(code, "UNKNOWN")
        self.error_message = error_message or message
        self.location = location
        self.location_type = location_type
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"message": self.error_message, "domain": self.domain, "reason": self.reason}
        if self.location is not None:
            item["location"] = self.location
            item["locationType"] = self.location_type or "parameter"
        return {
            "error": {"code": self.code, "message": self.message, "errors": [item], "status": self.status}
        }

    def body(self) -> bytes:
        return msgspec.json.encode(self.to_dict())


def not_found() -> ApiError:
    return ApiError(404, "Requested entity was not found.", reason="notFound")


def invalid_argument(message: str, *, location: str | None = None) -> ApiError:
    return ApiError(400, message, reason="invalidArgument", location=location)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, reason="badRequest")


def invalid_value(field: str, kind: str, value: str) -> ApiError:
    # Google's wording for a query parameter of the wrong type or outside its enum.
    return ApiError(
        400, f"Invalid value at '{field}' ({kind}), \"{value}\"", reason="invalid", location=field
    )


def required(field: str) -> ApiError:
    return ApiError(
        400, f"Required parameter: {field}", reason="required", location=field, location_type="parameter"
    )


def invalid_json(detail: str) -> ApiError:
    return ApiError(400, f"Invalid JSON payload received. {detail}", reason="parseError")


def missing_credentials() -> ApiError:
    return ApiError(
        401,
        "Request is missing required authentication credential. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        reason="required",
        error_message="Login Required.",
        location="Authorization",
        location_type="header",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
    )


def invalid_credentials() -> ApiError:
    return ApiError(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
        "or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        reason="authError",
        error_message="Invalid Credentials",
        location="Authorization",
        location_type="header",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
    )


def insufficient_scopes() -> ApiError:
    return ApiError(
        403,
        "Request had insufficient authentication scopes.",
        reason="insufficientPermissions",
        error_message="Insufficient Permission",
    )


def delegation_denied(user_id: str) -> ApiError:
    return ApiError(403, f"Delegation denied for {user_id}", reason="forbidden")


def user_rate_limited(retry_after_rfc3339: str) -> ApiError:
    message = f"User-rate limit exceeded.  Retry after {retry_after_rfc3339}"
    return ApiError(429, message, reason="rateLimitExceeded", domain="usageLimits")


def project_rate_limited(project: str) -> ApiError:
    message = (
        "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service "
        f"'gmail.googleapis.com' for consumer 'project:{project}'."
    )
    return ApiError(
        403, message, reason="rateLimitExceeded", domain="usageLimits", status="PERMISSION_DENIED"
    )


def backend_error() -> ApiError:
    return ApiError(500, "Backend Error", reason="backendError")


def unavailable() -> ApiError:
    return ApiError(503, "The service is currently unavailable.", reason="backendError")


def internal_error() -> ApiError:
    return ApiError(500, "Internal error encountered.", reason="backendError")


def method_not_found() -> ApiError:
    # Google answers an unknown path or verb under /gmail/v1 with a plain 404.
    return ApiError(404, "Method not found.", reason="notFound")
