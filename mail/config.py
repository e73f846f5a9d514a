"""Load the settings tree: `configs/settings.toml`, then `MAILRAY_<SECTION>__<KEY>` overrides.

Validation happens once, here. A bad value stops start-up with one line that names the key and
what was expected, e.g. `settings: database.pool_max_size (MAILRAY_DATABASE__POOL_MAX_SIZE):
expected int, got str`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from mail.errors import ConfigError
from mail.sending.verp import valid_return_path
from models.settings import Settings

ENV_PREFIX = "MAILRAY_"
CONFIG_ENV = "MAILRAY_CONFIG"
# The repository root: configs/ sits beside the packages (the install is editable).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "settings.toml"

_PATH_IN_ERROR = re.compile(r" - at `\$\.?([^`]*)`$")


def _section_fields() -> dict[str, dict[str, msgspec.inspect.Type]]:
    tree: dict[str, dict[str, msgspec.inspect.Type]] = {}
    root = msgspec.inspect.type_info(Settings)
    assert isinstance(root, msgspec.inspect.StructType)
    for section in root.fields:
        section_type = section.type
        assert isinstance(section_type, msgspec.inspect.StructType)
        tree[section.name] = {field.name: field.type for field in section_type.fields}
    return tree


def _is_text(field_type: msgspec.inspect.Type) -> bool:
    if isinstance(field_type, msgspec.inspect.StrType | msgspec.inspect.LiteralType):
        return True
    if isinstance(field_type, msgspec.inspect.UnionType):
        return all(_is_text(t) or isinstance(t, msgspec.inspect.NoneType) for t in field_type.types)
    return False


def _parse_env_value(raw: str, field_type: msgspec.inspect.Type | None) -> Any:
    """Text stays text for text fields; anything else is read as a TOML value (42, true, [..], {..})."""
    if field_type is None or _is_text(field_type):
        return raw
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw  # validation below reports the type mismatch with the key's name


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    fields = _section_fields()
    overrides: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        path = name[len(ENV_PREFIX) :].lower()
        section, sep, key = path.partition("__")
        if not sep or not key:
            raise ConfigError(
                f"settings: {name}: expected MAILRAY_<SECTION>__<KEY>, e.g. MAILRAY_DATABASE__URL"
            )
        if section not in fields:
            raise ConfigError(
                f"settings: {name}: unknown section {section!r}; expected one of {sorted(fields)}"
            )
        if key not in fields[section]:
            raise ConfigError(
                f"settings: {name}: unknown key {section}.{key}; expected one of {sorted(fields[section])}"
            )
        overrides.setdefault(section, {})[key] = _parse_env_value(raw, fields[section][key])
    return overrides


def _merge(base: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = {
        section: dict(values) if isinstance(values, dict) else values for section, values in base.items()
    }
    for section, values in overrides.items():
        current = merged.get(section)
        merged[section] = {**(current if isinstance(current, dict) else {}), **values}
    return merged


def _expected_values(dotted: str) -> str:
    """`; expected one of 'a', 'b'` for a Literal field, else ''."""
    section, _, key = dotted.partition(".")
    field_type = _section_fields().get(section, {}).get(key)
    if isinstance(field_type, msgspec.inspect.LiteralType):
        return "; expected one of " + ", ".join(repr(value) for value in field_type.values)
    return ""


def _describe(error: msgspec.ValidationError) -> str:
    message = str(error)
    match = _PATH_IN_ERROR.search(message)
    # msgspec gives no path for the root object (an unknown top-level key).
    dotted, what = (match.group(1), message[: match.start()]) if match else ("", message)
    what = what[:1].lower() + what[1:]
    if what.startswith("object contains unknown field"):
        unknown = what.split("`")[1]
        return f"settings: unknown key {f'{dotted}.{unknown}' if dotted else unknown}"
    # A dict entry (`security.keys[...]`): name the setting that holds it.
    dotted = dotted.replace("[...]", "")
    what = what.replace("`", "")
    if what.startswith("invalid enum value"):
        what += _expected_values(dotted)
    section, _, key = dotted.partition(".")
    if not key:  # a whole section, e.g. `database = 5`: there is no environment variable for it
        return f"settings: {dotted or 'the settings file'}: {what}"
    env_name = f"{ENV_PREFIX}{section.upper()}__{key.split('.')[0].upper()}"
    return f"settings: {dotted} ({env_name}): {what}"


def _one_line(message: str) -> str:
    """The CLI prints a ConfigError as one line: escape any line break a value or key brought in."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the settings file and the environment; raise ConfigError with one clear line."""
    try:
        return _load(path, os.environ if environ is None else environ)
    except ConfigError as error:
        raise ConfigError(_one_line(error.message)) from None


def _load(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Settings:
    from_env = not path and bool(environ.get(CONFIG_ENV))
    config_path = Path(path or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    where = f"{CONFIG_ENV}={config_path}" if from_env else str(config_path)
    data: dict[str, Any] = {}
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"settings: {where}: {error}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"settings: {where}: cannot read: {error}") from None
    elif path is not None or CONFIG_ENV in environ:
        raise ConfigError(f"settings: {where}: no such file")
    merged = _merge(data, env_overrides(environ))
    try:
        # strict: a value of the wrong type is an error, not something to coerce ("10" is no int).
        settings = msgspec.convert(merged, Settings, strict=True)
    except msgspec.ValidationError as error:
        raise ConfigError(_describe(error)) from None
    _check(settings)
    return settings


_KEY_ID = re.compile(r"[1-9][0-9]*")
# What mail.auth.parse_api_key accepts before the first underscore.
_API_KEY_PREFIX = re.compile(r"[a-z][a-z0-9]{0,15}")


def _check(settings: Settings) -> None:
    """Rules a type cannot say."""
    database = settings.database
    _within("database.pool_min_size", database.pool_min_size, 1)
    if database.pool_max_size < database.pool_min_size:
        raise ConfigError(
            "settings: database.pool_max_size (MAILRAY_DATABASE__POOL_MAX_SIZE): expected at least "
            f"pool_min_size ({database.pool_min_size}), got {database.pool_max_size}"
        )
    _within("ray.worker_niceness", settings.ray.worker_niceness, 0, 19)
    _within("sending.soft_bounce_limit", settings.sending.soft_bounce_limit, 1)
    if settings.serve.haproxy_threads is not None:
        _within("serve.haproxy_threads", settings.serve.haproxy_threads, 1, 64)
    for key_id in settings.security.keys:
        # ASCII digits without leading zeros: "²" is no id, and "01" would be a second key 1.
        if not _KEY_ID.fullmatch(key_id):
            raise ConfigError(
                f"settings: security.keys (MAILRAY_SECURITY__KEYS): expected positive integer key ids, got {key_id!r}"
            )
    if not _API_KEY_PREFIX.fullmatch(settings.security.api_key_prefix):
        raise ConfigError(
            "settings: security.api_key_prefix (MAILRAY_SECURITY__API_KEY_PREFIX): expected 1 to 16 "
            f"lowercase letters and digits, starting with a letter, got {settings.security.api_key_prefix!r}"
        )
    _check_tracking(settings)
    _check_sending(settings)
    _check_campaigns(settings)
    _check_dkim(settings)
    _check_webhooks(settings)
    _check_ai(settings)


def parse_nameserver(value: str) -> tuple[str, int] | None:
    """(address, port) of a DNS server written `IP`, `IPv4:PORT` or `[IPv6]:PORT` (port 53 unless
    given); None for anything else. Resolvers take addresses: a server's name would need DNS."""
    host, port = value, "53"
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] or port
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return None
    return host, int(port)


def _check_sending(settings: Settings) -> None:
    sending = settings.sending
    _within("sending.global_rate_per_s", sending.global_rate_per_s, 0.001)
    _within("sending.per_domain_rate_per_s", sending.per_domain_rate_per_s, 0.001)
    _within("sending.gmail_daily_cap", sending.gmail_daily_cap, 1, 1_000_000)
    _within("sending.claim_batch", sending.claim_batch, 1, 10_000)
    _within("sending.loops_per_sender", sending.loops_per_sender, 1, 64)
    _within("sending.senders", sending.senders, 0, 1000)
    _within("sending.smtp_port", sending.smtp_port, 1, 65535)
    _within("sending.smtp_connections", sending.smtp_connections, 1, 1000)
    _within("sending.smtp_timeout_s", sending.smtp_timeout_s, 0.1, 3600)
    _within("sending.lease_s", sending.lease_s, 1)
    _within("sending.max_attempts", sending.max_attempts, 1, 100)
    _within("sending.retry_base_s", sending.retry_base_s, 0)
    _within("sending.max_bounce_rate", sending.max_bounce_rate, 0, 1)
    _within("sending.max_complaint_rate", sending.max_complaint_rate, 0, 1)
    _within("sending.guardrail_min_sample", sending.guardrail_min_sample, 1)
    if sending.verp_return_path and not valid_return_path(sending.verp_return_path):
        raise ConfigError(
            "settings: sending.verp_return_path (MAILRAY_SENDING__VERP_RETURN_PATH): expected an address "
            f"local@domain without '+' or '=' in the local part, got {sending.verp_return_path!r}"
        )
    nameserver = sending.dns_nameserver
    if nameserver and parse_nameserver(nameserver) is None:
        raise ConfigError(
            "settings: sending.dns_nameserver (MAILRAY_SENDING__DNS_NAMESERVER): expected an IP address, "
            f"IP:PORT or [IPv6]:PORT, got {nameserver!r}"
        )


def _check_tracking(settings: Settings) -> None:
    base = settings.tracking.base_url
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            "settings: tracking.base_url (MAILRAY_TRACKING__BASE_URL): expected an http(s) URL such as "
            f"https://t.example.com, got {base!r}"
        )
    _within("tracking.writer_batch", settings.tracking.writer_batch, 1)
    _within("tracking.writer_niceness", settings.tracking.writer_niceness, 0, 19)
    _within("tracking.writer_linger_ms", settings.tracking.writer_linger_ms, 0, 60_000)


def _check_ai(settings: Settings) -> None:
    ai = settings.ai
    _within("ai.worker_batch", ai.worker_batch, 1, 1000)
    _within("ai.poll_interval_s", ai.poll_interval_s, 0.1)
    _within("ai.reprocess_range", ai.reprocess_range, 1, 100_000)
    _within("ai.generation_timeout_s", ai.generation_timeout_s, 0.1)
    url = ai.generation_url
    if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
        raise ConfigError(
            "settings: ai.generation_url (MAILRAY_AI__GENERATION_URL): expected an http(s) URL of an "
            f"OpenAI-compatible API such as http://127.0.0.1:8080/v1, got {url!r}"
        )


def _check_webhooks(settings: Settings) -> None:
    webhooks = settings.webhooks
    try:
        re.compile(webhooks.sns_cert_url_pattern)
    except re.error as error:
        raise ConfigError(
            "settings: webhooks.sns_cert_url_pattern (MAILRAY_WEBHOOKS__SNS_CERT_URL_PATTERN): "
            f"expected a regular expression, got {webhooks.sns_cert_url_pattern!r} ({error})"
        ) from None
    _within("webhooks.sendgrid_max_age_s", webhooks.sendgrid_max_age_s, 1)
    if webhooks.sendgrid_public_key:
        from mail.bounces.webhook_auth import sendgrid_public_key

        sendgrid_public_key(webhooks.sendgrid_public_key)


def _check_campaigns(settings: Settings) -> None:
    threshold = settings.campaigns.ab_threshold
    if not 0.5 < threshold < 1:
        # At 0.5 or below two variants could both "win"; at 1 none ever does.
        raise ConfigError(
            "settings: campaigns.ab_threshold (MAILRAY_CAMPAIGNS__AB_THRESHOLD): expected more than 0.5 "
            f"and less than 1 (e.g. 0.95), got {threshold}"
        )
    _within("campaigns.ab_min_sample", settings.campaigns.ab_min_sample, 1)


_DKIM_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DKIM_DOMAIN = re.compile(rf"{_DKIM_LABEL}(?:\.{_DKIM_LABEL})+")
_DKIM_SELECTOR = re.compile(rf"{_DKIM_LABEL}(?:\.{_DKIM_LABEL})*")


def _check_dkim(settings: Settings) -> None:
    where = "settings: dkim.keys (MAILRAY_DKIM__KEYS)"
    seen: set[str] = set()
    for domain, key in settings.dkim.keys.items():
        if len(domain) > 253 or not _DKIM_DOMAIN.fullmatch(domain):
            raise ConfigError(f"{where}: expected ASCII domain names such as example.com, got {domain!r}")
        if domain.lower() in seen:
            raise ConfigError(f"{where}: {domain.lower()!r} is listed twice")
        seen.add(domain.lower())
        if len(key.selector) > 63 or not _DKIM_SELECTOR.fullmatch(key.selector):
            raise ConfigError(
                f"{where}: {domain}: expected a selector of DNS labels such as mr2026, got {key.selector!r}"
            )


def _within(key: str, value: float, low: float, high: float | None = None) -> None:
    """`key` (section.name) must lie in [low, high]; the error names the setting and its variable."""
    if low <= value and (high is None or value <= high):
        return
    variable = "MAILRAY_" + key.upper().replace(".", "__")
    expected = f"at least {low}" if high is None else f"{low} to {high}"
    raise ConfigError(f"settings: {key} ({variable}): expected {expected}, got {value}")


def data_dir(settings: Settings) -> Path:
    """The data directory as an absolute path (relative paths are taken from the working directory)."""
    return Path(settings.app.data_dir).expanduser().resolve()
