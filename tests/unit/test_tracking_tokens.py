"""mail.tracking.tokens: layout, round trips, rotation, and refusing every altered or forged token.

Also `Keyring.derive_key` (mail.crypto), which the signer's keys come from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import msgspec
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mail.crypto import MAX_KEY_ID, Keyring
from mail.errors import ConfigError, CryptoError, InvalidToken, NotFound
from mail.tracking.tokens import (
    HKDF_INFO,
    MAC_BYTES,
    MAX_ID,
    MAX_LINK,
    MAX_TOKEN_CHARS,
    TokenKind,
    TokenSigner,
    TrackingToken,
)

K1 = os.urandom(32)
K2 = os.urandom(32)
SIGNER = TokenSigner({1: K1, 2: K2})
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

fuzz = hypothesis_settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _minted(key: bytes, body: bytes) -> str:
    """A token text with a valid MAC over any body: what only a key holder can make."""
    return _b64(body + hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES])


def _hkdf_sha256(key: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hmac, no salt (a hash-length string of zeros)."""
    prk = hmac.new(b"\x00" * 32, key, hashlib.sha256).digest()
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes((counter,)), hashlib.sha256).digest()
        out += block
    return out[:length]


tokens = st.one_of(
    st.builds(
        TrackingToken,
        kind=st.sampled_from([TokenKind.OPEN, TokenKind.UNSUBSCRIBE]),
        email_id=st.integers(1, MAX_ID),
        recipient_id=st.none() | st.integers(1, MAX_ID),
    ),
    st.builds(
        TrackingToken,
        kind=st.just(TokenKind.CLICK),
        email_id=st.integers(1, MAX_ID),
        recipient_id=st.none() | st.integers(1, MAX_ID),
        link=st.integers(0, MAX_LINK),
    ),
)


# --- Keyring.derive_key -------------------------------------------------------------------------


def test_derive_key_is_rfc5869_hkdf_sha256_of_that_key() -> None:
    ring = Keyring({1: K1, 2: K2})
    assert ring.derive_key(1, b"purpose") == _hkdf_sha256(K1, b"purpose", 32)
    assert ring.derive_key(2, b"purpose", 64) == _hkdf_sha256(K2, b"purpose", 64)
    assert len(ring.derive_key(1, b"purpose", 16)) == 16


def test_derived_keys_differ_by_key_and_purpose_and_are_stable() -> None:
    ring = Keyring({1: K1, 2: K2})
    derived = {ring.derive_key(key_id, info) for key_id in (1, 2) for info in (b"a", b"b")}
    assert len(derived) == 4
    assert K1 not in derived and K2 not in derived
    assert Keyring({1: K1}).derive_key(1, b"a") == ring.derive_key(1, b"a")


def test_derive_key_from_an_unknown_key_fails_without_showing_keys() -> None:
    ring = Keyring({1: K1})
    with pytest.raises(CryptoError, match="key 3, which is not in the keyring") as caught:
        ring.derive_key(3, HKDF_INFO)
    for shown in (str(caught.value), repr(ring)):
        assert K1.hex() not in shown and base64.b64encode(K1).decode() not in shown


# --- tokens ---------------------------------------------------------------------------------------


def test_layout_is_version_key_kind_varints_then_truncated_mac() -> None:
    signer = TokenSigner({5: K1})
    token = TrackingToken(kind=TokenKind.CLICK, email_id=300, recipient_id=None, link=0)
    raw = _unb64(signer.sign(token))
    # 300 = 0b10_0101100 -> 0xAC 0x02; no recipient -> 0; link 0 -> 1.
    body = bytes([1, 5, 2, 0xAC, 0x02, 0, 1])
    assert raw == body + hmac.new(K1, body, hashlib.sha256).digest()[:12]


def test_big_key_ids_and_values_fit() -> None:
    signer = TokenSigner({MAX_KEY_ID: K1})
    token = TrackingToken(kind=TokenKind.CLICK, email_id=MAX_ID, recipient_id=MAX_ID, link=MAX_LINK)
    text = signer.sign(token)
    assert len(text) == 58  # the longest token there is
    assert signer.verify(text) == msgspec.structs.replace(token, key_id=MAX_KEY_ID)


@fuzz
@given(token=tokens)
def test_round_trip(token: TrackingToken) -> None:
    text = SIGNER.sign(token)
    assert len(text) <= 58
    assert set(text) <= set(ALPHABET)
    assert SIGNER.verify(text) == msgspec.structs.replace(token, key_id=2)


def test_typical_tokens_are_short() -> None:
    open_token = TrackingToken(kind=TokenKind.OPEN, email_id=1_000_000, recipient_id=5_000)
    assert len(SIGNER.sign(open_token)) == 28


def test_newest_key_signs_every_key_verifies() -> None:
    old = TokenSigner({1: K1})
    token = TrackingToken(kind=TokenKind.UNSUBSCRIBE, email_id=7, recipient_id=9)
    old_text = old.sign(token)
    assert SIGNER.newest_id == 2
    assert SIGNER.verify(old_text).key_id == 1
    assert SIGNER.verify(SIGNER.sign(token)).key_id == 2
    with pytest.raises(InvalidToken, match="unknown key"):
        old.verify(SIGNER.sign(token))
    with pytest.raises(InvalidToken, match="unknown key"):
        TokenSigner({2: K2}).verify(old_text)


def test_from_keyring_derives_the_mac_keys() -> None:
    ring = Keyring({1: K1, 4: K2})
    signer = TokenSigner.from_keyring(ring)
    assert signer.key_ids == (1, 4) and signer.newest_id == 4
    token = TrackingToken(kind=TokenKind.OPEN, email_id=42)
    text = signer.sign(token)
    by_hand = TokenSigner({4: _hkdf_sha256(K2, b"mailray tracking token v1", 32)})
    assert by_hand.verify(text).email_id == 42
    # The keyring key itself is not the MAC key.
    with pytest.raises(InvalidToken, match="authenticate"):
        TokenSigner({4: K2}).verify(text)


def test_forged_with_another_key_is_refused() -> None:
    token = TrackingToken(kind=TokenKind.CLICK, email_id=1, link=0)
    for forger in (TokenSigner({2: os.urandom(32)}), TokenSigner({2: K1}), TokenSigner({1: K2})):
        with pytest.raises(InvalidToken, match="does not authenticate"):
            SIGNER.verify(forger.sign(token))


@fuzz
@given(token=tokens, data=st.data())
def test_changing_any_character_is_refused(token: TrackingToken, data: st.DataObject) -> None:
    text = SIGNER.sign(token)
    # The last character more often: its unused low bits are where a lax decoder is fooled.
    index = data.draw(st.integers(0, len(text) - 1) | st.just(len(text) - 1), label="index")
    replacement = data.draw(st.sampled_from(ALPHABET).filter(lambda char: char != text[index]))
    altered = text[:index] + replacement + text[index + 1 :]
    # Stray bits in the last character would decode to the same bytes; those texts are refused
    # too, so every change fails (and never decodes to another token).
    with pytest.raises(InvalidToken):
        SIGNER.verify(altered)


@pytest.mark.parametrize("email_id", [1, 200, 20_000])  # 18, 19 and 20 bytes: every base64 tail
def test_every_other_last_character_is_refused(email_id: int) -> None:
    text = SIGNER.sign(TrackingToken(kind=TokenKind.OPEN, email_id=email_id))
    same_bytes = 0
    for char in ALPHABET.replace(text[-1], ""):
        altered = text[:-1] + char
        same_bytes += _unb64(altered) == _unb64(text)
        with pytest.raises(InvalidToken):
            SIGNER.verify(altered)
    # 18 bytes fill the last character; with 19 (four spare bits) 15 other characters decode
    # to the same bytes, with 20 (two spare bits) 3 do, and all are refused.
    assert same_bytes == {0: 0, 1: 15, 2: 3}[len(_unb64(text)) % 3]


@fuzz
@given(token=tokens, data=st.data())
def test_flipping_any_bit_is_refused(token: TrackingToken, data: st.DataObject) -> None:
    raw = bytearray(_unb64(SIGNER.sign(token)))
    index = data.draw(st.integers(0, len(raw) - 1), label="index")
    raw[index] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    with pytest.raises(InvalidToken):
        SIGNER.verify(_b64(bytes(raw)))


@fuzz
@given(token=tokens, cut=st.integers(1, 20), extra=st.binary(min_size=1, max_size=8))
def test_truncated_or_extended_tokens_are_refused(token: TrackingToken, cut: int, extra: bytes) -> None:
    text = SIGNER.sign(token)
    raw = _unb64(text)
    for altered in (text[:-cut], text + "A", _b64(raw[:-cut]), _b64(raw + extra), _b64(extra + raw)):
        with pytest.raises(InvalidToken):
            SIGNER.verify(altered)


@fuzz
@given(text=st.text(max_size=200) | st.text(alphabet=ALPHABET + "=+/.", max_size=80))
def test_arbitrary_text_raises_only_invalid_token(text: str) -> None:
    with pytest.raises(InvalidToken):
        SIGNER.verify(text)


def test_text_rules() -> None:
    text = SIGNER.sign(TrackingToken(kind=TokenKind.OPEN, email_id=10))
    assert SIGNER.verify(text).email_id == 10
    padded = base64.urlsafe_b64encode(_unb64(text)).decode()
    standard = base64.b64encode(_unb64(text)).decode().rstrip("=")
    for bad in (
        "",
        " " + text,
        text + "\n",
        padded if padded != text else text + "==",
        "A" * (MAX_TOKEN_CHARS + 1),
        "ÄQEBAQAAmO2jvhmkBI8O5aF7",
    ):
        with pytest.raises(InvalidToken):
            SIGNER.verify(bad)
    if standard != text:  # "+" or "/" in place of "-" or "_"
        with pytest.raises(InvalidToken):
            SIGNER.verify(standard)
    with pytest.raises(InvalidToken):
        SIGNER.verify(b"AQEBAQAAmO2jvhmkBI8O5aF7")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (bytes([1, 1, 4, 1, 0, 0]), "unknown kind 4"),
        (bytes([1, 1, 0, 1, 0, 0]), "unknown kind 0"),
        (bytes([1, 1, 2, 1, 0, 0]), "needs a link"),
        (bytes([1, 1, 1, 1, 0, 1]), "only a click token has a link"),
        (bytes([1, 1, 3, 1, 0, 5]), "only a click token has a link"),
        (bytes([1, 1, 1, 0, 0, 0]), "email_id must be"),
        (bytes([1, 1, 1, 1, 0, 0, 0]), "trailing bytes"),
        (bytes([1, 1, 1, 1, 0]), "malformed"),  # shorter than any token
        (bytes([1, 1, 1, 0x81, 0x81, 0x81]), "truncated or overlong"),
        (bytes([1, 1, 1, 0x81, 0x00, 0, 0]), "not minimally encoded"),
        (bytes([1, 1, 1, *[0xFF] * 10, 0x01, 0, 0]), "truncated or overlong"),
        (bytes([1, 1, 1, 1, *[0x80] * 9, 0x02, 0]), "recipient_id must be"),  # 2**64 - 1
        (bytes([1, 1, 1, *[0xFF] * 9, 0x01, 0, 0]), "email_id must be"),  # 2**64 - 1
        (bytes([1, 1, 2, 1, 0, 0x81, 0x80, 0x80, 0x80, 0x08]), "needs a link"),  # link 2**31
    ],
)
def test_authentic_but_malformed_bodies_are_refused(body: bytes, reason: str) -> None:
    """Bodies with a valid MAC (as a signing bug could make) are still read strictly."""
    with pytest.raises(InvalidToken, match=reason):
        SIGNER.verify(_minted(K1, body))


def test_unknown_version_and_unknown_key_are_refused_before_the_mac() -> None:
    with pytest.raises(InvalidToken, match="unknown version 2"):
        SIGNER.verify(_minted(K1, bytes([2, 1, 1, 1, 0, 0])))
    with pytest.raises(InvalidToken, match="unknown key"):
        SIGNER.verify(_minted(K1, bytes([1, 3, 1, 1, 0, 0])))
    with pytest.raises(InvalidToken, match="truncated or overlong"):
        SIGNER.verify(_minted(K1, bytes([1, *[0x81] * 11, 1, 1, 0, 0])))


def test_a_body_that_is_all_key_id_is_refused() -> None:
    big_key = 2**28  # a five-byte varint: the whole minimal body
    with pytest.raises(InvalidToken, match="truncated"):
        TokenSigner({big_key: K1}).verify(_minted(K1, bytes([1, 0x80, 0x80, 0x80, 0x80, 0x01])))


def test_invalid_token_is_a_404_that_says_not_found() -> None:
    from serve.errors import status_for

    error = InvalidToken("tracking token does not authenticate")
    assert isinstance(error, NotFound) and error.code == "not_found"
    assert status_for(error) == 404


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": TokenKind.CLICK, "email_id": 1},
        {"kind": TokenKind.CLICK, "email_id": 1, "link": -1},
        {"kind": TokenKind.CLICK, "email_id": 1, "link": MAX_LINK + 1},
        {"kind": TokenKind.OPEN, "email_id": 1, "link": 0},
        {"kind": TokenKind.OPEN, "email_id": 0},
        {"kind": TokenKind.OPEN, "email_id": MAX_ID + 1},
        {"kind": TokenKind.OPEN, "email_id": True},
        {"kind": TokenKind.OPEN, "email_id": 1, "recipient_id": 0},
        {"kind": TokenKind.OPEN, "email_id": 1, "key_id": -1},
        {"kind": 4, "email_id": 1},
        {"kind": "open", "email_id": 1},
    ],
)
def test_tokens_that_cannot_be_signed_are_refused_at_construction(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TrackingToken(**fields)  # type: ignore[arg-type]


def test_signer_keys_are_checked_and_never_shown() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        TokenSigner({})
    with pytest.raises(ConfigError, match="key id"):
        TokenSigner({0: K1})
    with pytest.raises(ConfigError, match="key id"):
        TokenSigner({MAX_KEY_ID + 1: K1})
    with pytest.raises(ConfigError, match="at least 16 bytes, got 8") as caught:
        TokenSigner({1: K1[:8]})
    assert K1[:8].hex() not in str(caught.value)
    assert repr(SIGNER) == "TokenSigner(key_ids=[1, 2], newest_id=2)"
