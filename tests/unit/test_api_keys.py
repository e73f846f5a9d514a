"""mail.auth's pure parts: the API key format, parsing, and workspace slugs."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mail.auth import generate_api_key, parse_api_key, slugify
from mail.errors import Unauthorized, ValidationError

KEY_FORMAT = re.compile(r"mr_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")
SLUG_FORMAT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # the workspaces.slug CHECK
LOOKUP = "0123456789abcdef"
SECRET = "A" * 20 + "_-" * 11 + "z"  # 43 characters, with the separators a secret may contain


def test_generated_key_has_the_documented_format() -> None:
    key, lookup_id, digest = generate_api_key()
    assert KEY_FORMAT.fullmatch(key), key
    assert key.startswith(f"mr_{lookup_id}_")
    secret = key[len(f"mr_{lookup_id}_") :]
    assert len(secret) == 43
    assert digest == hashlib.sha256(secret.encode()).digest()
    assert len(digest) == 32


def test_generated_keys_are_unique() -> None:
    keys = [generate_api_key() for _ in range(200)]
    assert len({key for key, _, _ in keys}) == 200
    assert len({lookup_id for _, lookup_id, _ in keys}) == 200


def test_custom_prefix() -> None:
    key, lookup_id, _ = generate_api_key("acme2")
    assert key.startswith(f"acme2_{lookup_id}_")
    assert parse_api_key(key)[0] == lookup_id


def test_round_trip() -> None:
    for _ in range(300):  # secrets contain "_" and "-" often enough over 300 keys
        key, lookup_id, digest = generate_api_key()
        parsed_lookup, secret = parse_api_key(key)
        assert parsed_lookup == lookup_id
        assert hashlib.sha256(secret.encode()).digest() == digest


def test_secret_with_underscores_and_hyphens_parses() -> None:
    assert parse_api_key(f"mr_{LOOKUP}_{SECRET}") == (LOOKUP, SECRET)


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_api_key(f"  mr_{LOOKUP}_{SECRET}\n") == (LOOKUP, SECRET)


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "   ",
        "\n\t",
        "mr",
        f"mr_{LOOKUP}",
        f"mr_{LOOKUP}_",
        f"mr_{LOOKUP}_{SECRET[:-1]}",  # short secret
        f"mr_{LOOKUP}_{SECRET}x",  # long secret
        f"mr_{LOOKUP}_{SECRET}_extra",  # an extra part
        f"mr_{LOOKUP}_{SECRET} extra",
        f"mr_{LOOKUP}_{SECRET}\nmr_{LOOKUP}_{SECRET}",
        f"mr_{LOOKUP[:-1]}_{SECRET}",  # lookup id of 15
        f"mr_{LOOKUP}0_{SECRET[:-1]}",  # lookup id of 17
        f"mr_{LOOKUP.upper()}_{SECRET}",
        f"mr_0123456789abcdeg_{SECRET}",
        f"MR_{LOOKUP}_{SECRET}",  # prefix shape
        f"1mr_{LOOKUP}_{SECRET}",
        f"_{LOOKUP}_{SECRET}",
        f"{'a' * 17}_{LOOKUP}_{SECRET}",
        f"m-r_{LOOKUP}_{SECRET}",
        f"mr_{LOOKUP}_{SECRET[:-1]}=",  # not url-safe base64
        f"mr_{LOOKUP}_{SECRET[:-1]}+",
        f"mr-{LOOKUP}-{SECRET}",
        f"Bearer mr_{LOOKUP}_{SECRET}",
    ],
)
def test_malformed_keys_are_unauthorized(presented: str) -> None:
    with pytest.raises(Unauthorized, match=r"^malformed API key"):
        parse_api_key(presented)


@pytest.mark.parametrize("prefix", ["MR", "my_app", "", "1mr", "m-r", "a" * 17])
def test_a_prefix_parse_api_key_would_refuse_is_not_used(prefix: str) -> None:
    with pytest.raises(ValidationError) as info:
        generate_api_key(prefix)
    assert info.value.field == "prefix"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Acme Corp", "acme-corp"),
        ("  Hello,   World!! ", "hello-world"),
        ("ACME-2 Labs", "acme-2-labs"),
        ("Café Zürich", "caf-z-rich"),
        ("---", "workspace"),
        ("", "workspace"),
        ("日本", "workspace"),
        ("a" * 70, "a" * 63),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


@hypothesis_settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=120))
def test_slugify_always_makes_a_slug_the_database_accepts(name: str) -> None:
    assert SLUG_FORMAT.fullmatch(slugify(name))
