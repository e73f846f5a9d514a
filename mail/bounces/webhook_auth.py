"""Checking that a bounce webhook comes from the provider, before anything in it is believed.

Amazon SNS (SES bounces): every message carries `Signature`, `SignatureVersion` ("1":
SHA1withRSA, "2": SHA256withRSA) and `SigningCertURL`. The signed text is the message's fields,
each as "Name\\nvalue\\n", in a fixed order that depends on its `Type`: Notification signs
Message, MessageId, Subject (only when present), Timestamp, TopicArn, Type; the subscription
messages sign Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type. The
certificate is fetched from SigningCertURL only when that URL is one of Amazon's (a pattern in
settings: anyone can sign with a certificate of their own) and cached. A TopicArn not listed in
settings is refused, so another account's topic cannot post here either.

SendGrid's signed event webhook: `X-Twilio-Email-Event-Webhook-Signature` is a base64 ECDSA
(P-256, SHA-256) signature over the `X-Twilio-Email-Event-Webhook-Timestamp` header's value
followed by the raw body, checked with the public key from SendGrid's settings page (base64
DER). A timestamp older than `sendgrid_max_age_s` is refused: a captured request cannot be
replayed later.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mail.errors import ConfigError, Forbidden, NotFound, Unauthorized, ValidationError
from models.settings import BounceWebhookSettings

SENDGRID_SIGNATURE: Final = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP: Final = "X-Twilio-Email-Event-Webhook-Timestamp"

_NOTIFICATION_FIELDS: Final = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION_FIELDS: Final = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_SNS_TYPES: Final = {
    "Notification": _NOTIFICATION_FIELDS,
    "SubscriptionConfirmation": _SUBSCRIPTION_FIELDS,
    "UnsubscribeConfirmation": _SUBSCRIPTION_FIELDS,
}
_SNS_HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_MAX_CERT_BYTES: Final = 64 * 1024

# Fetches a URL's body (the SNS signing certificate); tests and the endpoint pass their own.
Fetch = Callable[[str], Awaitable[bytes]]


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The text SNS signs for `message` (an SNS JSON message, decoded)."""
    fields = _SNS_TYPES.get(str(message.get("Type")))
    if fields is None:
        raise ValidationError(f"SNS message: unknown Type {message.get('Type')!r}", field="Type")
    parts: list[str] = []
    for name in fields:
        value = message.get(name)
        if value is None:
            if name == "Subject":
                continue
            raise ValidationError(f"SNS message: {name} missing", field=name)
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode("utf-8")


class SnsVerifier:
    """Verifies SNS messages; certificates are cached per URL for the verifier's life."""

    def __init__(self, settings: BounceWebhookSettings, fetch: Fetch) -> None:
        self._settings = settings
        self._cert_url = re.compile(settings.sns_cert_url_pattern)
        self._fetch = fetch
        self._keys: dict[str, rsa.RSAPublicKey] = {}

    def url_allowed(self, url: str) -> bool:
        """Whether `url` is one of Amazon's SNS addresses (also used for SubscribeURL)."""
        return bool(self._cert_url.match(url))

    async def verify(self, message: Mapping[str, Any]) -> None:
        """Raise unless `message` is signed by SNS for a topic listed in settings."""
        topics = self._settings.ses_topic_arns
        if not topics:
            raise NotFound("the SES bounce webhook is not configured (webhooks.ses_topic_arns)")
        topic = message.get("TopicArn")
        if topic not in topics:
            raise Forbidden(f"SNS topic {topic!r} is not one this endpoint accepts")
        hash_type = _SNS_HASHES.get(str(message.get("SignatureVersion")))
        if hash_type is None:
            raise Unauthorized(f"SNS SignatureVersion {message.get('SignatureVersion')!r} is not 1 or 2")
        url = str(message.get("SigningCertURL", ""))
        if not self.url_allowed(url):
            raise Unauthorized(f"SNS SigningCertURL {url[:200]!r} is not an SNS certificate address")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except binascii.Error:
            raise Unauthorized("SNS Signature is not base64") from None
        key = await self._key(url)
        try:
            key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), hash_type())
        except InvalidSignature:
            raise Unauthorized("SNS signature does not verify") from None

    async def _key(self, url: str) -> rsa.RSAPublicKey:
        key = self._keys.get(url)
        if key is not None:
            return key
        body = await self._fetch(url)
        if len(body) > _MAX_CERT_BYTES:
            raise Unauthorized("SNS signing certificate too large")
        try:
            certificate = x509.load_pem_x509_certificate(body)
        except ValueError:
            raise Unauthorized("SNS SigningCertURL did not return a PEM certificate") from None
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise Unauthorized("SNS signing certificate does not hold an RSA key")
        self._keys[url] = public_key
        return public_key


def sendgrid_public_key(encoded: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER, or PEM)."""
    text = encoded.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ConfigError(f"webhooks.sendgrid_public_key: not a public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("webhooks.sendgrid_public_key: not an elliptic-curve key")
    return key


def verify_sendgrid(
    settings: BounceWebhookSettings, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> None:
    """Raise unless `body` carries a valid, recent SendGrid signature."""
    if not settings.sendgrid_public_key:
        raise NotFound("the SendGrid bounce webhook is not configured (webhooks.sendgrid_public_key)")
    signature, timestamp = headers.get(SENDGRID_SIGNATURE), headers.get(SENDGRID_TIMESTAMP)
    if not signature or not timestamp:
        raise Unauthorized(f"{SENDGRID_SIGNATURE} and {SENDGRID_TIMESTAMP} are required")
    try:
        age = (time.time() if now is None else now) - int(timestamp)
        raw_signature = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        raise Unauthorized("SendGrid signature headers are malformed") from None
    if abs(age) > settings.sendgrid_max_age_s:
        raise Unauthorized(f"SendGrid timestamp is {age:.0f} s away from now")
    key = sendgrid_public_key(settings.sendgrid_public_key)
    try:
        key.verify(raw_signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Unauthorized("SendGrid signature does not verify") from None
