"""Workspaces, users and API keys, and turning a presented key into a Principal.

An API key reads `<prefix>_<lookup id>_<secret>`: the lookup id finds the row by index, the
secret is checked against its SHA-256 in constant time. A key carries 256 bits of randomness,
so a fast hash is enough (a slow password hash protects low-entropy secrets, not these).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from mail.errors import Conflict, NotFound, Unauthorized, ValidationError
from models.tenancy import ApiKeyInfo, NewApiKey, Principal, Role, User, Workspace

# Used with fullmatch: `$` would let a trailing newline through, which the database's CHECK refuses.
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_PREFIX = re.compile(r"[a-z][a-z0-9]{0,15}")
_KEY = re.compile(r"([a-z][a-z0-9]{0,15})_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_ROLES: tuple[Role, ...] = ("owner", "admin", "member")
# last_used_at is a hint for people, not an audit trail: write it at most once a minute per key.
_LAST_USED_GRANULARITY = timedelta(minutes=1)

Conn = psycopg.AsyncConnection[Any]


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63]
    return slug or "workspace"


def _secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def generate_api_key(prefix: str = "mr") -> tuple[str, str, bytes]:
    """Return (the key to show once, its lookup id, the SHA-256 of its secret)."""
    if not _PREFIX.fullmatch(prefix):
        # parse_api_key would refuse every key made with it.
        raise ValidationError(
            f"API key prefix must be 1 to 16 lowercase letters and digits, starting with a letter; got {prefix!r}",
            field="prefix",
        )
    lookup_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{prefix}_{lookup_id}_{secret}", lookup_id, _secret_digest(secret)


def parse_api_key(presented: str) -> tuple[str, str]:
    """(lookup id, secret) of a well-formed key; Unauthorized otherwise."""
    match = _KEY.fullmatch(presented.strip())
    if not match:
        raise Unauthorized("malformed API key: expected <prefix>_<16 hex>_<43 url-safe characters>")
    return match.group(2), match.group(3)


async def create_workspace(
    conn: Conn, name: str, *, owner_email: str, slug: str | None = None, owner_name: str | None = None
) -> tuple[Workspace, User]:
    """Create a workspace and its owner in one transaction."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValidationError("workspace name must be 1 to 200 characters", field="name")
    slug = slug or slugify(name)
    if not _SLUG.fullmatch(slug):
        raise ValidationError(
            "workspace slug must be lowercase letters, digits and hyphens (at most 63)", field="slug"
        )
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        try:
            await cursor.execute(
                "INSERT INTO workspaces (name, slug) VALUES (%s, %s) RETURNING id, name, slug, created_at",
                (name, slug),
            )
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"a workspace with slug {slug!r} exists already") from None
        row = await cursor.fetchone()
        assert row is not None
        workspace = Workspace(**row)
        owner = await _insert_user(conn, workspace.id, owner_email, "owner", owner_name)
    return workspace, owner


async def _insert_user(
    conn: Conn, workspace_id: UUID, email: str, role: Role, display_name: str | None
) -> User:
    email = email.strip()
    # The same rule as the table's CHECK: an "@" after the first character ("@a@b" has none there).
    if email.find("@") < 1 or len(email) > 320:
        raise ValidationError(f"not an email address: {email!r}", field="email")
    if role not in _ROLES:
        raise ValidationError(f"role must be one of {', '.join(_ROLES)}; got {role!r}", field="role")
    async with conn.cursor(row_factory=dict_row) as cursor:
        try:
            await cursor.execute(
                "INSERT INTO users (workspace_id, email, role, display_name) VALUES (%s, %s, %s, %s) "
                "RETURNING id, workspace_id, email, display_name, role, is_active",
                (workspace_id, email, role, display_name),
            )
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"user {email!r} exists already in this workspace") from None
        except psycopg.errors.ForeignKeyViolation:
            raise NotFound(f"no workspace {workspace_id}") from None
        row = await cursor.fetchone()
    assert row is not None
    return User(**row)


async def create_user(
    conn: Conn, workspace_id: UUID, email: str, *, role: Role = "member", display_name: str | None = None
) -> User:
    async with conn.transaction():
        return await _insert_user(conn, workspace_id, email, role, display_name)


async def find_workspace(conn: Conn, slug_or_id: str) -> Workspace:
    async with conn.cursor(row_factory=dict_row) as cursor:
        try:
            workspace_id = UUID(slug_or_id)
        except ValueError:
            await cursor.execute(
                "SELECT id, name, slug, created_at FROM workspaces WHERE slug = %s", (slug_or_id,)
            )
        else:
            await cursor.execute(
                "SELECT id, name, slug, created_at FROM workspaces WHERE id = %s", (workspace_id,)
            )
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no workspace {slug_or_id!r}")
    return Workspace(**row)


async def find_user(conn: Conn, workspace_id: UUID, email: str | None = None) -> User:
    """The user with that email, or the workspace's owner when email is None."""
    query = (
        "SELECT id, workspace_id, email, display_name, role, is_active FROM users "
        "WHERE workspace_id = %s AND "
        + ("lower(email) = lower(%s)" if email else "role = 'owner' ORDER BY created_at LIMIT 1")
    )
    params: tuple[Any, ...] = (workspace_id, email) if email else (workspace_id,)
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query.encode(), params)
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(
            f"no user {email!r} in workspace {workspace_id}" if email else "workspace has no owner"
        )
    return User(**row)


_KEY_COLUMNS = "id, workspace_id, user_id, name, lookup_id, created_at, last_used_at, expires_at, revoked_at"


async def create_api_key(
    conn: Conn,
    workspace_id: UUID,
    user_id: UUID,
    *,
    name: str = "",
    prefix: str = "mr",
    expires_at: datetime | None = None,
) -> NewApiKey:
    if len(name) > 200:
        raise ValidationError("API key name must be at most 200 characters", field="name")
    key, lookup_id, digest = generate_api_key(prefix)
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "INSERT INTO api_keys (workspace_id, user_id, name, lookup_id, secret_sha256, expires_at) "
            "SELECT %s, id, %s, %s, %s, %s FROM users WHERE id = %s AND workspace_id = %s "
            f"RETURNING {_KEY_COLUMNS}",
            (workspace_id, name, lookup_id, digest, expires_at, user_id, workspace_id),
        )
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no user {user_id} in workspace {workspace_id}")
    return NewApiKey(info=ApiKeyInfo(**row), key=key)


async def list_api_keys(conn: Conn, principal: Principal) -> list[ApiKeyInfo]:
    """Admins see the workspace's keys; members their own."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE workspace_id = %s AND (%s OR user_id = %s) "
            "ORDER BY created_at",
            (principal.workspace_id, principal.is_admin, principal.user_id),
        )
        return [ApiKeyInfo(**row) for row in await cursor.fetchall()]


async def revoke_api_key(conn: Conn, principal: Principal, key_id: UUID) -> ApiKeyInfo:
    """Revoke a key of the caller's (any key of the workspace for admins). Idempotent."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) "
            "WHERE id = %s AND workspace_id = %s AND (%s OR user_id = %s) "
            f"RETURNING {_KEY_COLUMNS}",
            (key_id, principal.workspace_id, principal.is_admin, principal.user_id),
        )
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no API key {key_id}")
    return ApiKeyInfo(**row)


async def authenticate(conn: Conn, presented: str | None) -> Principal:
    """Resolve an API key to the caller; Unauthorized with the reason otherwise.

    `last_used_at` is written in the caller's transaction: it is kept when that commits (a pool
    connection commits on return), and never commits anything of the caller's itself.
    """
    if not presented:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
    lookup_id, secret = parse_api_key(presented)
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT k.id, k.workspace_id, k.user_id, k.secret_sha256, k.expires_at, k.revoked_at, "
            "k.last_used_at, u.role, u.is_active "
            "FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.lookup_id = %s",
            (lookup_id,),
        )
        row = await cursor.fetchone()
    # Compare even when the row is missing, so timing does not reveal which lookup ids exist.
    expected = row["secret_sha256"] if row else b"\0" * 32
    if not hmac.compare_digest(bytes(expected), _secret_digest(secret)) or row is None:
        raise Unauthorized("invalid API key")
    now = datetime.now(UTC)
    if row["revoked_at"] is not None:
        raise Unauthorized("API key revoked")
    if row["expires_at"] is not None and row["expires_at"] <= now:
        raise Unauthorized("API key expired")
    if not row["is_active"]:
        raise Unauthorized("the key's user is deactivated")
    if row["last_used_at"] is None or now - row["last_used_at"] > _LAST_USED_GRANULARITY:
        # In the caller's transaction (a savepoint inside one): commit() here would commit the
        # caller's pending work, and raise inside a `conn.transaction()` block.
        async with conn.transaction():
            await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", (row["id"],))
    return Principal(
        workspace_id=row["workspace_id"], user_id=row["user_id"], role=row["role"], api_key_id=row["id"]
    )
