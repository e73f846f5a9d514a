"""The emulator's signing key: an RSA-2048 key with a self-signed X.509 certificate, made at
start-up. It signs push requests' OIDC tokens and OAuth id_tokens (RS256, `kid` header), and
/oauth2/v1/certs publishes the certificate in Google's v1 format ({kid: PEM certificate}), so
google.oauth2.id_token.verify_token(..., certs_url=<emulator>/oauth2/v1/certs) verifies them.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt


class SigningKey:
    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gmail-emulator.mailray.test")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        self.private_key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        # Google's key ids are 40 hex digits; a hash of the certificate keeps ours stable per key.
        self.kid = hashlib.sha1(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()  # noqa: S324
        self._signer = crypt.RSASigner.from_string(self.private_key_pem, key_id=self.kid)  # type: ignore[no-untyped-call]

    def certs(self) -> dict[str, str]:
        return {self.kid: self.certificate_pem}

    def sign(self, claims: dict[str, Any]) -> str:
        token: bytes = jwt.encode(self._signer, claims)  # type: ignore[no-untyped-call]
        return token.decode("ascii")


@functools.cache
def process_signing_key() -> SigningKey:
    """One key per process: making an RSA key takes a while and tests start many emulators."""
    return SigningKey()
