"""OAuth pieces that need no server: the consent URL, refresh timing, token answers, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest

from mail.errors import AuthError, QuotaExceeded, TransientError
from mail.gmail import oauth
from mail.gmail.oauth import authorization_url, credentials_for, needs_refresh
from models.gmail import TokenSet
from models.settings import GmailSettings

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = msgspec.structs.replace(
    GmailSettings(),
    oauth_auth_uri="http://127.0.0.1:9000/o/oauth2/auth",
    oauth_token_uri="http://127.0.0.1:9000/token",
    client_id="mailray-dev",
    client_secret="mailray-dev-secret",
)


def _tokens(expires_in_s: float, refresh_token: str | None = "1//refresh") -> TokenSet:
    return TokenSet(
        access_token="ya29.access",
        refresh_token=refresh_token,
        expires_at=NOW + timedelta(seconds=expires_in_s),
        scopes=["https://www.googleapis.com/auth/gmail.readonly"],
    )


def test_authorization_url() -> None:
    url = authorization_url(SETTINGS, "state-123", login_hint="ana@acme.test")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == SETTINGS.oauth_auth_uri
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert query == {
        "response_type": "code",
        "client_id": "mailray-dev",
        "redirect_uri": SETTINGS.redirect_uri,
        "scope": " ".join(SETTINGS.scopes),
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
        "state": "state-123",
        "login_hint": "ana@acme.test",
    }
    assert "+" not in parts.query  # spaces as %20
    assert "login_hint" not in authorization_url(SETTINGS, "s")


def test_authorization_url_keeps_an_existing_query() -> None:
    settings = msgspec.structs.replace(SETTINGS, oauth_auth_uri="http://h/auth?hd=acme.test")
    assert authorization_url(settings, "s").startswith("http://h/auth?hd=acme.test&response_type=code")


@pytest.mark.parametrize(
    ("expires_in_s", "margin_s", "expected"),
    [
        (3600, 300, False),
        (301, 300, False),
        (300, 300, True),  # refresh before expiry, not after
        (10, 300, True),
        (-5, 300, True),
        (10, 0, False),
        (0, 0, True),
    ],
)
def test_needs_refresh(expires_in_s: float, margin_s: float, expected: bool) -> None:
    assert needs_refresh(_tokens(expires_in_s), NOW, margin_s) is expected


def test_default_margin_is_five_minutes() -> None:
    assert needs_refresh(_tokens(299), NOW)
    assert not needs_refresh(_tokens(301), NOW)


def test_credentials_for_google_auth() -> None:
    credentials = credentials_for(SETTINGS, _tokens(3600))
    assert credentials.token == "ya29.access"
    assert credentials.refresh_token == "1//refresh"
    assert credentials.token_uri == "http://127.0.0.1:9000/token"  # refreshes go to the configured server
    assert credentials.client_id == "mailray-dev"
    assert credentials.client_secret == "mailray-dev-secret"
    assert credentials.scopes == ["https://www.googleapis.com/auth/gmail.readonly"]
    assert credentials.expiry == (NOW + timedelta(seconds=3600)).replace(tzinfo=None)
    assert credentials_for(SETTINGS, _tokens(-10)).expired


def test_token_answer_becomes_a_token_set() -> None:
    body = b'{"access_token": "ya29.a", "expires_in": 3599, "refresh_token": "1//r", "scope": "openid email"}'
    tokens = oauth._token_set(body, NOW, "code exchange")
    assert tokens == TokenSet(
        access_token="ya29.a",
        refresh_token="1//r",
        expires_at=NOW + timedelta(seconds=3599),
        scopes=["openid", "email"],
    )


def test_refresh_answer_keeps_the_refresh_token_and_scopes() -> None:
    previous = _tokens(-1)
    tokens = oauth._token_set(b'{"access_token": "ya29.b", "expires_in": 3600}', NOW, "refresh", previous)
    assert tokens.refresh_token == "1//refresh"
    assert tokens.scopes == previous.scopes
    assert tokens.access_token == "ya29.b"


def test_unreadable_token_answer_is_transient() -> None:
    with pytest.raises(TransientError):
        oauth._token_set(b"<html>", NOW, "refresh")


@pytest.mark.parametrize(
    ("status", "body", "what", "expected", "text"),
    [
        (400, b'{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}',
         "refresh", AuthError, "re-authorisation"),
        (400, b'{"error": "invalid_grant"}', "code exchange", AuthError, "already used"),
        (401, b'{"error": "invalid_client", "error_description": "Unauthorized"}', "refresh", AuthError,
         "client_id"),
        (503, b"down", "refresh", TransientError, "HTTP 503"),
        (429, b'{"error": "rate_limit_exceeded"}', "refresh", QuotaExceeded, "HTTP 429"),
    ],
)  # fmt: skip
def test_token_endpoint_errors(
    status: int, body: bytes, what: str, expected: type[Exception], text: str
) -> None:
    error = oauth._token_error(status, {}, oauth._oauth_error(body), what)
    assert type(error) is expected
    assert text in str(error)


async def test_refresh_without_a_refresh_token_needs_reauthorisation() -> None:
    with pytest.raises(AuthError, match="re-authorisation"):
        await oauth.refresh(SETTINGS, _tokens(-1, refresh_token=None))
