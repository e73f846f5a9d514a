"""Gmail push notifications: verify the Pub/Sub push request's OIDC token and decode the envelope.

Pub/Sub signs each push with a Google-issued OIDC token (RS256). The signing certificates come
from `gmail.oidc_certs_uri` (Google's in production, the emulator's in dev) and are cached for
an hour; an unknown key id triggers one refetch, so a rotated key is picked up at once.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import aiohttp
import msgspec
from google.auth import exceptions as google_exceptions
from google.auth import jwt

from mail.errors import TransientError, Unauthorized, ValidationError
from models.gmail import PushNotification
from models.settings import GmailSettings

CERTS_TTL_S = 3600.0
ISSUERS = ("https://accounts.google.com", "accounts.google.com")


class _PushMessage(msgspec.Struct, kw_only=True):
    data: str
    message_id: str | None = msgspec.field(default=None, name="messageId")


class _PushEnvelope(msgspec.Struct, kw_only=True):
    message: _PushMessage
    subscription: str = ""


_envelope_decoder = msgspec.json.Decoder(_PushEnvelope)
_notification_decoder = msgspec.json.Decoder(PushNotification)


class PushVerifier:
    def __init__(self, settings: GmailSettings) -> None:
        self._settings = settings
        self._certs: dict[str, str] = {}
        self._fetched_at = 0.0

    async def _fetch_certs(self) -> dict[str, str]:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.get(self._settings.oidc_certs_uri) as response,
            ):
                response.raise_for_status()
                certs: dict[str, str] = msgspec.json.decode(await response.read(), type=dict[str, str])
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as error:
            raise TransientError(
                f"cannot fetch OIDC certificates from {self._settings.oidc_certs_uri}: {error}"
            ) from error
        self._certs, self._fetched_at = certs, time.monotonic()
        return certs

    async def _certs_for(self, token: str) -> dict[str, str]:
        try:
            key_id = jwt.decode_header(token).get("kid")  # type: ignore[no-untyped-call]
        except (ValueError, google_exceptions.GoogleAuthError):
            raise Unauthorized("push token is not a JWT") from None
        if not self._certs or time.monotonic() - self._fetched_at > CERTS_TTL_S or key_id not in self._certs:
            await self._fetch_certs()
        return self._certs

    async def verify(self, authorization: str | None) -> dict[str, Any]:
        """The verified claims of the push request's bearer token; Unauthorized otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("push request without a bearer token")
        certs = await self._certs_for(token)
        audience = self._settings.push_audience or None
        try:
            claims: dict[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token, certs=certs, audience=audience, clock_skew_in_seconds=30
            )
        except (ValueError, google_exceptions.GoogleAuthError) as error:
            raise Unauthorized(f"push token rejected: {error}") from None
        if claims.get("iss") not in ISSUERS:
            raise Unauthorized(f"push token from an unexpected issuer {claims.get('iss')!r}")
        return claims


def decode_push(body: bytes) -> PushNotification:
    """The {emailAddress, historyId} a Gmail push envelope carries; ValidationError for anything else."""
    try:
        envelope = _envelope_decoder.decode(body)
        # Pub/Sub sends standard base64; accept the URL-safe alphabet too.
        data = base64.b64decode(
            envelope.message.data + "=" * (-len(envelope.message.data) % 4), altchars=b"-_"
        )
        return _notification_decoder.decode(data)
    except (msgspec.DecodeError, ValueError) as error:
        raise ValidationError(f"not a Gmail push envelope: {error}") from None
