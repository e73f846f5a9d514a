"""OAuth 2.0 for Gmail: the consent URL, the code exchange, refreshes and revocation.

Endpoints come from GmailSettings (`oauth_auth_uri`, `oauth_token_uri`, `oauth_revoke_uri`), so
the emulator or any compatible server can stand in for Google. The authorization URL asks for
offline access with `prompt=consent`, so Google hands out a refresh token every time the user
consents (without it, a second consent returns none). Access tokens live about an hour; they
are refreshed `REFRESH_MARGIN_S` before they expire rather than after a 401. A refresh that
answers `invalid_grant` means the user revoked access, the refresh token expired (unused for six
months, or the app is in testing) or the password changed: only a new consent helps.

The token endpoint is called with aiohttp; `credentials_for` hands the same tokens to code that
uses google-auth directly (its `token_uri` decides where google-auth sends refreshes).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import aiohttp
import msgspec
from google.oauth2.credentials import Credentials

from mail.errors import AuthError, QuotaExceeded, TransientError
from mail.gmail.backoff import retry_after_s
from mail.gmail.error_mapping import CONNECTION_ERRORS
from models.gmail import TokenSet
from models.settings import GmailSettings

REFRESH_MARGIN_S = 300.0
TOKEN_ENDPOINT_TIMEOUT = aiohttp.ClientTimeout(total=30.0, connect=10.0)


class _TokenResponse(msgspec.Struct, kw_only=True):
    access_token: str
    expires_in: float = 3600.0
    refresh_token: str | None = None
    scope: str | None = None


class _OAuthError(msgspec.Struct, kw_only=True):
    error: str = ""
    error_description: str = ""


_decode_tokens = msgspec.json.Decoder(_TokenResponse).decode
_decode_oauth_error = msgspec.json.Decoder(_OAuthError).decode


def authorization_url(settings: GmailSettings, state: str, login_hint: str | None = None) -> str:
    """Where to send the user to consent: offline access, the configured scopes, a fresh consent."""
    params = {
        "response_type": "code",
        "client_id": settings.client_id,
        "redirect_uri": settings.redirect_uri,
        "scope": " ".join(settings.scopes),
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
        "state": state,
    }
    if login_hint:
        params["login_hint"] = login_hint
    separator = "&" if "?" in settings.oauth_auth_uri else "?"
    return settings.oauth_auth_uri + separator + urlencode(params, quote_via=quote)


def needs_refresh(token_set: TokenSet, now: datetime, margin_s: float = REFRESH_MARGIN_S) -> bool:
    """True once `now` is within `margin_s` of the access token's expiry (or past it)."""
    return now >= token_set.expires_at - timedelta(seconds=margin_s)


def credentials_for(settings: GmailSettings, token_set: TokenSet) -> Credentials:
    """google-auth Credentials for `token_set`, refreshing against the configured token URI."""
    return Credentials(  # type: ignore[no-untyped-call]
        token=token_set.access_token,
        refresh_token=token_set.refresh_token,
        token_uri=settings.oauth_token_uri,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        scopes=token_set.scopes or list(settings.scopes),
        # google-auth compares expiry with a naive UTC clock.
        expiry=token_set.expires_at.astimezone(UTC).replace(tzinfo=None),
    )


async def _post_form(
    uri: str, form: Mapping[str, str], session: aiohttp.ClientSession | None, what: str
) -> tuple[int, dict[str, str], bytes]:
    owned = session is None
    http = aiohttp.ClientSession(timeout=TOKEN_ENDPOINT_TIMEOUT) if session is None else session
    try:
        async with http.post(uri, data=dict(form), headers={"accept": "application/json"}) as response:
            body = await response.read()
            return response.status, {k.lower(): v for k, v in response.headers.items()}, body
    except CONNECTION_ERRORS as exc:
        raise TransientError(f"OAuth {what}: {uri} unreachable: {exc!r}") from exc
    finally:
        if owned:
            await http.close()


def _oauth_error(body: bytes) -> _OAuthError:
    try:
        return _decode_oauth_error(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _OAuthError(error_description=body[:200].decode("utf-8", "replace"))


def _token_error(status: int, headers: Mapping[str, str], error: _OAuthError, what: str) -> Exception:
    detail = ": ".join(part for part in (error.error, error.error_description) if part)
    text = f"OAuth {what}: HTTP {status}" + (f" ({detail})" if detail else "")
    if status == 429:
        return QuotaExceeded(text, retry_after_s=retry_after_s(headers, error.error_description))
    if status >= 500 or status == 408:
        return TransientError(text)
    if error.error == "invalid_grant" and what == "refresh":
        return AuthError(
            f"{text}: the refresh token was revoked or has expired; "
            "the account needs re-authorisation (a new consent)"
        )
    if error.error == "invalid_grant":
        return AuthError(f"{text}: the authorization code is invalid, expired or already used")
    if error.error in ("invalid_client", "unauthorized_client"):
        return AuthError(f"{text}: the token endpoint refused the OAuth client (gmail.client_id/secret)")
    return AuthError(text)


def _token_set(body: bytes, now: datetime, what: str, previous: TokenSet | None = None) -> TokenSet:
    try:
        answer = _decode_tokens(body)
    except msgspec.DecodeError as exc:
        raise TransientError(f"OAuth {what}: unreadable token response: {exc}") from exc
    previous_scopes = list(previous.scopes) if previous else []
    scopes = answer.scope.split() if answer.scope else previous_scopes
    return TokenSet(
        access_token=answer.access_token,
        # Google answers a refresh without a refresh token: the old one stays valid.
        refresh_token=answer.refresh_token or (previous.refresh_token if previous else None),
        expires_at=now + timedelta(seconds=answer.expires_in),
        scopes=scopes,
    )


async def _token_request(
    settings: GmailSettings,
    form: dict[str, str],
    what: str,
    session: aiohttp.ClientSession | None,
    previous: TokenSet | None = None,
) -> TokenSet:
    form |= {"client_id": settings.client_id, "client_secret": settings.client_secret}
    # The clock is read before the request: the token's life starts no later than its answer.
    now = datetime.now(UTC)
    status, headers, body = await _post_form(settings.oauth_token_uri, form, session, what)
    if status != 200:
        raise _token_error(status, headers, _oauth_error(body), what)
    return _token_set(body, now, what, previous)


async def exchange_code(
    settings: GmailSettings, code: str, *, session: aiohttp.ClientSession | None = None
) -> TokenSet:
    """Trade the authorization code from the consent redirect for tokens."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": settings.redirect_uri}
    return await _token_request(settings, form, "code exchange", session)


async def refresh(
    settings: GmailSettings, token_set: TokenSet, *, session: aiohttp.ClientSession | None = None
) -> TokenSet:
    """A new access token from the refresh token; the refresh token is kept unless replaced.

    Raises AuthError when the grant is gone (re-authorisation needed), TransientError when the
    token endpoint failed and a later try may succeed.
    """
    if not token_set.refresh_token:
        raise AuthError("OAuth refresh: no refresh token stored; the account needs re-authorisation")
    form = {"grant_type": "refresh_token", "refresh_token": token_set.refresh_token}
    return await _token_request(settings, form, "refresh", session, token_set)


async def revoke(
    settings: GmailSettings, token: str, *, session: aiohttp.ClientSession | None = None
) -> None:
    """Revoke an access or refresh token (revoking the refresh token ends the whole grant).

    A token that is already invalid counts as revoked.
    """
    status, headers, body = await _post_form(settings.oauth_revoke_uri, {"token": token}, session, "revoke")
    if status == 200:
        return
    error = _oauth_error(body)
    if status == 400 and error.error == "invalid_token":
        return
    raise _token_error(status, headers, error, "revoke")
