"""OAuth 2.0 as Google's authorization server answers it, for the emulator's users.

    GET  /o/oauth2/auth   auto-consents (login_hint picks the user) and 302s to
                          redirect_uri?code=...&state=...
    POST /token           authorization_code and refresh_token grants
    POST /revoke          token=... (form or query); revoking either token of a grant revokes both

Access tokens ("ya29.") expire after `token_ttl_s`; refresh tokens ("1//") last until revoked.
Errors are Google's bodies, e.g. {"error": "invalid_grant", "error_description": "Token has been
expired or revoked."}.
"""

from __future__ import annotations

import secrets
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from cluster.emulators.gmail import api_errors
from cluster.emulators.gmail.signing import SigningKey
from cluster.emulators.gmail.stats import EmulatorStats

GMAIL_FULL_SCOPE = "https://mail.google.com/"
DEFAULT_SCOPES: tuple[str, ...] = (
    GMAIL_FULL_SCOPE,
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.modify",
    "openid",
    "email",
)
CODE_TTL_S = 600
ISSUER = "https://accounts.google.com"


class OAuthError(Exception):
    """An error answer of the token service: {"error": ..., "error_description": ...}."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass(slots=True)
class RefreshGrant:
    token: str
    email: str
    scopes: tuple[str, ...]
    client_id: str
    revoked: bool = False
    access_tokens: list[str] = field(default_factory=list)


@dataclass(slots=True)
class AccessGrant:
    token: str
    email: str
    scopes: frozenset[str]
    expires_at: float
    refresh: RefreshGrant | None = None
    revoked: bool = False


@dataclass(slots=True)
class _Code:
    email: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    offline: bool
    expires_at: float


def subject_of(email: str) -> str:
    """A stable numeric `sub` for a user, shaped like Google's 21-digit account ids."""
    return str(100000000000000000000 + zlib.crc32(email.lower().encode()))


class OAuthServer:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        token_ttl_s: int,
        signing_key: SigningKey,
        stats: EmulatorStats,
        ensure_user: Callable[[str], None],
        default_user: Callable[[], str | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl_s = token_ttl_s
        self._key = signing_key
        self._stats = stats
        self._ensure_user = ensure_user
        self._default_user = default_user
        self._clock = clock
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, AccessGrant] = {}
        self._refresh: dict[str, RefreshGrant] = {}

    # --------------------------------------------------------------- /o/oauth2/auth

    def authorize(self, params: Mapping[str, str]) -> tuple[int, str]:
        """(302, Location) after auto-consent, or (4xx, a plain-text error page) as Google shows
        one when it cannot redirect (unknown client, missing redirect_uri)."""
        client_id = params.get("client_id", "")
        if self.client_id and client_id != self.client_id:
            return 401, "Error 401: invalid_client\nThe OAuth client was not found."
        redirect_uri = params.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        if not redirect_uri or parts.scheme not in {"http", "https"} or not parts.netloc:
            return 400, "Error 400: invalid_request\nMissing or invalid required parameter: redirect_uri"
        state = params.get("state")
        if params.get("response_type", "") != "code":
            return 302, _with_query(redirect_uri, {"error": "unsupported_response_type", "state": state})
        scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
        if not scopes:
            return 400, "Error 400: invalid_request\nMissing required parameter: scope"
        email = (params.get("login_hint") or "").strip() or self._default_user()
        if not email or "@" not in email:
            return 302, _with_query(redirect_uri, {"error": "access_denied", "state": state})
        self._ensure_user(email)
        code = "4/0" + secrets.token_urlsafe(32)
        self._codes[code] = _Code(
            email=email,
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            offline=params.get("access_type", "online") == "offline",
            expires_at=self._clock() + CODE_TTL_S,
        )
        query = {"state": state, "code": code, "scope": " ".join(scopes)}
        return 302, _with_query(redirect_uri, query)

    # ----------------------------------------------------------------------- /token

    def _check_client(self, form: Mapping[str, str]) -> str:
        client_id = form.get("client_id", "")
        if self.client_id and self.client_secret:
            if client_id != self.client_id:
                raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
            if form.get("client_secret", "") != self.client_secret:
                raise OAuthError(401, "invalid_client", "Unauthorized")
        return client_id

    def token(self, form: Mapping[str, str]) -> dict[str, Any]:
        grant_type = form.get("grant_type", "")
        if not grant_type:
            raise OAuthError(400, "unsupported_grant_type", "Invalid grant_type: ")
        if grant_type == "authorization_code":
            client_id = self._check_client(form)
            code = self._codes.pop(form.get("code", ""), None)
            if code is None or code.expires_at < self._clock() or (client_id and code.client_id != client_id):
                raise OAuthError(
                    400, "invalid_grant", "Malformed auth code." if code is None else "Bad Request"
                )
            if form.get("redirect_uri", "") != code.redirect_uri:
                raise OAuthError(400, "redirect_uri_mismatch", "Bad Request")
            refresh = None
            if code.offline:
                refresh = RefreshGrant(
                    token="1//0" + secrets.token_urlsafe(48),
                    email=code.email,
                    scopes=code.scopes,
                    client_id=code.client_id,
                )
                self._refresh[refresh.token] = refresh
            return self._answer(code.email, code.scopes, refresh, client_id=code.client_id)
        if grant_type == "refresh_token":
            client_id = self._check_client(form)
            refresh = self._refresh.get(form.get("refresh_token", ""))
            if refresh is None or refresh.revoked:
                raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
            if client_id and refresh.client_id and client_id != refresh.client_id:
                raise OAuthError(400, "unauthorized_client", "Unauthorized")
            scopes = refresh.scopes
            asked = tuple(form.get("scope", "").split())
            if asked:
                if not set(asked) <= set(refresh.scopes):
                    raise OAuthError(400, "invalid_scope", "Some requested scopes were invalid.")
                scopes = asked
            self._stats.tokens_refreshed += 1
            answer = self._answer(refresh.email, scopes, refresh, client_id=refresh.client_id)
            answer.pop("refresh_token", None)  # Google sends the refresh token only with the code
            return answer
        raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _answer(
        self, email: str, scopes: Sequence[str], refresh: RefreshGrant | None, *, client_id: str
    ) -> dict[str, Any]:
        now = self._clock()
        access = AccessGrant(
            token="ya29." + secrets.token_urlsafe(64),
            email=email,
            scopes=frozenset(scopes),
            expires_at=now + self.token_ttl_s,
            refresh=refresh,
        )
        self._access[access.token] = access
        if refresh is not None:
            refresh.access_tokens.append(access.token)
        self._stats.tokens_issued += 1
        self._forget_expired(now)
        answer: dict[str, Any] = {
            "access_token": access.token,
            "expires_in": self.token_ttl_s,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }
        if refresh is not None:
            answer["refresh_token"] = refresh.token
        if "openid" in scopes:
            answer["id_token"] = self._key.sign(
                {
                    "iss": ISSUER,
                    "azp": client_id,
                    "aud": client_id,
                    "sub": subject_of(email),
                    "email": email,
                    "email_verified": True,
                    "iat": int(now),
                    "exp": int(now) + 3600,
                }
            )
        return answer

    def issue(self, email: str, scopes: Sequence[str] = DEFAULT_SCOPES) -> dict[str, Any]:
        """What /token answers for a consented code with access_type=offline, without the flow."""
        self._ensure_user(email)
        refresh = RefreshGrant(
            token="1//0" + secrets.token_urlsafe(48),
            email=email,
            scopes=tuple(scopes),
            client_id=self.client_id,
        )
        self._refresh[refresh.token] = refresh
        return self._answer(email, tuple(scopes), refresh, client_id=self.client_id)

    def _forget_expired(self, now: float) -> None:
        # Keep memory bounded under long runs: drop access tokens expired for an hour.
        if len(self._access) > 10_000:
            for token in [token for token, grant in self._access.items() if grant.expires_at < now - 3600]:
                del self._access[token]

    # ---------------------------------------------------------------------- /revoke

    def revoke(self, token: str) -> bool:
        """Revoke a refresh token (and its access tokens) or an access token (and its refresh
        token, as Google does); False when the token is unknown."""
        refresh = self._refresh.get(token)
        access = self._access.get(token)
        if access is not None:
            access.revoked = True
            refresh = refresh or access.refresh
        if refresh is not None:
            refresh.revoked = True
            for access_token in refresh.access_tokens:
                grant = self._access.get(access_token)
                if grant is not None:
                    grant.revoked = True
        return refresh is not None or access is not None

    def expire_access_tokens(self) -> None:
        past = self._clock() - 1
        for grant in self._access.values():
            grant.expires_at = min(grant.expires_at, past)

    # ------------------------------------------------------------------ API calls

    def authenticate(self, authorization: str | None, access_token_param: str | None) -> AccessGrant:
        token = None
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise api_errors.invalid_credentials()
            token = value.strip()
        elif access_token_param:
            token = access_token_param
        if token is None:
            raise api_errors.missing_credentials()
        grant = self._access.get(token)
        if grant is None or grant.revoked or grant.expires_at <= self._clock():
            raise api_errors.invalid_credentials()
        return grant


def _with_query(url: str, params: Mapping[str, str | None]) -> str:
    parts = urlsplit(url)
    extra = urlencode({key: value for key, value in params.items() if value is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
