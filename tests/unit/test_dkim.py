"""mail.dkim: signatures that dkimpy verifies (rsa-sha256, ed25519-sha256) on rendered campaign
messages and on the corpus, tampering that breaks them, canonicalization, keys at rest, settings."""

from __future__ import annotations

import base64
import re
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import Relaxed
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mail import dkim as mail_dkim
from mail.campaigns.personalize import Recipient
from mail.campaigns.render import MessageContent, RenderOptions, render_message
from mail.config import load_settings
from mail.crypto import Keyring
from mail.dkim import (
    DkimSigner,
    create_key,
    decrypt_key,
    dns_name,
    dns_record,
    encrypt_key,
    generate_private_key,
    key_path,
    load_private_key,
    load_signers,
    private_key_pem,
    signer_for,
)
from mail.errors import ConfigError, CryptoError
from mail.mime import read_corpus_message
from models.settings import Settings

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "spamassassin"
DOMAIN = "acme.test"
SELECTOR = "mr2026"
KEYRING = Keyring({1: bytes(range(32))})
CAMPAIGN = uuid.UUID("5b0c6a3e-1d2f-4e8a-9c7b-2a1f0e9d8c7b")

fuzz = hypothesis_settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
DnsFunc = Callable[..., bytes | None]


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def key(request: pytest.FixtureRequest) -> mail_dkim.PrivateKey:
    return generate_private_key(request.param)


@pytest.fixture(scope="module")
def signer(key: mail_dkim.PrivateKey) -> DkimSigner:
    return DkimSigner(DOMAIN, SELECTOR, key)


def _dns(key: mail_dkim.PrivateKey, name: str = f"{SELECTOR}._domainkey.{DOMAIN}.") -> DnsFunc:
    record = dns_record(key).encode("ascii")

    def lookup(asked: bytes | str, timeout: float = 5) -> bytes | None:
        asked_text = asked.decode("ascii") if isinstance(asked, bytes) else asked
        return record if asked_text.rstrip(".") == name.rstrip(".") else None

    return lookup


def _verify(message: bytes, key: mail_dkim.PrivateKey) -> bool:
    return bool(dkim.verify(message, dnsfunc=_dns(key)))


class Plan:
    def open_url(self) -> str:
        return "https://t.acme.test/t/o/OPEN.gif"

    def click_url(self, position: int) -> str:
        return f"https://t.acme.test/t/c/CLICK{position}"

    def unsubscribe_url(self) -> str:
        return "https://t.acme.test/u/UNSUB"

    def unsubscribe_mailto(self) -> str | None:
        return "mailto:unsubscribe@acme.test"


def _campaign_message(**recipient: object) -> bytes:
    content = MessageContent(
        subject="Grüße, {{firstName|there}}: our {{attr.plan|new}} plan",
        from_name="Zoë at Acme",
        from_email="news@acme.test",
        reply_to="help@acme.test",
        body_html='<html><body><p>Hi {{firstName}},</p><p><a href="https://acme.test/x">read  more</a></p>'
        "<p>trailing spaces   \n\ttabs</p></body></html>",
        body_text="Hi {{firstName}},\n\nread more: https://acme.test/x   \n\n\n",
        preview_text="News for {{company|you}}",
    )
    person = Recipient(**{"email": "ann@example.com", "first_name": "Ann", **recipient})  # type: ignore[arg-type]
    return render_message(content, person, RenderOptions(), Plan(), campaign_id=CAMPAIGN).message


def _signature_tags(message: bytes) -> dict[str, str]:
    field = message.split(b"\r\n", 1)[0]
    block = message.split(b"\r\n\r\n", 1)[0].decode("ascii")
    match = re.match(r"DKIM-Signature:(.*?)\r\n(?=\S)", block, re.S)
    assert field.startswith(b"DKIM-Signature:") and match
    value = re.sub(r"\s+", "", match.group(1))
    return dict(tag.split("=", 1) for tag in value.split(";") if tag)


# --- verification -------------------------------------------------------------------------------


def test_rendered_campaign_messages_verify(signer: DkimSigner, key: mail_dkim.PrivateKey) -> None:
    for first_name in ("Ann", "José", "Ann\r\nBcc: x@y"):
        signed = signer.sign(_campaign_message(first_name=first_name))
        assert _verify(signed, key)


def test_the_signature_names_its_algorithm_and_the_signed_headers(
    signer: DkimSigner, key: mail_dkim.PrivateKey
) -> None:
    tags = _signature_tags(signer.sign(_campaign_message(), timestamp=1_800_000_000))
    expected_algorithm = "rsa-sha256" if isinstance(key, rsa.RSAPrivateKey) else "ed25519-sha256"
    assert tags["v"] == "1" and tags["a"] == expected_algorithm == signer.algorithm
    assert tags["c"] == "relaxed/relaxed" and tags["d"] == DOMAIN and tags["s"] == SELECTOR
    assert tags["t"] == "1800000000"
    assert tags["h"].split(":") == [
        "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
        "list-unsubscribe", "list-unsubscribe-post", "reply-to", "from",
    ]  # fmt: skip


@pytest.mark.skipif(not (CORPUS / "easy-ham-1").is_dir(), reason="no SpamAssassin corpus")
def test_corpus_messages_verify(signer: DkimSigner, key: mail_dkim.PrivateKey) -> None:
    paths = sorted((CORPUS / "easy-ham-1").iterdir())[:25]
    for path in paths:
        raw = read_corpus_message(path)
        signed = signer.sign(raw)
        assert b"\n" not in signed.replace(b"\r\n", b""), path.name  # returned with CRLF
        assert _verify(signed, key), path.name
        assert not _verify(signed.replace(b"\r\n\r\n", b"\r\n\r\nX", 1), key), path.name


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda m: m.replace(b"Hi Ann,", b"Hi Bob,"), id="body"),
        pytest.param(lambda m: m.replace(b"\r\nTo: Ann <", b"\r\nTo: Bob <"), id="to"),
        pytest.param(lambda m: re.sub(rb"\r\nSubject: ", b"\r\nSubject: Re: ", m), id="subject"),
        pytest.param(lambda m: m.replace(b"UNSUB", b"UNSUX"), id="list-unsubscribe"),
        pytest.param(lambda m: m.replace(b"\r\nReply-To: help@", b"\r\nReply-To: evil@"), id="reply-to"),
        pytest.param(
            lambda m: m.replace(b"\r\nMIME-Version", b"\r\nFrom: Boss <boss@acme.test>\r\nMIME-Version"),
            id="a-second-from",
        ),
        pytest.param(lambda m: m + b"appended\r\n", id="appended-body-line"),
    ],
)
def test_tampering_breaks_the_signature(
    signer: DkimSigner, key: mail_dkim.PrivateKey, tamper: Callable[[bytes], bytes]
) -> None:
    signed = signer.sign(_campaign_message())
    tampered = tamper(signed)
    assert tampered != signed
    assert not _verify(tampered, key)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda m: m.replace(b"\r\nMIME-Version", b"\r\nX-Relay: added\r\nMIME-Version"), id="new-header"
        ),
        pytest.param(lambda m: m.replace(b"\r\nSubject: ", b"\r\nSubject:   \r\n\t"), id="refolded-subject"),
        pytest.param(lambda m: m.replace(b"\r\nMIME-Version: 1.0", b"\r\nmime-version:  1.0 "), id="case"),
        pytest.param(lambda m: m.rstrip(b"\r\n") + b"\r\n\r\n\r\n", id="blank-lines-at-end"),
        pytest.param(lambda m: m.replace(b"read more:", b"read    more:"), id="body-whitespace"),
    ],
)
def test_what_relaxed_canonicalization_allows_still_verifies(
    signer: DkimSigner, key: mail_dkim.PrivateKey, change: Callable[[bytes], bytes]
) -> None:
    signed = signer.sign(_campaign_message())
    changed = change(signed)
    assert changed != signed
    assert _verify(changed, key)


def test_the_wrong_public_key_does_not_verify(signer: DkimSigner, key: mail_dkim.PrivateKey) -> None:
    other = generate_private_key("rsa" if isinstance(key, rsa.RSAPrivateKey) else "ed25519")
    assert not _verify(signer.sign(_campaign_message()), other)


def test_bare_lf_messages_are_signed_as_crlf(signer: DkimSigner, key: mail_dkim.PrivateKey) -> None:
    raw = b"From: a@acme.test\nTo: b@example.com\nSubject: x\n\nline one\nline two\n"
    signed = signer.sign(raw)
    assert signed.endswith(b"Subject: x\r\n\r\nline one\r\nline two\r\n")
    assert _verify(signed, key)


def test_a_message_without_a_body_verifies(signer: DkimSigner, key: mail_dkim.PrivateKey) -> None:
    assert _verify(signer.sign(b"From: a@acme.test\r\nSubject: x\r\n\r\n"), key)


def test_signature_lines_stay_short(signer: DkimSigner) -> None:
    field = signer.signature_field(_campaign_message())
    assert field.startswith(b"DKIM-Signature: ") and field.endswith(b"\r\n")
    assert max(len(line) for line in field.split(b"\r\n")) <= 98


def test_from_must_be_signed() -> None:
    with pytest.raises(ValueError, match="From"):
        DkimSigner(DOMAIN, SELECTOR, generate_private_key("ed25519"), signed_headers=["to", "subject"])


@pytest.mark.parametrize(
    ("domain", "selector"), [("localhost", "s1"), ("acme.test", "bad_selector"), ("-a.test", "s")]
)
def test_domain_and_selector_are_checked(domain: str, selector: str) -> None:
    with pytest.raises(ConfigError):
        DkimSigner(domain, selector, generate_private_key("ed25519"))


# --- canonicalization, against dkimpy's --------------------------------------------------------

body_lines = st.lists(st.text(alphabet=" \tab=.", max_size=12), max_size=8)


@given(body_lines)
@fuzz
def test_body_canonicalization_is_dkimpys(lines: list[str]) -> None:
    body = "".join(f"{line}\r\n" for line in lines).encode("ascii")
    assert mail_dkim._relaxed_body(body) == Relaxed.canonicalize_body(body)


@given(
    name=st.sampled_from(["Subject", "subject ", "X-Long"]),
    pieces=st.lists(st.text(alphabet=" \tab:;", max_size=10), min_size=1, max_size=4),
)
@fuzz
def test_header_canonicalization_is_dkimpys(name: str, pieces: list[str]) -> None:
    value = "\r\n ".join(pieces).encode("ascii") + b"\r\n"
    raw = name.encode("ascii") + b":" + value
    ((expected_name, expected_value),) = Relaxed.canonicalize_headers([(name.encode("ascii"), value)])
    assert mail_dkim._relaxed_field(raw) == expected_name + b":" + expected_value


# --- keys ---------------------------------------------------------------------------------------


def test_dns_records_hold_the_public_key() -> None:
    rsa_key = generate_private_key("rsa")
    assert isinstance(rsa_key, rsa.RSAPrivateKey) and rsa_key.key_size == 2048
    record = dns_record(rsa_key)
    assert record.startswith("v=DKIM1; k=rsa; p=MII")
    ed_key = generate_private_key("ed25519")
    record = dns_record(ed_key.public_key())
    assert record.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(record.rpartition("p=")[2])) == 32
    assert dns_name("Acme.Test", "MR2026") == "mr2026._domainkey.acme.test"


def test_pem_round_trip_and_refusals() -> None:
    for key_type in ("rsa", "ed25519"):
        key = generate_private_key(key_type)
        loaded = load_private_key(private_key_pem(key))
        assert dns_record(loaded) == dns_record(key)
    with pytest.raises(ConfigError):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError):
        generate_private_key("dsa")  # type: ignore[arg-type]


def test_an_encrypted_key_opens_only_for_its_domain_and_selector() -> None:
    key = generate_private_key("ed25519")
    blob = encrypt_key(KEYRING, key, DOMAIN, SELECTOR)
    assert b"PRIVATE KEY" not in blob
    assert isinstance(decrypt_key(KEYRING, blob, DOMAIN, SELECTOR), ed25519.Ed25519PrivateKey)
    with pytest.raises(CryptoError):
        decrypt_key(KEYRING, blob, "other.test", SELECTOR)
    with pytest.raises(CryptoError):
        decrypt_key(KEYRING, blob, DOMAIN, "old")


def _settings(tmp_path: Path, dkim_table: str = "") -> Settings:
    config = tmp_path / "settings.toml"
    config.write_text(f'[app]\ndata_dir = "{tmp_path / "data"}"\n{dkim_table}', encoding="utf-8")
    return load_settings(path=config, environ={})


def test_create_store_and_load_signers(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path, record = create_key(settings, KEYRING, DOMAIN, SELECTOR, "rsa")
    assert path == tmp_path / "data" / "dkim" / f"{DOMAIN}.{SELECTOR}.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in path.read_bytes()
    with pytest.raises(FileExistsError):
        create_key(settings, KEYRING, DOMAIN, SELECTOR, "rsa")
    ed_path, ed_record = create_key(settings, KEYRING, "other.test", "ed1", "ed25519")
    moved = tmp_path / "elsewhere.key"
    ed_path.rename(moved)

    settings = _settings(
        tmp_path,
        f'[dkim.keys]\n"{DOMAIN}" = {{ selector = "{SELECTOR}" }}\n'
        f'"other.test" = {{ selector = "ed1", key_file = "{moved}" }}\n',
    )
    assert key_path(settings, DOMAIN) == path and key_path(settings, "other.test") == moved
    signers = load_signers(settings, KEYRING)
    assert sorted(signers) == [DOMAIN, "other.test"]
    assert signers[DOMAIN].algorithm == "rsa-sha256" and signers["other.test"].algorithm == "ed25519-sha256"

    message = _campaign_message()
    signed = signers[DOMAIN].sign(message)
    record_bytes = record.encode("ascii")
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record_bytes)

    with pytest.raises(ConfigError, match=r"cannot decrypt|tampered|context|authenticate"):
        load_signers(settings, Keyring({1: bytes(32)}))  # the key was written under another keyring
    with pytest.raises(ConfigError, match="cannot read"):
        load_signers(_settings(tmp_path, '[dkim.keys]\n"missing.test" = { selector = "s1" }\n'), KEYRING)
    assert ed_record.startswith("v=DKIM1; k=ed25519;")


def test_the_from_domain_or_its_closest_parent_signs() -> None:
    key = generate_private_key("ed25519")
    signers = {name: DkimSigner(name, "s1", key) for name in ("acme.test", "news.acme.test")}
    assert signer_for(signers, "a@news.acme.test") is signers["news.acme.test"]
    assert signer_for(signers, "a@eu.news.acme.test") is signers["news.acme.test"]
    assert signer_for(signers, "a@ACME.test") is signers["acme.test"]
    assert signer_for(signers, "a@other.test") is None
    assert signer_for({"test.x": signers["acme.test"]}, "a@test") is None


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[dkim.keys]\n"localhost" = { selector = "s1" }\n', "expected ASCII domain names"),
        ('[dkim.keys]\n"acme.test" = { selector = "s_1" }\n', "acme.test: expected a selector of DNS labels"),
        ('[dkim.keys]\n"acme.test" = { selector = "s1", path = "x" }\n', "unknown key dkim.keys[...].path"),
        ('[dkim.keys]\n"acme.test" = {}\n', "missing required field"),
        (
            '[dkim.keys]\n"Acme.test" = { selector = "s1" }\n"acme.TEST" = { selector = "s2" }\n',
            "listed twice",
        ),
    ],
)
def test_bad_dkim_settings_name_the_key(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _settings(tmp_path, table)
    text = str(raised.value)
    assert text.startswith(("settings: dkim.keys", "settings: unknown key dkim.keys")) and message in text
    assert "(MAILRAY_DKIM__KEYS)" in text or "unknown key" in text


def test_dkim_keys_come_from_the_environment_too(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("", encoding="utf-8")
    settings = load_settings(
        path=config, environ={"MAILRAY_DKIM__KEYS": '{ "acme.test" = { selector = "mr1" } }'}
    )
    assert settings.dkim.keys["acme.test"].selector == "mr1"


@pytest.fixture(autouse=True)
def _no_real_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Verification must use the test's dnsfunc; a real lookup is a bug in the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a DKIM test tried a real DNS lookup")

    monkeypatch.setattr(dkim, "get_txt", refuse)
    yield
