"""mail.auth against a real Postgres: workspaces, users, API keys and authentication."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from mail import auth
from mail.errors import Conflict, NotFound, Unauthorized, ValidationError
from mail.store.pool import Pool
from models.tenancy import ApiKeyInfo, NewApiKey, Principal, Role, User, Workspace

pytestmark = [pytest.mark.integration, pytest.mark.storage]


class Team(msgspec.Struct, kw_only=True):
    workspace: Workspace
    owner: User
    admin: User
    member: User
    other_member: User


def _unique(label: str = "team") -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


async def _team(db_pool: Pool) -> Team:
    name = _unique()
    async with db_pool.connection() as conn:
        workspace, owner = await auth.create_workspace(conn, name, owner_email=f"owner@{name}.test")
        admin = await auth.create_user(conn, workspace.id, f"admin@{name}.test", role="admin")
        member = await auth.create_user(conn, workspace.id, f"member@{name}.test")
        other_member = await auth.create_user(conn, workspace.id, f"other@{name}.test", role="member")
    return Team(workspace=workspace, owner=owner, admin=admin, member=member, other_member=other_member)


async def _key(db_pool: Pool, user: User, **options: Any) -> NewApiKey:
    async with db_pool.connection() as conn:
        return await auth.create_api_key(conn, user.workspace_id, user.id, **options)


async def _authenticate(db_pool: Pool, presented: str | None) -> Principal:
    async with db_pool.connection() as conn:
        return await auth.authenticate(conn, presented)


async def _stored_key(db_pool: Pool, key_id: uuid.UUID) -> ApiKeyInfo:
    async with db_pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT id, workspace_id, user_id, name, lookup_id, created_at, last_used_at, expires_at, "
            "revoked_at FROM api_keys WHERE id = %s",
            (key_id,),
        )
        row = await cursor.fetchone()
    assert row is not None
    return ApiKeyInfo(**dict(zip(ApiKeyInfo.__struct_fields__, row, strict=True)))


def _principal(user: User) -> Principal:
    return Principal(workspace_id=user.workspace_id, user_id=user.id, role=user.role)


# --- workspaces and users -----------------------------------------------------------------------


async def test_create_workspace_makes_the_workspace_and_its_owner(db_pool: Pool) -> None:
    suffix = uuid.uuid4().hex[:8]
    async with db_pool.connection() as conn:
        workspace, owner = await auth.create_workspace(
            conn, f"  Acme Sales {suffix} ", owner_email=f" Boss@Acme-{suffix}.test ", owner_name="Boss"
        )
        assert workspace.name == f"Acme Sales {suffix}"
        assert workspace.slug == f"acme-sales-{suffix}"
        assert owner.workspace_id == workspace.id
        assert (owner.role, owner.email, owner.display_name, owner.is_active) == (
            "owner",
            f"Boss@Acme-{suffix}.test",
            "Boss",
            True,
        )
        assert await auth.find_workspace(conn, workspace.slug) == workspace
        assert await auth.find_workspace(conn, str(workspace.id)) == workspace
        assert await auth.find_user(conn, workspace.id) == owner
        assert await auth.find_user(conn, workspace.id, f"boss@acme-{suffix}.TEST") == owner


async def test_an_explicit_slug_is_used(db_pool: Pool) -> None:
    slug = _unique("explicit")
    async with db_pool.connection() as conn:
        workspace, _ = await auth.create_workspace(conn, "Whatever Name", owner_email="o@x.test", slug=slug)
    assert workspace.slug == slug


async def test_duplicate_slug_is_a_conflict_and_leaves_nothing_behind(db_pool: Pool) -> None:
    slug = _unique("dup")
    async with db_pool.connection() as conn:
        first, _ = await auth.create_workspace(conn, "First", owner_email="first@x.test", slug=slug)
    async with db_pool.connection() as conn:
        with pytest.raises(Conflict, match=slug):
            await auth.create_workspace(conn, "Second", owner_email="second@x.test", slug=slug)
    async with db_pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT w.name, count(u.id) FROM workspaces w JOIN users u ON u.workspace_id = w.id "
            "WHERE w.slug = %s GROUP BY w.name",
            (slug,),
        )
        assert await cursor.fetchall() == [("First", 1)]
        assert (await auth.find_workspace(conn, slug)).id == first.id


@pytest.mark.parametrize("slug", ["Bad Slug", "UPPER", "-leading", "a" * 64, "abc\n", "a_b", "ünï"])
async def test_a_bad_slug_is_a_validation_error(db_pool: Pool, slug: str) -> None:
    async with db_pool.connection() as conn:
        with pytest.raises(ValidationError) as info:
            await auth.create_workspace(conn, "Valid Name", owner_email="o@x.test", slug=slug)
    assert info.value.field == "slug"


@pytest.mark.parametrize(("name", "field"), [("", "name"), ("   ", "name"), ("x" * 201, "name")])
async def test_a_bad_workspace_name_is_a_validation_error(db_pool: Pool, name: str, field: str) -> None:
    async with db_pool.connection() as conn:
        with pytest.raises(ValidationError) as info:
            await auth.create_workspace(conn, name, owner_email="o@x.test", slug=_unique())
    assert info.value.field == field


@pytest.mark.parametrize("email", ["nobody", "@example.com", "@a@b.test", "", "x@" + "y" * 320])
async def test_a_bad_owner_email_creates_no_workspace(db_pool: Pool, email: str) -> None:
    slug = _unique("bad-owner")
    async with db_pool.connection() as conn:
        with pytest.raises(ValidationError) as info:
            await auth.create_workspace(conn, "Name", owner_email=email, slug=slug)
    assert info.value.field == "email"
    async with db_pool.connection() as conn:
        with pytest.raises(NotFound):
            await auth.find_workspace(conn, slug)


async def test_duplicate_user_email_is_a_conflict_regardless_of_case(db_pool: Pool) -> None:
    team = await _team(db_pool)
    other = await _team(db_pool)
    async with db_pool.connection() as conn:
        await auth.create_user(conn, team.workspace.id, "Ana.Lopez@Example.com")
        with pytest.raises(Conflict, match="exists already"):
            await auth.create_user(conn, team.workspace.id, "ana.lopez@example.COM")
        with pytest.raises(Conflict):
            await auth.create_user(conn, team.workspace.id, team.owner.email.upper())
        # The same address in another workspace is another user.
        elsewhere = await auth.create_user(conn, other.workspace.id, "ana.lopez@example.com")
    assert elsewhere.workspace_id == other.workspace.id


async def test_create_user_in_an_unknown_workspace_is_not_found(db_pool: Pool) -> None:
    async with db_pool.connection() as conn:
        with pytest.raises(NotFound):
            await auth.create_user(conn, uuid.uuid4(), "ghost@x.test")


async def test_create_user_with_an_unknown_role_is_a_validation_error(db_pool: Pool) -> None:
    team = await _team(db_pool)
    role: Any = "superuser"
    async with db_pool.connection() as conn:
        with pytest.raises(ValidationError) as info:
            await auth.create_user(conn, team.workspace.id, "root@x.test", role=role)
    assert info.value.field == "role"


# --- API keys and authentication ----------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "admin", "member"])
async def test_a_created_key_authenticates_as_its_user(db_pool: Pool, who: str) -> None:
    team = await _team(db_pool)
    user: User = getattr(team, who)
    created = await _key(db_pool, user, name="laptop")
    assert created.info.name == "laptop"
    assert created.key.startswith(f"mr_{created.info.lookup_id}_")
    assert created.info.last_used_at is None

    principal = await _authenticate(db_pool, created.key)
    role: Role = user.role
    assert principal == Principal(
        workspace_id=team.workspace.id, user_id=user.id, role=role, api_key_id=created.info.id
    )
    assert principal.is_admin is (who != "member")


async def test_a_key_with_a_custom_prefix_authenticates(db_pool: Pool) -> None:
    team = await _team(db_pool)
    created = await _key(db_pool, team.member, prefix="acme")
    assert created.key.startswith("acme_")
    assert (await _authenticate(db_pool, created.key)).api_key_id == created.info.id


async def test_create_api_key_for_a_user_of_another_workspace_is_not_found(db_pool: Pool) -> None:
    team, other = await _team(db_pool), await _team(db_pool)
    async with db_pool.connection() as conn:
        with pytest.raises(NotFound):
            await auth.create_api_key(conn, team.workspace.id, other.member.id)


async def test_the_wrong_secret_with_a_real_lookup_id_is_invalid(db_pool: Pool) -> None:
    team = await _team(db_pool)
    created = await _key(db_pool, team.member)
    forged, forged_lookup_id, _ = auth.generate_api_key()
    wrong = forged.replace(forged_lookup_id, created.info.lookup_id)
    assert wrong != created.key
    with pytest.raises(Unauthorized) as info:
        await _authenticate(db_pool, wrong)
    assert str(info.value) == "invalid API key"


async def test_an_unknown_lookup_id_is_invalid(db_pool: Pool) -> None:
    unknown, _, _ = auth.generate_api_key()
    with pytest.raises(Unauthorized) as info:
        await _authenticate(db_pool, unknown)
    assert str(info.value) == "invalid API key"


async def test_a_revoked_key_is_refused(db_pool: Pool) -> None:
    team = await _team(db_pool)
    created = await _key(db_pool, team.member)
    await _authenticate(db_pool, created.key)
    async with db_pool.connection() as conn:
        await auth.revoke_api_key(conn, _principal(team.member), created.info.id)
    with pytest.raises(Unauthorized, match="revoked"):
        await _authenticate(db_pool, created.key)


async def test_an_expired_key_is_refused_and_a_future_expiry_is_fine(db_pool: Pool) -> None:
    team = await _team(db_pool)
    expired = await _key(db_pool, team.member, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    valid = await _key(db_pool, team.member, expires_at=datetime.now(UTC) + timedelta(days=30))
    with pytest.raises(Unauthorized, match="expired"):
        await _authenticate(db_pool, expired.key)
    assert (await _authenticate(db_pool, valid.key)).api_key_id == valid.info.id


async def test_a_deactivated_users_key_is_refused(db_pool: Pool) -> None:
    team = await _team(db_pool)
    created = await _key(db_pool, team.member)
    async with db_pool.connection() as conn:
        await conn.execute("UPDATE users SET is_active = false WHERE id = %s", (team.member.id,))
    with pytest.raises(Unauthorized, match="deactivated"):
        await _authenticate(db_pool, created.key)


@pytest.mark.parametrize(("presented", "reason"), [(None, "missing"), ("", "missing"), ("  ", "malformed")])
async def test_a_missing_or_blank_key_is_refused(db_pool: Pool, presented: str | None, reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        await _authenticate(db_pool, presented)


async def test_authenticate_records_last_used_at(db_pool: Pool) -> None:
    team = await _team(db_pool)
    created = await _key(db_pool, team.member)
    assert (await _stored_key(db_pool, created.info.id)).last_used_at is None
    await _authenticate(db_pool, created.key)
    first_use = (await _stored_key(db_pool, created.info.id)).last_used_at
    assert first_use is not None
    assert first_use >= created.info.created_at


async def test_authenticate_works_inside_the_callers_transaction(db_pool: Pool) -> None:
    team = await _team(db_pool)
    created = await _key(db_pool, team.member)
    async with db_pool.connection() as conn, conn.transaction():
        principal = await auth.authenticate(conn, created.key)
    assert principal.api_key_id == created.info.id
    assert (await _stored_key(db_pool, created.info.id)).last_used_at is not None


async def test_authenticate_does_not_commit_the_callers_pending_work(db_pool: Pool) -> None:
    team = await _team(db_pool)
    created = await _key(db_pool, team.member)
    async with db_pool.connection() as conn:
        await conn.execute("UPDATE workspaces SET name = 'changed' WHERE id = %s", (team.workspace.id,))
        await auth.authenticate(conn, created.key)
        await conn.rollback()
        cursor = await conn.execute("SELECT name FROM workspaces WHERE id = %s", (team.workspace.id,))
        assert await cursor.fetchone() == (team.workspace.name,)


# --- listing and revoking -----------------------------------------------------------------------


async def test_list_api_keys_members_see_their_own_admins_the_workspaces(db_pool: Pool) -> None:
    team, other = await _team(db_pool), await _team(db_pool)
    keys = {
        who: await _key(db_pool, getattr(team, who)) for who in ("owner", "admin", "member", "other_member")
    }
    second_member_key = await _key(db_pool, team.member, name="second")
    foreign = await _key(db_pool, other.admin)
    workspace_ids = {key.info.id for key in keys.values()} | {second_member_key.info.id}

    async def listed(user: User) -> list[uuid.UUID]:
        async with db_pool.connection() as conn:
            return [key.id for key in await auth.list_api_keys(conn, _principal(user))]

    assert await listed(team.member) == [keys["member"].info.id, second_member_key.info.id]  # oldest first
    assert set(await listed(team.other_member)) == {keys["other_member"].info.id}
    assert set(await listed(team.admin)) == workspace_ids
    assert set(await listed(team.owner)) == workspace_ids
    assert set(await listed(other.admin)) == {foreign.info.id}


async def test_listed_keys_never_include_the_secret(db_pool: Pool) -> None:
    team = await _team(db_pool)
    created = await _key(db_pool, team.member)
    async with db_pool.connection() as conn:
        listed = await auth.list_api_keys(conn, _principal(team.member))
    secret = created.key.removeprefix(f"mr_{created.info.lookup_id}_")
    assert len(secret) == 43
    assert secret not in msgspec.json.encode(listed).decode()


async def test_revoking_another_workspaces_key_is_not_found_and_the_key_still_works(db_pool: Pool) -> None:
    team, other = await _team(db_pool), await _team(db_pool)
    foreign = await _key(db_pool, other.member)
    async with db_pool.connection() as conn:
        with pytest.raises(NotFound):
            await auth.revoke_api_key(conn, _principal(team.owner), foreign.info.id)
    assert (await _authenticate(db_pool, foreign.key)).api_key_id == foreign.info.id
    assert (await _stored_key(db_pool, foreign.info.id)).revoked_at is None


async def test_a_member_cannot_revoke_a_colleagues_key_but_an_admin_can(db_pool: Pool) -> None:
    team = await _team(db_pool)
    colleague = await _key(db_pool, team.other_member)
    async with db_pool.connection() as conn:
        with pytest.raises(NotFound):
            await auth.revoke_api_key(conn, _principal(team.member), colleague.info.id)
    assert (await _authenticate(db_pool, colleague.key)).user_id == team.other_member.id
    async with db_pool.connection() as conn:
        revoked = await auth.revoke_api_key(conn, _principal(team.admin), colleague.info.id)
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthorized, match="revoked"):
        await _authenticate(db_pool, colleague.key)


async def test_revoke_is_idempotent(db_pool: Pool) -> None:
    team = await _team(db_pool)
    created = await _key(db_pool, team.member)
    async with db_pool.connection() as conn:
        first = await auth.revoke_api_key(conn, _principal(team.member), created.info.id)
    async with db_pool.connection() as conn:
        second = await auth.revoke_api_key(conn, _principal(team.member), created.info.id)
    assert first.revoked_at is not None
    assert second == first


async def test_revoking_an_unknown_key_is_not_found(db_pool: Pool) -> None:
    team = await _team(db_pool)
    async with db_pool.connection() as conn:
        with pytest.raises(NotFound):
            await auth.revoke_api_key(conn, _principal(team.owner), uuid.uuid4())
