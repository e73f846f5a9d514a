"""mail.crypto: envelope encryption, key versions, rewrap, and where keys come from."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mail.config import load_settings
from mail.crypto import (
    OVERHEAD_BYTES,
    Keyring,
    add_dev_key,
    generate_key,
    key_id_of,
    load_keyring,
)
from mail.errors import ConfigError, CryptoError

K1 = os.urandom(32)
K2 = os.urandom(32)
K3 = os.urandom(32)

fuzz = hypothesis_settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_round_trip_bytes_and_text() -> None:
    ring = Keyring({1: K1})
    for payload in (b"", b"x", os.urandom(20_000)):
        blob = ring.encrypt(payload)
        assert len(blob) == OVERHEAD_BYTES + len(payload)
        assert ring.decrypt(blob) == payload
    text = "Grüße, 你好 ✉"
    assert ring.decrypt_text(ring.encrypt_text(text, context=b"c"), context=b"c") == text


def test_each_encryption_is_fresh() -> None:
    ring = Keyring({1: K1})
    assert ring.encrypt(b"same") != ring.encrypt(b"same")


def test_blob_layout() -> None:
    blob = Keyring({1: K1, 7: K2}).encrypt(b"hello")
    assert blob[0] == 1
    assert int.from_bytes(blob[1:5], "big") == 7 == key_id_of(blob)


def test_context_binds_the_ciphertext() -> None:
    ring = Keyring({1: K1})
    blob = ring.encrypt(b"token", context=b"accounts.token:1")
    assert ring.decrypt(blob, context=b"accounts.token:1") == b"token"
    for other in (b"accounts.token:2", b"", b"accounts.refresh:1"):
        with pytest.raises(CryptoError, match="another context"):
            ring.decrypt(blob, context=other)


@fuzz
@given(payload=st.binary(max_size=256), context=st.binary(max_size=32), data=st.data())
def test_tampering_with_any_byte_fails(payload: bytes, context: bytes, data: st.DataObject) -> None:
    ring = Keyring({1: K1, 2: K2})
    blob = ring.encrypt(payload, context=context)
    index = data.draw(st.integers(0, len(blob) - 1), label="index")
    flip = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(blob)
    tampered[index] ^= flip
    with pytest.raises(CryptoError):
        ring.decrypt(bytes(tampered), context=context)


@fuzz
@given(payload=st.binary(max_size=64), data=st.data())
def test_truncated_or_extended_blob_fails(payload: bytes, data: st.DataObject) -> None:
    ring = Keyring({1: K1})
    blob = ring.encrypt(payload)
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut")
    with pytest.raises(CryptoError):
        ring.decrypt(blob[:cut])
    with pytest.raises(CryptoError):
        ring.decrypt(blob + data.draw(st.binary(min_size=1, max_size=8), label="extra"))


def test_truncated_blob_message() -> None:
    with pytest.raises(CryptoError, match="truncated"):
        key_id_of(b"\x01\x00\x00")


def test_unknown_key_id_fails_without_leaking_keys() -> None:
    blob = Keyring({3: K3}).encrypt(b"secret")
    with pytest.raises(
        CryptoError, match=r"key 3, which is not in the keyring \(known key ids: 1, 2\)"
    ) as info:
        Keyring({1: K1, 2: K2}).decrypt(blob)
    for key in (K1, K2, K3):
        assert base64.b64encode(key).decode() not in str(info.value)
        assert key.hex() not in str(info.value)
    assert repr(Keyring({1: K1, 2: K2})) == "Keyring(key_ids=[1, 2], newest_id=2)"


def test_same_id_other_key_fails() -> None:
    blob = Keyring({1: K1}).encrypt(b"secret")
    with pytest.raises(CryptoError, match="does not unwrap with key 1"):
        Keyring({1: K2}).decrypt(blob)


def test_unsupported_version() -> None:
    blob = bytearray(Keyring({1: K1}).encrypt(b"x"))
    blob[0] = 2
    with pytest.raises(CryptoError, match="unsupported format version 2"):
        Keyring({1: K1}).decrypt(bytes(blob))


def test_old_ciphertext_readable_after_adding_a_newer_key() -> None:
    old = Keyring({1: K1}).encrypt(b"before", context=b"ctx")
    ring = Keyring({1: K1, 2: K2})
    assert ring.newest_id == 2
    assert ring.decrypt(old, context=b"ctx") == b"before"
    new = ring.encrypt(b"after")
    assert key_id_of(new) == 2
    assert ring.needs_rewrap(old)
    assert not ring.needs_rewrap(new)


def test_newest_is_highest_id_not_insertion_order() -> None:
    ring = Keyring({10: K2, 2: K1})
    assert ring.newest_id == 10
    assert ring.key_ids == (2, 10)
    assert 2 in ring
    assert 3 not in ring


@fuzz
@given(payload=st.binary(max_size=512), context=st.binary(max_size=32))
def test_rewrap_moves_to_newest_key_keeping_the_payload(payload: bytes, context: bytes) -> None:
    old = Keyring({1: K1}).encrypt(payload, context=context)
    ring = Keyring({1: K1, 2: K2})
    moved = ring.rewrap(old)
    assert key_id_of(moved) == 2
    assert len(moved) == len(old)
    # The payload nonce and ciphertext are carried over byte for byte; only the wrap changed.
    assert moved[65:] == old[65:]
    assert ring.decrypt(moved, context=context) == payload
    # The old key can now be retired.
    assert Keyring({2: K2}).decrypt(moved, context=context) == payload
    # Already on the newest key: the very same bytes come back.
    assert ring.rewrap(moved) is moved
    assert ring.rewrap(moved, context=context) is moved


def test_rewrap_with_context_checks_the_payload() -> None:
    ring = Keyring({1: K1, 2: K2})
    old = Keyring({1: K1}).encrypt(b"payload", context=b"a")
    corrupt = old[:-1] + bytes([old[-1] ^ 1])
    # Without a context only the wrap is checked: the corrupt payload is carried over as it is.
    assert key_id_of(ring.rewrap(corrupt)) == 2
    with pytest.raises(CryptoError, match="does not authenticate"):
        ring.rewrap(corrupt, context=b"a")
    with pytest.raises(CryptoError, match="another context"):
        ring.rewrap(old, context=b"b")


def test_rewrap_fails_on_unknown_key() -> None:
    blob = Keyring({1: K1}).encrypt(b"x")
    with pytest.raises(CryptoError, match="not in the keyring"):
        Keyring({2: K2, 3: K3}).rewrap(blob)


def test_decrypt_text_rejects_non_utf8() -> None:
    ring = Keyring({1: K1})
    with pytest.raises(CryptoError, match="not UTF-8"):
        ring.decrypt_text(ring.encrypt(b"\xff\xfe"))


# --- keys from base64, settings and the dev keyring -------------------------------------------


def test_generate_key_is_base64_of_32_bytes() -> None:
    first, second = generate_key(), generate_key()
    assert len(base64.b64decode(first, validate=True)) == 32
    assert first != second


def test_from_b64() -> None:
    k1, k2 = generate_key(), generate_key()
    ring = Keyring.from_b64({"1": k1, "2": k2})
    assert ring.newest_id == 2
    assert Keyring.from_b64({"2": k2}).decrypt(ring.encrypt(b"x")) == b"x"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"1": "not base64!"}, r"security\.keys\.1: expected base64 of 32 bytes, got invalid base64"),
        (
            {"1": generate_key(), "2": base64.b64encode(b"short").decode()},
            r"security\.keys\.2: .*got 5 bytes",
        ),
        ({"x": generate_key()}, r"security\.keys\.x: key id must be a positive integer"),
        ({"0": generate_key()}, r"security\.keys\.0: key id must be an integer from 1"),
        ({str(2**32): generate_key()}, rf"security\.keys\.{2**32}: key id must be an integer from 1"),
        ({}, r"security\.keys: at least one key"),
    ],
)
def test_from_b64_errors_name_the_key(keys: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Keyring.from_b64(keys)
    for value in keys.values():
        assert value not in str(info.value)


def test_keyring_rejects_wrong_length_and_empty() -> None:
    with pytest.raises(ConfigError, match="key 1: expected 32 bytes, got 16"):
        Keyring({1: os.urandom(16)})
    with pytest.raises(ConfigError, match="at least one key"):
        Keyring({})


def test_load_keyring_from_settings(tmp_path: Path) -> None:
    k1, k2 = generate_key(), generate_key()
    settings = load_settings(
        environ={
            "MAILRAY_APP__MODE": "production",
            "MAILRAY_APP__DATA_DIR": str(tmp_path / "data"),
            "MAILRAY_SECURITY__KEYS": f'{{ "1" = "{k1}", "2" = "{k2}" }}',
        }
    )
    ring = load_keyring(settings)
    assert ring.key_ids == (1, 2)
    assert not (tmp_path / "data").exists()  # configured keys never touch the data dir


def test_load_keyring_production_without_keys(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"MAILRAY_APP__MODE": "production", "MAILRAY_APP__DATA_DIR": str(tmp_path / "data")}
    )
    with pytest.raises(ConfigError) as info:
        load_keyring(settings)
    assert str(info.value) == (
        "settings: security.keys (MAILRAY_SECURITY__KEYS): production mode needs at least one key; "
        "generate one with `mailray keys generate`"
    )
    assert not (tmp_path / "data").exists()


def test_load_keyring_dev_generates_then_reuses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(environ={"MAILRAY_APP__MODE": "dev"})
    settings = msgspec.structs.replace(
        settings, app=msgspec.structs.replace(settings.app, data_dir=str(tmp_path / "nested" / "data"))
    )
    path = tmp_path / "nested" / "data" / "keyring.json"
    with caplog.at_level(logging.WARNING, logger="mail.crypto"):
        first = load_keyring(settings)
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any(str(path) in record.getMessage() for record in caplog.records)
    assert first.key_ids == (1,)
    stored = msgspec.json.decode(path.read_bytes(), type=dict[str, str])
    assert list(stored) == ["1"]
    assert len(base64.b64decode(stored["1"])) == 32

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mail.crypto"):
        second = load_keyring(settings)
    assert not caplog.records  # reused quietly
    assert second.decrypt(first.encrypt(b"kept")) == b"kept"
    assert msgspec.json.decode(path.read_bytes(), type=dict[str, str]) == stored
    assert not list(path.parent.glob(".keyring.json.*.tmp"))


def test_add_dev_key_rotates_the_dev_keyring(tmp_path: Path) -> None:
    settings = load_settings(environ={"MAILRAY_APP__MODE": "dev", "MAILRAY_APP__DATA_DIR": str(tmp_path)})
    before = load_keyring(settings)
    old = before.encrypt(b"old")
    assert add_dev_key(tmp_path) == 2
    after = load_keyring(settings)
    assert after.key_ids == (1, 2)
    assert key_id_of(after.encrypt(b"new")) == 2
    assert after.decrypt(old) == b"old"
    assert stat.S_IMODE((tmp_path / "keyring.json").stat().st_mode) == 0o600
    assert add_dev_key(tmp_path) == 3


def test_add_dev_key_creates_the_file(tmp_path: Path) -> None:
    assert add_dev_key(tmp_path / "fresh") == 1
    assert stat.S_IMODE((tmp_path / "fresh" / "keyring.json").stat().st_mode) == 0o600


def test_bad_dev_keyring_file(tmp_path: Path) -> None:
    settings = load_settings(environ={"MAILRAY_APP__MODE": "dev", "MAILRAY_APP__DATA_DIR": str(tmp_path)})
    path = tmp_path / "keyring.json"
    path.write_text('{"1": "nope"}')
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=r"keyring\.json: keys\.1: expected base64"):
        load_keyring(settings)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"keyring\.json: expected a JSON object"):
        load_keyring(settings)


@pytest.mark.parametrize("raw_id", ["01", "²", "1.0", " 1"])
def test_from_b64_refuses_key_ids_that_are_not_plain_integers(raw_id: str) -> None:
    with pytest.raises(ConfigError, match="key id must be a positive integer"):
        Keyring.from_b64({raw_id: base64.b64encode(b"k" * 32).decode()})
