"""Compact, URL-safe, signed tracking tokens: open pixels, click redirects, unsubscribe links.

A token says what was sent (email, recipient, link position) and proves that mailray wrote it,
so a pixel hit or a click is checked without a database lookup. Layout, version 1::

    field         bytes  content
    version       1      0x01
    key_id        1-5    varint: the MAC key that signed it
    kind          1      TokenKind: 1 open, 2 click, 3 unsubscribe
    email_id      1-9    varint, 1 .. 2**63 - 1 (a Postgres bigint)
    recipient     1-10   varint of recipient_id + 1; 0 = no recipient
    link          1-5    varint of link + 1; 0 = no link (only a click has one, 0 .. 2**31 - 1)
    mac           12     HMAC-SHA256(MAC key, every byte above), truncated to 96 bits

Varints are unsigned LEB128 (7 bits a byte, low group first). The whole is base64url without
padding: an open token for email 1,000,000 and recipient 5,000 is 21 bytes, 28 characters; the
longest possible is 43 bytes, 58 characters.

The key id is a varint, not one fixed byte as first planned: `mail.crypto` allows key ids up to
2**32 - 1, which neither one nor two bytes hold; ids below 128 still take one byte.

Every token has exactly one text: varints must be minimal and at most 10 bytes, and base64 whose
last character carries stray bits is refused, so changing any character of a token fails.
`verify` checks the length, the alphabet, the version and the key id, then the MAC, and only
then reads the fields; anything else raises `InvalidToken` (HTTP 404).

MAC keys come from the keyring (`TokenSigner.from_keyring`): HKDF-SHA256 of each keyring key with
info `b"mailray tracking token v1"`, under the same key id. The newest key signs and every key
verifies, so links already sent keep working after a key rotation for as long as their key stays
in the keyring.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
from collections.abc import Mapping

import msgspec

from mail.crypto import MAX_KEY_ID, Keyring
from mail.errors import ConfigError, InvalidToken

FORMAT_VERSION = 1
MAC_BYTES = 12
MAC_KEY_BYTES = 32  # what from_keyring derives
MIN_MAC_KEY_BYTES = 16  # what the constructor accepts
MAX_TOKEN_CHARS = 128  # refused before decoding; the longest real token has 58
MAX_VARINT_BYTES = 10  # enough for 64 bits
MAX_ID = 2**63 - 1  # Postgres bigint
MAX_LINK = 2**31 - 1  # tracking_links.position is an integer
HKDF_INFO = b"mailray tracking token v1"

_MIN_TOKEN_BYTES = 1 + 1 + 1 + 3 + MAC_BYTES  # version, key id, kind, three one-byte varints
_MIN_TOKEN_CHARS = -(-_MIN_TOKEN_BYTES * 4 // 3)
_TOKEN_TEXT = re.compile(r"[A-Za-z0-9_-]+")
_ONE_BYTE = tuple(bytes((value,)) for value in range(0x80))


class TokenKind(enum.IntEnum):
    OPEN = 1
    CLICK = 2
    UNSUBSCRIBE = 3


_KIND_BY_BYTE: dict[int, TokenKind] = {kind.value: kind for kind in TokenKind}


def _in_range(value: object, low: int, high: int) -> bool:
    """An int (not a bool) from `low` to `high`."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


class TrackingToken(msgspec.Struct, frozen=True, kw_only=True):
    """What a token names. `key_id` is set by `TokenSigner.verify` (0: not from a verified token)."""

    kind: TokenKind
    email_id: int
    recipient_id: int | None = None
    link: int | None = None
    key_id: int = 0

    def __post_init__(self) -> None:
        if not _in_range(self.kind, TokenKind.OPEN, TokenKind.UNSUBSCRIBE):
            raise ValueError(f"kind must be a TokenKind, got {self.kind!r}")
        if not _in_range(self.email_id, 1, MAX_ID):
            raise ValueError(f"email_id must be an integer from 1 to {MAX_ID}, got {self.email_id!r}")
        if self.recipient_id is not None and not _in_range(self.recipient_id, 1, MAX_ID):
            raise ValueError(
                f"recipient_id must be None or an integer from 1 to {MAX_ID}, got {self.recipient_id!r}"
            )
        if self.kind == TokenKind.CLICK:
            if not _in_range(self.link, 0, MAX_LINK):
                raise ValueError(f"a click token needs a link from 0 to {MAX_LINK}, got {self.link!r}")
        elif self.link is not None:
            raise ValueError(f"only a click token has a link, not {TokenKind(self.kind).name.lower()}")
        if not _in_range(self.key_id, 0, MAX_KEY_ID):
            raise ValueError(f"key_id must be an integer from 0 to {MAX_KEY_ID}, got {self.key_id!r}")


class TokenSigner:
    """Signs with the newest MAC key and verifies with any; keys by id, as in the keyring."""

    __slots__ = ("_macs", "_prefix", "newest_id")

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        if not keys:
            raise ConfigError("tracking tokens: at least one MAC key is needed")
        macs: dict[int, hmac.HMAC] = {}
        for key_id, key in keys.items():
            if not _in_range(key_id, 1, MAX_KEY_ID):
                raise ConfigError(f"tracking tokens: key id must be an integer from 1 to {MAX_KEY_ID}")
            if len(key) < MIN_MAC_KEY_BYTES:
                # The length only: never echo key material.
                raise ConfigError(
                    f"tracking tokens: key {key_id}: expected at least {MIN_MAC_KEY_BYTES} bytes, "
                    f"got {len(key)}"
                )
            # Keyed once here; each sign or verify copies the keyed state instead of re-keying.
            macs[key_id] = hmac.new(bytes(key), digestmod=hashlib.sha256)
        self._macs = macs
        self.newest_id: int = max(macs)
        self._prefix = bytes((FORMAT_VERSION,)) + _varint(self.newest_id)

    @classmethod
    def from_keyring(cls, keyring: Keyring) -> TokenSigner:
        """MAC keys derived from every keyring key (HKDF-SHA256, `HKDF_INFO`), under the same ids."""
        return cls(
            {key_id: keyring.derive_key(key_id, HKDF_INFO, MAC_KEY_BYTES) for key_id in keyring.key_ids}
        )

    @property
    def key_ids(self) -> tuple[int, ...]:
        """Every key id, ascending."""
        return tuple(sorted(self._macs))

    def __repr__(self) -> str:
        return f"TokenSigner(key_ids={list(self.key_ids)}, newest_id={self.newest_id})"

    def sign(self, token: TrackingToken) -> str:
        """The token's text, signed with the newest key (`token.key_id` is not read)."""
        recipient_id, link = token.recipient_id, token.link
        body = b"".join(
            (
                self._prefix,
                _ONE_BYTE[token.kind],
                _varint(token.email_id),
                _varint(0 if recipient_id is None else recipient_id + 1),
                _varint(0 if link is None else link + 1),
            )
        )
        mac = self._macs[self.newest_id].copy()
        mac.update(body)
        return base64.urlsafe_b64encode(body + mac.digest()[:MAC_BYTES]).rstrip(b"=").decode("ascii")

    def verify(self, text: str) -> TrackingToken:
        """The token `text` names, with the id of the key that signed it; InvalidToken if anything is off."""
        if (
            not isinstance(text, str)
            or not _MIN_TOKEN_CHARS <= len(text) <= MAX_TOKEN_CHARS
            or not _TOKEN_TEXT.fullmatch(text)
        ):
            raise InvalidToken("tracking token is malformed")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise InvalidToken("tracking token is not base64url") from None
        # Stray bits in the last character decode to the same bytes: one token, one text.
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != text.encode("ascii"):
            raise InvalidToken("tracking token is not canonical base64url")
        if raw[0] != FORMAT_VERSION:
            raise InvalidToken(f"tracking token has unknown version {raw[0]}")
        end = len(raw) - MAC_BYTES
        key_id, at = _read_varint(raw, 1, end)
        keyed = self._macs.get(key_id)
        if keyed is None:
            raise InvalidToken("tracking token is signed by an unknown key")
        mac = keyed.copy()
        mac.update(raw[:end])
        if not hmac.compare_digest(mac.digest()[:MAC_BYTES], raw[end:]):
            raise InvalidToken("tracking token does not authenticate")
        # Authentic from here on; still read strictly, so a signing bug cannot pass unseen.
        if at >= end:
            raise InvalidToken("tracking token is truncated")
        kind = _KIND_BY_BYTE.get(raw[at])
        if kind is None:
            raise InvalidToken(f"tracking token has unknown kind {raw[at]}")
        email_id, at = _read_varint(raw, at + 1, end)
        recipient, at = _read_varint(raw, at, end)
        link, at = _read_varint(raw, at, end)
        if at != end:
            raise InvalidToken("tracking token has trailing bytes")
        try:
            return TrackingToken(
                kind=kind,
                email_id=email_id,
                recipient_id=recipient - 1 if recipient else None,
                link=link - 1 if link else None,
                key_id=key_id,
            )
        except ValueError as error:
            raise InvalidToken(f"tracking token is invalid: {error}") from None


def _varint(value: int) -> bytes:
    """Unsigned LEB128, minimal."""
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(raw: bytes, at: int, end: int) -> tuple[int, int]:
    """The varint at `raw[at:end]` and the offset after it; minimal and at most 10 bytes."""
    value = shift = 0
    for index in range(at, min(end, at + MAX_VARINT_BYTES)):
        byte = raw[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and index > at:
                raise InvalidToken("tracking token has a number that is not minimally encoded")
            return value, index + 1
        shift += 7
    raise InvalidToken("tracking token has a truncated or overlong number")
