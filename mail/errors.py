"""The one error hierarchy of mailray.

    MailrayError                    anything mailray raises on purpose
     +-- ConfigError                settings that cannot be used (bad type, unknown key, missing key)
     +-- ValidationError            input that breaks a rule; `field` names the culprit
     +-- NotFound                   the resource does not exist, or the caller may not know it does
     |    +-- InvalidToken          a tracking token that is malformed, forged or altered
     +-- Unauthorized               no credentials, or credentials that do not check out
     +-- Forbidden                  authenticated, but not allowed to do this
     +-- Conflict                   the request clashes with the current state
     +-- CryptoError                ciphertext that cannot be decrypted (wrong key, tampered)
     +-- StorageError               Postgres or Redis failed in a way the caller cannot fix
     +-- ProviderError              a mail provider (Gmail, SMTP) failed
          +-- TransientError        worth retrying later
          +-- AuthError             the provider refused our credentials (reauth needed)
          +-- QuotaExceeded         the provider's quota is spent; `retry_after_s` says when to retry
          +-- HistoryExpired        the history cursor is older than the provider keeps: full resync

HTTP status codes are mapped from these in one place: `serve.errors`.
"""

from __future__ import annotations


class MailrayError(Exception):
    """Root of every error mailray raises on purpose."""

    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(MailrayError):
    code = "config"


class ValidationError(MailrayError):
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(MailrayError):
    code = "not_found"


class InvalidToken(NotFound):
    """A tracking token that is malformed, forged or altered: to its sender, no such link (404).

    Its code stays `not_found`, so a forged link reads like any link that does not exist.
    """


class Unauthorized(MailrayError):
    code = "unauthorized"


class Forbidden(MailrayError):
    code = "forbidden"


class Conflict(MailrayError):
    code = "conflict"


class CryptoError(MailrayError):
    code = "crypto"


class StorageError(MailrayError):
    code = "storage"


class ProviderError(MailrayError):
    code = "provider"


class TransientError(ProviderError):
    code = "provider_unavailable"


class AuthError(ProviderError):
    code = "provider_auth"


class QuotaExceeded(ProviderError):
    code = "quota_exceeded"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class HistoryExpired(ProviderError):
    code = "history_expired"
