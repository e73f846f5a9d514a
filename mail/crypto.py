"""AES-256-GCM envelope encryption with versioned keys.

Every value gets its own random 256-bit data key (DEK). The DEK encrypts the payload; a
key-encryption key (KEK) from the `Keyring` wraps the DEK. Rotating keys therefore only re-wraps
48 bytes per value (`Keyring.rewrap`); the payload ciphertext is never touched.

Ciphertext format, version 1 (all offsets in bytes, integers big-endian)::

    offset  size  field
    0       1     version            0x01
    1       4     key_id             uint32, the KEK that wrapped the DEK
    5       12    wrap_nonce         random, for wrapping the DEK
    17      48    wrapped_dek        AES-GCM(KEK, wrap_nonce, DEK, aad=version||key_id): 32 + 16 tag
    65      12    nonce              random, for the payload
    77      n+16  ciphertext+tag     AES-GCM(DEK, nonce, plaintext, aad=context)

A blob is therefore 93 + len(plaintext) bytes. The wrap's associated data binds the version byte
and key id, so neither can be edited without the unwrap failing. The payload's associated data is
the caller's `context` (e.g. `mail.key_rotation.column_context`), so a ciphertext copied to
another row or column does not decrypt there.

Keys come from `settings.security.keys` (`load_keyring`); in dev mode without configured keys a
key is generated once into `<data_dir>/keyring.json`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import logging
import os
import re
import stat
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mail.config import data_dir
from mail.errors import ConfigError, CryptoError
from models.settings import Settings

log = logging.getLogger(__name__)

# Plain positive integers only: "01" or "²" would be a second key 1 or crash int().
_KEY_ID = re.compile(r"0|[1-9][0-9]*")
FORMAT_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_KEY_ID = 2**32 - 1
KEYRING_FILE = "keyring.json"

_HEADER = struct.Struct(">BI")  # version, key_id
_WRAPPED_DEK_BYTES = KEY_BYTES + TAG_BYTES
_WRAP_NONCE_AT = _HEADER.size  # 5
_WRAPPED_DEK_AT = _WRAP_NONCE_AT + NONCE_BYTES  # 17
_NONCE_AT = _WRAPPED_DEK_AT + _WRAPPED_DEK_BYTES  # 65
_PAYLOAD_AT = _NONCE_AT + NONCE_BYTES  # 77
OVERHEAD_BYTES = _PAYLOAD_AT + TAG_BYTES  # 93

_PRODUCTION_NEEDS_KEYS = (
    "settings: security.keys (MAILRAY_SECURITY__KEYS): production mode needs at least one key; "
    "generate one with `mailray keys generate`"
)


def generate_key() -> str:
    """A new key-encryption key: base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def key_id_of(blob: bytes) -> int:
    """The id of the key that wrapped this ciphertext's data key."""
    return _parse_header(blob)


def _parse_header(blob: bytes) -> int:
    if len(blob) < OVERHEAD_BYTES:
        raise CryptoError(
            f"ciphertext is truncated: {len(blob)} bytes, a version {FORMAT_VERSION} blob has at "
            f"least {OVERHEAD_BYTES}"
        )
    version, key_id = _HEADER.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise CryptoError(f"ciphertext has unsupported format version {version}; expected {FORMAT_VERSION}")
    return int(key_id)


def _check_key_id(key_id: int, where: str) -> None:
    if not 1 <= key_id <= MAX_KEY_ID:
        raise ConfigError(f"{where}: key id must be an integer from 1 to {MAX_KEY_ID}, got {key_id}")


class Keyring:
    """Key-encryption keys by id: the highest id encrypts, every key decrypts."""

    __slots__ = ("_keks", "_raw_keys", "newest_id")

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        if not keys:
            raise ConfigError("keyring: at least one key is needed")
        keks: dict[int, AESGCM] = {}
        raw_keys: dict[int, bytes] = {}
        for key_id, key in keys.items():
            _check_key_id(key_id, "keyring")
            if len(key) != KEY_BYTES:
                # The length only: never echo key material.
                raise ConfigError(f"keyring: key {key_id}: expected {KEY_BYTES} bytes, got {len(key)}")
            keks[key_id] = AESGCM(key)
            raw_keys[key_id] = bytes(key)
        self._keks = keks
        self._raw_keys = raw_keys  # for derive_key only; never logged or shown
        self.newest_id: int = max(keks)

    @classmethod
    def from_b64(cls, keys: Mapping[str, str], *, source: str = "settings: security.keys") -> Keyring:
        """Build from `{"<id>": "<base64 of 32 bytes>"}`; errors name `<source>.<id>`."""
        decoded: dict[int, bytes] = {}
        for raw_id, value in keys.items():
            where = f"{source}.{raw_id}"
            if not _KEY_ID.fullmatch(raw_id):
                raise ConfigError(f"{where}: key id must be a positive integer, got {raw_id!r}")
            key_id = int(raw_id)
            _check_key_id(key_id, where)
            try:
                key = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(
                    f"{where}: expected base64 of {KEY_BYTES} bytes, got invalid base64"
                ) from None
            if len(key) != KEY_BYTES:
                raise ConfigError(f"{where}: expected base64 of {KEY_BYTES} bytes, got {len(key)} bytes")
            decoded[key_id] = key
        if not decoded:
            raise ConfigError(f"{source}: at least one key is needed")
        return cls(decoded)

    @property
    def key_ids(self) -> tuple[int, ...]:
        """Every key id, ascending."""
        return tuple(sorted(self._keks))

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keks

    def __repr__(self) -> str:
        return f"Keyring(key_ids={list(self.key_ids)}, newest_id={self.newest_id})"

    def derive_key(self, key_id: int, info: bytes, length: int = 32) -> bytes:
        """A key for another purpose, derived from key `key_id` with HKDF-SHA256 (no salt).

        Distinct `info` strings give independent keys, so the keyring's keys are never used
        directly outside envelope encryption.
        """
        raw_key = self._raw_keys.get(key_id)
        if raw_key is None:
            raise CryptoError(
                f"cannot derive from key {key_id}, which is not in the keyring "
                f"(known key ids: {', '.join(map(str, self.key_ids))})"
            )
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(raw_key)

    def encrypt(self, plaintext: bytes, *, context: bytes = b"") -> bytes:
        """Encrypt under a fresh data key wrapped by the newest key; `context` must match on decrypt."""
        dek = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        header = _HEADER.pack(FORMAT_VERSION, self.newest_id)
        wrap_nonce = os.urandom(NONCE_BYTES)
        wrapped = self._keks[self.newest_id].encrypt(wrap_nonce, dek, header)
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(dek).encrypt(nonce, plaintext, context)
        return b"".join((header, wrap_nonce, wrapped, nonce, sealed))

    def decrypt(self, blob: bytes, *, context: bytes = b"") -> bytes:
        """Decrypt with whichever key wrapped the blob; CryptoError if it does not authenticate."""
        dek = self._unwrap(blob)
        try:
            return AESGCM(dek).decrypt(blob[_NONCE_AT:_PAYLOAD_AT], blob[_PAYLOAD_AT:], context)
        except InvalidTag:
            raise CryptoError(
                "ciphertext does not authenticate: tampered, or decrypted with another context "
                "(moved from another row or column)"
            ) from None

    def encrypt_text(self, text: str, *, context: bytes = b"") -> bytes:
        """`encrypt` for text (UTF-8)."""
        return self.encrypt(text.encode("utf-8"), context=context)

    def decrypt_text(self, blob: bytes, *, context: bytes = b"") -> str:
        """`decrypt` for text (UTF-8)."""
        plaintext = self.decrypt(blob, context=context)
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise CryptoError("decrypted value is not UTF-8 text") from None

    def needs_rewrap(self, blob: bytes) -> bool:
        """Whether the blob's data key is wrapped by a key older than the newest."""
        return _parse_header(blob) != self.newest_id

    def rewrap(self, blob: bytes, *, context: bytes | None = None) -> bytes:
        """Re-wrap the data key under the newest key; the payload bytes are kept as they are.

        Returns `blob` itself when it is already on the newest key. With `context`, the payload is
        authenticated first, so a corrupt value is reported instead of carried over to the new key.
        """
        if _parse_header(blob) == self.newest_id:
            return blob
        if context is not None:
            self.decrypt(blob, context=context)
        dek = self._unwrap(blob)
        header = _HEADER.pack(FORMAT_VERSION, self.newest_id)
        wrap_nonce = os.urandom(NONCE_BYTES)
        wrapped = self._keks[self.newest_id].encrypt(wrap_nonce, dek, header)
        return b"".join((header, wrap_nonce, wrapped, blob[_NONCE_AT:]))

    def _unwrap(self, blob: bytes) -> bytes:
        key_id = _parse_header(blob)
        kek = self._keks.get(key_id)
        if kek is None:
            raise CryptoError(
                f"ciphertext was encrypted with key {key_id}, which is not in the keyring "
                f"(known key ids: {', '.join(map(str, self.key_ids))})"
            )
        try:
            return kek.decrypt(
                blob[_WRAP_NONCE_AT:_WRAPPED_DEK_AT], blob[_WRAPPED_DEK_AT:_NONCE_AT], blob[:_WRAP_NONCE_AT]
            )
        except InvalidTag:
            raise CryptoError(
                f"ciphertext's data key does not unwrap with key {key_id}: tampered, or key {key_id} "
                "is not the key it was written with"
            ) from None


# --- loading -------------------------------------------------------------------------------------


def load_keyring(settings: Settings) -> Keyring:
    """The keyring from `security.keys`; in dev mode without keys, `<data_dir>/keyring.json`."""
    if settings.security.keys:
        return Keyring.from_b64(settings.security.keys)
    if settings.app.mode == "production":
        raise ConfigError(_PRODUCTION_NEEDS_KEYS)
    path = data_dir(settings) / KEYRING_FILE
    if not path.exists():
        _create_dev_keyring(path)
    return Keyring.from_b64(_read_keyring_file(path), source=f"{path}: keys")


def add_dev_key(directory: str | os.PathLike[str]) -> int:
    """Add a new newest key to `<directory>/keyring.json` (created if missing); return its id."""
    path = Path(directory) / KEYRING_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        keys = _read_keyring_file(path) if path.exists() else {}
        ids = [int(raw_id) for raw_id in keys if _KEY_ID.fullmatch(raw_id)]
        new_id = max(ids, default=0) + 1
        keys[str(new_id)] = generate_key()
        _write_private(path, keys, replace=True)
    log.warning("dev keyring %s: added key %d; it encrypts from now on", path, new_id)
    return new_id


def _create_dev_keyring(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two processes may start at once: only one key may ever win, or data written with the
    # loser's key would become unreadable. Hence the lock, and `replace=False` refuses to overwrite.
    with _locked(path):
        created = not path.exists() and _write_private(path, {"1": generate_key()}, replace=False)
    if created:
        log.warning(
            "dev mode: generated encryption key 1 in %s; keep this file, without it encrypted data "
            "cannot be read (production mode needs security.keys)",
            path,
        )


def _read_keyring_file(path: Path) -> dict[str, str]:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("dev keyring %s is readable by other users (mode %o); expected 0600", path, mode & 0o777)
    try:
        return msgspec.json.decode(path.read_bytes(), type=dict[str, str])
    except msgspec.DecodeError as error:
        raise ConfigError(f"{path}: expected a JSON object of key id -> base64 key: {error}") from None


def _write_private(path: Path, keys: Mapping[str, str], *, replace: bool) -> bool:
    """Write `keys` to `path` with mode 0600, atomically; False if `replace` is off and it exists."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(msgspec.json.format(msgspec.json.encode(dict(keys))) + b"\n")
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic, and fails if the file exists
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside `path`, so concurrent `add_dev_key` calls do not lose a key."""
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
