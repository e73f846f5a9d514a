"""Load the settings tree: `configs/settings.toml`, then `MAILRAY_<SECTION>__<KEY>` overrides.

Validation happens once, here. A bad value stops start-up with one line that names the key and
what was expected, e.g. `settings: database.pool_max_size (MAILRAY_DATABASE__POOL_MAX_SIZE):
expected int, got str`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from mail.errors import ConfigError
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


def _describe(error: msgspec.ValidationError) -> str:
    message = str(error)
    match = _PATH_IN_ERROR.search(message)
    if not match:
        return f"settings: {message}"
    dotted = match.group(1)
    what = message[: match.start()]
    what = what[0].lower() + what[1:] if what else what
    if what.startswith("object contains unknown field"):
        unknown = what.split("`")[1]
        dotted = f"{dotted}.{unknown}" if dotted else unknown
        return f"settings: unknown key {dotted}"
    env_name = ENV_PREFIX + "__".join(part.upper() for part in dotted.split(".")[:2])
    return f"settings: {dotted} ({env_name}): {what.replace('`', '')}"


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the settings file and the environment; raise ConfigError with one clear line."""
    environ = os.environ if environ is None else environ
    config_path = Path(path or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    data: dict[str, Any] = {}
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"settings: {config_path}: {error}") from None
    elif path is not None or CONFIG_ENV in environ:
        raise ConfigError(f"settings: {config_path}: no such file")
    merged = _merge(data, env_overrides(environ))
    try:
        settings = msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as error:
        raise ConfigError(_describe(error)) from None
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    """Rules a type cannot say."""
    if (
        settings.database.pool_min_size < 1
        or settings.database.pool_max_size < settings.database.pool_min_size
    ):
        raise ConfigError(
            "settings: database.pool_max_size (MAILRAY_DATABASE__POOL_MAX_SIZE): expected "
            f"pool_min_size >= 1 and pool_max_size >= pool_min_size, got {settings.database.pool_min_size}"
            f" and {settings.database.pool_max_size}"
        )
    for key_id in settings.security.keys:
        if not key_id.isdigit() or int(key_id) < 1:
            raise ConfigError(
                f"settings: security.keys (MAILRAY_SECURITY__KEYS): expected positive integer key ids, got {key_id!r}"
            )


def data_dir(settings: Settings) -> Path:
    """The data directory as an absolute path (relative paths are taken from the working directory)."""
    return Path(settings.app.data_dir).expanduser().resolve()
