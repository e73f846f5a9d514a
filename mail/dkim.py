"""DKIM signatures (RFC 6376): rsa-sha256 and ed25519-sha256 (RFC 8463), relaxed/relaxed.

`DkimSigner(domain, selector, private_key).sign(message)` returns the message with a
`DKIM-Signature` field first. What does not change between messages (the key, the fixed tags,
the hash and padding objects) is set up once. Signing is OpenSSL's, through `cryptography`.

- Signed header fields: From, To, Subject, Date, Message-ID, MIME-Version, Content-Type,
  List-Unsubscribe, List-Unsubscribe-Post and Reply-To, each instance present (bottom-up, as RFC
  6376 5.4.2 says), and From once more: a From added in transit then breaks the signature.
- Canonicalization relaxed/relaxed, so re-folded headers and whitespace changes in relays do not.
- Line ends: a message with bare LF (a file from disk) is signed as CRLF, and returned so.
- ed25519-sha256 (RFC 8463) signs the SHA-256 of the canonical header data with pure Ed25519;
  its DNS key is the raw 32-byte public key. Receivers that do not know it ignore the signature,
  so a domain that wants it publishes an RSA selector too and signs with both.

Keys at rest: a PEM private key encrypted with the keyring (mail.crypto envelope encryption,
context `mailray dkim key v1:<domain>:<selector>`, so a file copied to another domain's name does
not decrypt), in a file under the data directory: `<data_dir>/dkim/<domain>.<selector>.key`
unless `[dkim] keys` names another path. Key rotation (`Keyring.rewrap`) applies as to any
ciphertext; a copied file is useless without the keyring. `create_key` makes one and returns the
DNS TXT record to publish at `<selector>._domainkey.<domain>`; `load_signers` reads every key
the settings list.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mail.config import data_dir
from mail.crypto import Keyring
from mail.errors import ConfigError, CryptoError
from models.settings import DkimKeySettings, Settings

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
KeyType = Literal["rsa", "ed25519"]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey

DEFAULT_SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "reply-to",
)
OVERSIGNED_HEADERS = ("from",)
MIN_RSA_BITS = 1024  # what receivers accept; create_key makes 2048
DEFAULT_RSA_BITS = 2048
KEY_CONTEXT = b"mailray dkim key v1:"
KEY_DIRECTORY = "dkim"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_SPACE_RUNS = re.compile(rb"  +")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_FOLD_AT = 76
_H_TAG_CACHE = 64
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
_B64_CHUNK = 72


def check_domain(domain: str, what: str = "domain") -> str:
    """`domain`, lowercased, if it is an ASCII domain name of two or more labels."""
    if not isinstance(domain, str) or len(domain) > 253 or not _DOMAIN.fullmatch(domain):
        raise ConfigError(f"dkim: {what}: expected a domain name such as example.com, got {domain!r}")
    return domain.lower()


def check_selector(selector: str) -> str:
    """`selector`, lowercased, if it is one or more DNS labels."""
    if not isinstance(selector, str) or len(selector) > 63 or not _SELECTOR.fullmatch(selector):
        raise ConfigError(f"dkim: selector: expected DNS labels such as mr2026, got {selector!r}")
    return selector.lower()


class DkimSigner:
    """Signs messages for one domain and selector with one key."""

    __slots__ = ("_h_tags", "_headers", "_key", "_oversigned", "_tags", "algorithm", "domain", "selector")

    def __init__(
        self,
        domain: str,
        selector: str,
        private_key: PrivateKey,
        *,
        signed_headers: Iterable[str] = DEFAULT_SIGNED_HEADERS,
        oversigned_headers: Iterable[str] = OVERSIGNED_HEADERS,
    ) -> None:
        self.domain = check_domain(domain)
        self.selector = check_selector(selector)
        if isinstance(private_key, rsa.RSAPrivateKey):
            if private_key.key_size < MIN_RSA_BITS:
                raise ConfigError(
                    f"dkim: {self.domain}: RSA key of {private_key.key_size} bits; at least {MIN_RSA_BITS}"
                )
            self.algorithm: Algorithm = "rsa-sha256"
        elif isinstance(private_key, ed25519.Ed25519PrivateKey):
            self.algorithm = "ed25519-sha256"
        else:
            raise ConfigError(f"dkim: {self.domain}: expected an RSA or Ed25519 key, got {type(private_key)}")
        self._key = private_key
        self._headers = tuple(name.lower().encode("ascii") for name in signed_headers)
        if b"from" not in self._headers:
            raise ValueError("dkim: the From header field must be signed (RFC 6376 5.4)")
        self._oversigned = tuple(name.lower().encode("ascii") for name in oversigned_headers)
        # What every signature repeats: the fixed tags, and the h= tag of each header set seen.
        self._tags = f"v=1; a={self.algorithm}; c=relaxed/relaxed; d={self.domain}; s={self.selector};"
        self._h_tags: dict[tuple[bytes, ...], str] = {}

    def __repr__(self) -> str:
        return f"DkimSigner(domain={self.domain!r}, selector={self.selector!r}, algorithm={self.algorithm!r})"

    def sign(self, message: bytes, *, timestamp: int | None = None) -> bytes:
        """`message` (CRLF line ends) with a DKIM-Signature field prepended."""
        message = _crlf(message)
        return self.signature_field(message, timestamp=timestamp) + message

    def signature_field(self, message: bytes, *, timestamp: int | None = None) -> bytes:
        """The `DKIM-Signature: ...\\r\\n` field for `message` (whose line ends must be CRLF)."""
        header_block, body = _split(message)
        fields = _fields(header_block)
        body_hash = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest()).decode("ascii")

        names: list[bytes] = []
        for name in self._headers:
            names += [name] * sum(1 for field_name, _ in fields if field_name == name)
        names += self._oversigned
        # Bottom-up: the n-th use of a name signs its n-th instance from the bottom; past the
        # last instance a name signs nothing (the oversigning that keeps additions out).
        remaining: dict[bytes, list[bytes]] = {}
        for field_name, raw in fields:
            remaining.setdefault(field_name, []).append(raw)
        signed = [_relaxed_field(remaining[name].pop()) for name in names if remaining.get(name)]

        key = tuple(names)
        h_tag = self._h_tags.get(key)
        if h_tag is None:
            h_tag = _fold_list(" h=", ":", [name.decode("ascii") for name in names], ";")
            if len(self._h_tags) < _H_TAG_CACHE:
                self._h_tags[key] = h_tag
        when = int(timestamp if timestamp is not None else time.time())
        unsigned = "".join(
            ("DKIM-Signature: ", self._tags, f" t={when};", h_tag, f"\r\n bh={body_hash};\r\n b=")
        ).encode("ascii")
        data = b"".join(signed) + _relaxed_field(unsigned).removesuffix(b"\r\n")
        if isinstance(self._key, rsa.RSAPrivateKey):
            signature = self._key.sign(data, _PKCS1, _SHA256)
        else:
            signature = self._key.sign(hashlib.sha256(data).digest())
        b64 = base64.b64encode(signature)
        folded = b"\r\n ".join(b64[at : at + _B64_CHUNK] for at in range(0, len(b64), _B64_CHUNK))
        return unsigned + folded + b"\r\n"


def _crlf(message: bytes) -> bytes:
    if message.count(b"\n") != message.count(b"\r\n"):
        return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return message


def _split(message: bytes) -> tuple[bytes, bytes]:
    """The header block (each field ending in CRLF) and the body."""
    if message.startswith(b"\r\n"):
        return b"", message[2:]
    end = message.find(b"\r\n\r\n")
    if end < 0:  # headers only
        return (message if message.endswith(b"\r\n") else message + b"\r\n"), b""
    return message[: end + 2], message[end + 4 :]


def _fields(header_block: bytes) -> list[tuple[bytes, bytes]]:
    """(lowercased name, the field as written, continuation lines and final CRLF included)."""
    fields: list[tuple[bytes, bytes]] = []
    lines = header_block.split(b"\r\n")
    for line in lines[:-1]:  # the block ends with CRLF: the last item is empty
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line + b"\r\n")
            continue
        match = _FIELD_NAME.match(line)
        if match is None:
            continue  # not a header field (an mbox `From ` line): not signable, and not signed
        name = match.group().rstrip(b": \t").lower()
        fields.append((name, line + b"\r\n"))
    return fields


def _relaxed_field(raw: bytes) -> bytes:
    """RFC 6376 3.4.2: name lowercased, unfolded, runs of WSP as one space, none around the colon."""
    name, _, value = raw.partition(b":")
    value = _collapse_wsp(value.replace(b"\r\n", b"")).strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value + b"\r\n"


def _relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4: runs of WSP as one space, none at line ends, no empty lines at the end.

    A substitution that matched every space (`[ \t]+`) made canonicalizing an 18 KB HTML body
    cost fifteen times the Ed25519 signature: tabs become spaces first, and only runs of two or
    more spaces are substituted; bytes methods do the rest.
    """
    body = _collapse_wsp(body)
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")  # after collapsing, at most one space ends a line
    end = len(body)
    while body.endswith(b"\r\n", 0, end):
        end -= 2
    body = body[:end]
    if body.endswith(b" "):
        body = body[:-1]  # the last line, when the body has no final CRLF: SMTP will add one
    return body + b"\r\n" if body else b""


def _collapse_wsp(data: bytes) -> bytes:
    """Every run of spaces and tabs as one space."""
    if b"\t" in data:
        data = data.replace(b"\t", b" ")
    if b"  " in data:
        # A literal prefix lets the regex engine skip ahead; `[ \t]+` stopped at every space.
        data = _SPACE_RUNS.sub(b" ", data)
    return data


def _fold_list(prefix: str, separator: str, items: list[str], suffix: str) -> str:
    """`prefix` + items joined by `separator` + `suffix`, folded before an item past _FOLD_AT."""
    lines = ["\r\n" + prefix]
    for number, item in enumerate(items):
        piece = (separator if number else "") + item
        if len(lines[-1]) + len(piece) > _FOLD_AT and number:
            lines[-1] += separator
            lines.append("\r\n  " + item)
        else:
            lines[-1] += piece
    return "".join(lines) + suffix


# --- keys ----------------------------------------------------------------------------------------


def generate_private_key(key_type: KeyType = "rsa", *, bits: int = DEFAULT_RSA_BITS) -> PrivateKey:
    """A new key: RSA (2048 bits unless told) or Ed25519."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"dkim: key type must be 'rsa' or 'ed25519', got {key_type!r}")


def private_key_pem(key: PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM (encrypt it before it touches a disk: `encrypt_key`)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes) -> PrivateKey:
    """An RSA or Ed25519 private key from unencrypted PEM (PKCS#8, or PKCS#1 for RSA)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"dkim: cannot read the private key: {error}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ConfigError(f"dkim: expected an RSA or Ed25519 private key, got {type(key).__name__}")
    return key


def dns_name(domain: str, selector: str) -> str:
    """Where the public key is published: `<selector>._domainkey.<domain>`."""
    return f"{check_selector(selector)}._domainkey.{check_domain(domain)}"


def dns_record(key: PrivateKey | PublicKey) -> str:
    """The TXT record text: `v=DKIM1; k=rsa|ed25519; p=<base64>`.

    An RSA-2048 record is about 410 characters: DNS software splits it into strings of at most
    255, which receivers join again.
    """
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) else key
    if isinstance(public, rsa.RSAPublicKey):
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"


def key_context(domain: str, selector: str) -> bytes:
    return KEY_CONTEXT + f"{check_domain(domain)}:{check_selector(selector)}".encode("ascii")


def encrypt_key(keyring: Keyring, key: PrivateKey, domain: str, selector: str) -> bytes:
    """The key's PEM encrypted with the keyring, bound to its domain and selector."""
    return keyring.encrypt(private_key_pem(key), context=key_context(domain, selector))


def decrypt_key(keyring: Keyring, blob: bytes, domain: str, selector: str) -> PrivateKey:
    """The key `encrypt_key` wrote for this domain and selector."""
    return load_private_key(keyring.decrypt(blob, context=key_context(domain, selector)))


def key_path(settings: Settings, domain: str, selector: str | None = None) -> Path:
    """The key file of `domain`: the settings' `key_file` (relative: under the data directory), or
    `<data_dir>/dkim/<domain>.<selector>.key`."""
    domain = check_domain(domain)
    configured = _configured(settings).get(domain)
    name = configured.key_file if configured is not None else ""
    if name:
        path = Path(name).expanduser()
        return path if path.is_absolute() else data_dir(settings) / path
    chosen = selector if selector is not None else configured.selector if configured is not None else None
    if chosen is None:
        raise ConfigError(f"settings: dkim.keys (MAILRAY_DKIM__KEYS): no key for {domain}")
    return data_dir(settings) / KEY_DIRECTORY / f"{domain}.{check_selector(chosen)}.key"


def create_key(
    settings: Settings, keyring: Keyring, domain: str, selector: str, key_type: KeyType = "rsa"
) -> tuple[Path, str]:
    """Generate a key, store it encrypted at `key_path`, and return (its path, its DNS TXT record).

    Refuses to overwrite an existing file: a published selector's key must not change under it.
    Signing starts once `[dkim] keys` lists the domain with this selector.
    """
    key = generate_private_key(key_type)
    path = key_path(settings, domain, selector)
    write_key_file(path, encrypt_key(keyring, key, domain, selector))
    return path, dns_record(key)


def write_key_file(path: Path, blob: bytes) -> None:
    """Write `blob` to a new file at `path`, mode 0600; FileExistsError if there is one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(blob)
            file.flush()
            os.fsync(file.fileno())
        os.link(tmp, path)  # atomic, and fails if the file exists
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_signers(settings: Settings, keyring: Keyring) -> dict[str, DkimSigner]:
    """A signer for every domain `[dkim] keys` lists, its key read from its file."""
    signers: dict[str, DkimSigner] = {}
    for domain, configured in _configured(settings).items():
        path = key_path(settings, domain)
        try:
            blob = path.read_bytes()
        except OSError as error:
            raise ConfigError(
                f"settings: dkim.keys (MAILRAY_DKIM__KEYS): {domain}: cannot read {path}: {error.strerror}"
            ) from None
        try:
            key = decrypt_key(keyring, blob, domain, configured.selector)
        except CryptoError as error:
            raise ConfigError(f"dkim: {domain}: {path}: {error.message}") from None
        signers[domain] = DkimSigner(domain, configured.selector, key)
    return signers


def signer_for(signers: Mapping[str, DkimSigner], from_email: str) -> DkimSigner | None:
    """The signer of the From address' domain, or of its closest listed parent domain."""
    domain = from_email.rpartition("@")[2].lower().rstrip(".")
    while domain:
        signer = signers.get(domain)
        if signer is not None:
            return signer
        _, _, domain = domain.partition(".")
        if "." not in domain:  # never sign as a bare top-level domain
            return None
    return None


def _configured(settings: Settings) -> dict[str, DkimKeySettings]:
    return {domain.lower(): key for domain, key in settings.dkim.keys.items()}
