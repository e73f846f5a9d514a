"""mail.config.load_settings: the settings file, MAILRAY_<SECTION>__<KEY> overrides, and the one-line
ConfigError the CLI prints when either is wrong. Every test passes `environ=` so the real
environment never leaks in."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mail.config import DEFAULT_CONFIG, load_settings, parse_nameserver
from mail.errors import ConfigError
from models.settings import Settings

KEY_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def _file(tmp_path: Path, text: str, name: str = "settings.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _load(tmp_path: Path, text: str = "", environ: Mapping[str, str] | None = None) -> Settings:
    return load_settings(path=_file(tmp_path, text), environ=dict(environ or {}))


def _error(tmp_path: Path, text: str = "", environ: Mapping[str, str] | None = None) -> str:
    """The ConfigError message; the CLI prints it as it is, so it must be one line."""
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, environ)
    message = str(info.value)
    assert message == info.value.message
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith("settings: ")
    return message


# --- defaults -----------------------------------------------------------------------------------


def test_defaults_load_from_the_repository_settings_file() -> None:
    settings = load_settings(environ={})
    assert isinstance(settings, Settings)
    in_file = tomllib.loads(DEFAULT_CONFIG.read_text())
    assert in_file, "configs/settings.toml sets nothing"
    checked = 0
    for section, values in in_file.items():
        for key, value in values.items():
            assert getattr(getattr(settings, section), key) == value, f"{section}.{key}"
            checked += 1
    assert checked >= 10
    # Keys the file leaves commented out keep the struct's defaults.
    assert settings.database.url is None
    assert settings.redis.url is None
    assert settings.security.keys == {}


def test_explicit_path_replaces_the_default_file_and_unset_keys_keep_struct_defaults(
    tmp_path: Path,
) -> None:
    settings = _load(tmp_path, '[database]\npool_max_size = 7\n\n[app]\nmode = "production"\n')
    assert settings.database.pool_max_size == 7
    assert settings.app.mode == "production"
    assert settings.database.pool_min_size == 1
    assert settings.serve.http_port == 8000
    assert settings.app.log_level == "INFO"


def test_mailray_config_names_the_file_and_an_explicit_path_wins(tmp_path: Path) -> None:
    from_env = _file(tmp_path, "[database]\npool_max_size = 3\n", "env.toml")
    explicit = _file(tmp_path, "[database]\npool_max_size = 4\n", "explicit.toml")
    assert load_settings(environ={"MAILRAY_CONFIG": str(from_env)}).database.pool_max_size == 3
    settings = load_settings(path=explicit, environ={"MAILRAY_CONFIG": str(from_env)})
    assert settings.database.pool_max_size == 4


# --- environment overrides ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "section", "key", "expected"),
    [
        ("MAILRAY_DATABASE__POOL_MAX_SIZE", "42", "database", "pool_max_size", 42),
        ("MAILRAY_RAY__INCLUDE_DASHBOARD", "false", "ray", "include_dashboard", False),
        ("MAILRAY_SERVE__HAPROXY_INGRESS", "true", "serve", "haproxy_ingress", True),
        (
            "MAILRAY_DATABASE__URL",
            "postgresql://u@db:5432/mail",
            "database",
            "url",
            "postgresql://u@db:5432/mail",
        ),
        # A text field keeps text that would read as a number or a boolean.
        ("MAILRAY_APP__DATA_DIR", "123", "app", "data_dir", "123"),
        ("MAILRAY_RAY__NAMESPACE", "true", "ray", "namespace", "true"),
        ("MAILRAY_DATABASE__CONNECT_TIMEOUT_S", "2.5", "database", "connect_timeout_s", 2.5),
        ("MAILRAY_RAY__NUM_CPUS", "4", "ray", "num_cpus", 4),
        ("MAILRAY_APP__MODE", "production", "app", "mode", "production"),
        (
            "MAILRAY_SECURITY__KEYS",
            f'{{ "1" = "{KEY_B64}", "12" = "{KEY_B64}" }}',
            "security",
            "keys",
            {"1": KEY_B64, "12": KEY_B64},
        ),
    ],
)
def test_env_overrides_each_kind_of_value(
    tmp_path: Path, name: str, raw: str, section: str, key: str, expected: Any
) -> None:
    settings = _load(tmp_path, environ={name: raw})
    value = getattr(getattr(settings, section), key)
    assert value == expected
    assert type(value) is type(expected)


def test_env_wins_over_the_file_and_keeps_the_rest_of_the_section(tmp_path: Path) -> None:
    text = "[database]\npool_min_size = 2\npool_max_size = 5\n"
    settings = _load(tmp_path, text, {"MAILRAY_DATABASE__POOL_MAX_SIZE": "9"})
    assert (settings.database.pool_min_size, settings.database.pool_max_size) == (2, 9)


def test_other_environment_variables_are_ignored(tmp_path: Path) -> None:
    environ = {"PATH": "/usr/bin", "MAILRAYX": "1", "HOME": "/root"}
    assert _load(tmp_path, environ=environ) == _load(tmp_path)


def test_variable_names_are_case_insensitive_after_the_prefix(tmp_path: Path) -> None:
    assert _load(tmp_path, environ={"MAILRAY_database__Pool_Max_Size": "8"}).database.pool_max_size == 8


# --- wrong types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[database]\npool_max_size = "ten"\n',
            "settings: database.pool_max_size (MAILRAY_DATABASE__POOL_MAX_SIZE): expected int, got str",
        ),
        # No coercion in the file: a quoted number is still a string.
        (
            '[database]\npool_max_size = "10"\n',
            "settings: database.pool_max_size (MAILRAY_DATABASE__POOL_MAX_SIZE): expected int, got str",
        ),
        (
            "[database]\npool_max_size = 10.5\n",
            "settings: database.pool_max_size (MAILRAY_DATABASE__POOL_MAX_SIZE): expected int, got float",
        ),
        (
            '[ray]\ninclude_dashboard = "true"\n',
            "settings: ray.include_dashboard (MAILRAY_RAY__INCLUDE_DASHBOARD): expected bool, got str",
        ),
        ("[app]\ndata_dir = 5\n", "settings: app.data_dir (MAILRAY_APP__DATA_DIR): expected str, got int"),
        (
            '[security]\nkeys = { "1" = 5 }\n',
            "settings: security.keys (MAILRAY_SECURITY__KEYS): expected str, got int",
        ),
        (
            "[security]\nkeys = [1, 2]\n",
            "settings: security.keys (MAILRAY_SECURITY__KEYS): expected object, got array",
        ),
        ("database = 5\n", "settings: database: expected object, got int"),
    ],
)
def test_a_wrong_type_in_the_file_names_key_variable_and_expectation(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert _error(tmp_path, text) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"MAILRAY_DATABASE__POOL_MAX_SIZE": "ten"},
            "settings: database.pool_max_size (MAILRAY_DATABASE__POOL_MAX_SIZE): expected int, got str",
        ),
        (
            {"MAILRAY_DATABASE__POOL_MAX_SIZE": "1.5"},
            "settings: database.pool_max_size (MAILRAY_DATABASE__POOL_MAX_SIZE): expected int, got float",
        ),
        (
            {"MAILRAY_RAY__INCLUDE_DASHBOARD": "yes"},
            "settings: ray.include_dashboard (MAILRAY_RAY__INCLUDE_DASHBOARD): expected bool, got str",
        ),
        (
            {"MAILRAY_RAY__INCLUDE_DASHBOARD": "1"},
            "settings: ray.include_dashboard (MAILRAY_RAY__INCLUDE_DASHBOARD): expected bool, got int",
        ),
        (
            {"MAILRAY_SECURITY__KEYS": "abc"},
            "settings: security.keys (MAILRAY_SECURITY__KEYS): expected object, got str",
        ),
        (
            {"MAILRAY_SECURITY__KEYS": '{ "1" = 7 }'},
            "settings: security.keys (MAILRAY_SECURITY__KEYS): expected str, got int",
        ),
        (
            {"MAILRAY_RAY__NUM_CPUS": "many"},
            "settings: ray.num_cpus (MAILRAY_RAY__NUM_CPUS): expected int | null, got str",
        ),
    ],
)
def test_a_wrong_type_in_the_env_names_key_variable_and_expectation(
    tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    assert _error(tmp_path, environ=environ) == expected


# --- unknown keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[database]\npool_size = 3\n", "settings: unknown key database.pool_size"),
        ("debug = true\n", "settings: unknown key debug"),
        ('[databse]\nurl = "postgresql://x"\n', "settings: unknown key databse"),
    ],
)
def test_an_unknown_key_in_the_file_is_named(tmp_path: Path, text: str, expected: str) -> None:
    assert _error(tmp_path, text) == expected


@pytest.mark.parametrize(
    ("name", "must_contain"),
    [
        ("MAILRAY_DATABSE__URL", ("MAILRAY_DATABSE__URL", "unknown section 'databse'", "'database'")),
        (
            "MAILRAY_DATABASE__POOL_SIZE",
            ("MAILRAY_DATABASE__POOL_SIZE", "database.pool_size", "pool_max_size"),
        ),
        ("MAILRAY_DEBUG", ("MAILRAY_DEBUG", "MAILRAY_<SECTION>__<KEY>")),
        ("MAILRAY_DATABASE__", ("MAILRAY_DATABASE__", "MAILRAY_<SECTION>__<KEY>")),
    ],
)
def test_an_unknown_env_variable_is_named(tmp_path: Path, name: str, must_contain: tuple[str, ...]) -> None:
    message = _error(tmp_path, environ={name: "1"})
    for part in must_contain:
        assert part in message


# --- literals, syntax, files --------------------------------------------------------------------


def test_a_bad_literal_in_the_file_lists_the_allowed_values(tmp_path: Path) -> None:
    assert _error(tmp_path, '[app]\nmode = "prod"\n') == (
        "settings: app.mode (MAILRAY_APP__MODE): invalid enum value 'prod'; expected one of 'dev', 'production'"
    )


def test_a_bad_literal_in_the_env_lists_the_allowed_values(tmp_path: Path) -> None:
    message = _error(tmp_path, environ={"MAILRAY_APP__LOG_LEVEL": "verbose"})
    assert message.startswith(
        "settings: app.log_level (MAILRAY_APP__LOG_LEVEL): invalid enum value 'verbose'"
    )
    for level in ("DEBUG", "INFO", "WARNING", "ERROR"):
        assert repr(level) in message.partition("expected one of")[2]


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    message = _error(tmp_path, "[database\npool_max_size = 3\n")
    assert message.startswith(f"settings: {path}: ")
    assert len(message) > len(f"settings: {path}: ")


def test_mailray_config_pointing_to_a_missing_file_stops(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"MAILRAY_CONFIG": str(missing)})
    assert str(info.value) == f"settings: MAILRAY_CONFIG={missing}: no such file"


def test_an_explicit_missing_path_stops(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(path=missing, environ={})
    assert str(info.value) == f"settings: {missing}: no such file"


def test_an_unreadable_config_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00garbage")
    for target in (tmp_path, tmp_path / "binary.toml"):  # a directory; not UTF-8
        with pytest.raises(ConfigError) as info:
            load_settings(environ={"MAILRAY_CONFIG": str(target)})
        assert str(info.value).startswith(f"settings: MAILRAY_CONFIG={target}: ")
        assert "\n" not in str(info.value)


# --- rules a type cannot say --------------------------------------------------------------------


def test_pool_min_size_must_be_at_least_one(tmp_path: Path) -> None:
    assert _error(tmp_path, "[database]\npool_min_size = 0\n") == (
        "settings: database.pool_min_size (MAILRAY_DATABASE__POOL_MIN_SIZE): expected at least 1, got 0"
    )


def test_pool_max_size_must_not_be_below_min_size(tmp_path: Path) -> None:
    environ = {"MAILRAY_DATABASE__POOL_MIN_SIZE": "5", "MAILRAY_DATABASE__POOL_MAX_SIZE": "4"}
    assert _error(tmp_path, environ=environ) == (
        "settings: database.pool_max_size (MAILRAY_DATABASE__POOL_MAX_SIZE): expected at least "
        "pool_min_size (5), got 4"
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[ray]\nworker_niceness = -1\n", "ray.worker_niceness (MAILRAY_RAY__WORKER_NICENESS): expected 0 to 19, got -1"),
        ("[ray]\nworker_niceness = 20\n", "ray.worker_niceness (MAILRAY_RAY__WORKER_NICENESS): expected 0 to 19, got 20"),
        ("[serve]\nhaproxy_threads = 0\n", "serve.haproxy_threads (MAILRAY_SERVE__HAPROXY_THREADS): expected 1 to 64, got 0"),
        ("[tracking]\nwriter_niceness = 25\n", "tracking.writer_niceness (MAILRAY_TRACKING__WRITER_NICENESS): expected 0 to 19, got 25"),
        ("[tracking]\nwriter_linger_ms = -5\n", "tracking.writer_linger_ms (MAILRAY_TRACKING__WRITER_LINGER_MS): expected 0 to 60000, got -5"),
        ("[tracking]\nwriter_batch = 0\n", "tracking.writer_batch (MAILRAY_TRACKING__WRITER_BATCH): expected at least 1, got 0"),
        ("[sending]\nsmtp_timeout_s = 0\n", "sending.smtp_timeout_s (MAILRAY_SENDING__SMTP_TIMEOUT_S): expected 0.1 to 3600, got 0.0"),
        ("[sending]\nloops_per_sender = 0\n", "sending.loops_per_sender (MAILRAY_SENDING__LOOPS_PER_SENDER): expected 1 to 64, got 0"),
    ],
)  # fmt: skip
def test_numbers_out_of_range_are_named_with_their_variable(tmp_path: Path, toml: str, message: str) -> None:
    assert _error(tmp_path, toml) == f"settings: {message}"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)), ("::1", ("::1", 53)),
     ("[::1]:5353", ("::1", 5353))],
)  # fmt: skip
def test_a_dns_nameserver_is_an_address_and_an_optional_port(
    tmp_path: Path, value: str, parsed: tuple[str, int]
) -> None:
    assert _load(tmp_path, environ={"MAILRAY_SENDING__DNS_NAMESERVER": value}).sending.dns_nameserver == value
    assert parse_nameserver(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "ns1.example.com",
        "ns1 example",
        "10.0.0.1:port",
        "10.0.0.1:0",
        "10.0.0.1:65536",
        "[::1",
        "[::1]x",
        "::1:53x",
    ],
)
def test_a_bad_dns_nameserver_is_named(tmp_path: Path, value: str) -> None:
    assert _error(tmp_path, environ={"MAILRAY_SENDING__DNS_NAMESERVER": value}) == (
        "settings: sending.dns_nameserver (MAILRAY_SENDING__DNS_NAMESERVER): expected an IP address, "
        f"IP:PORT or [IPv6]:PORT, got {value!r}"
    )


def test_the_ingress_tuning_reaches_ray_and_serve(tmp_path: Path) -> None:
    from cluster.bootstrap import serve_env

    default = serve_env(_load(tmp_path, ""))
    assert default["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"
    assert int(default["RAY_SERVE_HAPROXY_NBTHREAD"]) >= 1
    tuned = serve_env(_load(tmp_path, "[serve]\nhaproxy_threads = 3\ningress_request_metrics = true\n"))
    assert (tuned["RAY_SERVE_HAPROXY_NBTHREAD"], tuned["RAY_SERVE_HAPROXY_METRICS_ENABLED"]) == ("3", "1")
    assert "RAY_SERVE_HAPROXY_NBTHREAD" not in serve_env(
        _load(tmp_path, "[serve]\nhaproxy_ingress = false\n")
    )


def test_equal_pool_sizes_are_fine(tmp_path: Path) -> None:
    settings = _load(tmp_path, "[database]\npool_min_size = 4\npool_max_size = 4\n")
    assert (settings.database.pool_min_size, settings.database.pool_max_size) == (4, 4)


@pytest.mark.parametrize("key_id", ["x", "0", "-1", "1.5", "01", " 1", "1 ", "", "\u00b2", "\u0661"])
def test_key_ids_must_be_positive_integers(tmp_path: Path, key_id: str) -> None:
    quoted = msgspec.json.encode(key_id).decode()  # a TOML basic string
    text = f'[security]\nkeys = {{ {quoted} = "{KEY_B64}" }}\n'
    assert _error(tmp_path, text) == (
        f"settings: security.keys (MAILRAY_SECURITY__KEYS): expected positive integer key ids, got {key_id!r}"
    )


def test_integer_key_ids_are_accepted(tmp_path: Path) -> None:
    settings = _load(
        tmp_path, environ={"MAILRAY_SECURITY__KEYS": f'{{ "1" = "{KEY_B64}", "20" = "{KEY_B64}" }}'}
    )
    assert sorted(settings.security.keys) == ["1", "20"]


@pytest.mark.parametrize("prefix", ["MR", "my_app", "", "1mr", "mr-live", "a" * 17])
def test_api_key_prefix_must_be_one_parse_api_key_accepts(tmp_path: Path, prefix: str) -> None:
    message = _error(tmp_path, environ={"MAILRAY_SECURITY__API_KEY_PREFIX": prefix})
    assert message.startswith(
        "settings: security.api_key_prefix (MAILRAY_SECURITY__API_KEY_PREFIX): expected"
    )
    assert message.endswith(f"got {prefix!r}")


def test_a_valid_api_key_prefix_is_accepted(tmp_path: Path) -> None:
    assert _load(tmp_path, '[security]\napi_key_prefix = "acme2"\n').security.api_key_prefix == "acme2"


# --- the CLI-facing contract: one line ----------------------------------------------------------


def test_a_line_break_in_a_key_or_value_does_not_break_the_line(tmp_path: Path) -> None:
    assert _error(tmp_path, '[app]\n"data\\ndir" = "x"\n') == "settings: unknown key app.data\\ndir"
    message = _error(tmp_path, '[app]\nmode = "dev\\nproduction"\n')
    assert "'dev\\nproduction'" in message


def test_a_line_break_in_the_config_path_does_not_break_the_line(tmp_path: Path) -> None:
    odd = tmp_path / "odd\nname.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"MAILRAY_CONFIG": str(odd)})
    assert "\n" not in str(info.value)
    assert str(info.value).endswith("odd\\nname.toml: no such file")
