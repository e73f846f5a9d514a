"""mail.access against a real Postgres: who may read an email or send from an account, and that
another workspace's resources do not exist as far as the caller can tell."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest

from mail import auth
from mail.access import OwnedResource, require_read_email, require_send_from_account
from mail.errors import Forbidden, NotFound
from mail.store.pool import Pool
from models.tenancy import Principal, User

pytestmark = [pytest.mark.integration, pytest.mark.storage]


class World(msgspec.Struct, kw_only=True):
    """Workspace A: owner, admin, member (owns account m), other member; workspace B: its owner
    and a member (owns account b). Emails in each account, and a deleted one in account m."""

    users: dict[str, User]
    accounts: dict[str, uuid.UUID]
    emails: dict[str, int]

    def principal(self, who: str) -> Principal:
        user = self.users[who]
        return Principal(workspace_id=user.workspace_id, user_id=user.id, role=user.role)


@pytest.fixture(scope="module")
async def world(db_pool: Pool) -> AsyncIterator[World]:
    tag = uuid.uuid4().hex[:10]
    users: dict[str, User] = {}
    accounts: dict[str, uuid.UUID] = {}
    emails: dict[str, int] = {}
    async with db_pool.connection() as conn:
        a, users["a_owner"] = await auth.create_workspace(conn, f"A {tag}", owner_email=f"owner@a-{tag}.test")
        b, users["b_owner"] = await auth.create_workspace(conn, f"B {tag}", owner_email=f"owner@b-{tag}.test")
        users["a_admin"] = await auth.create_user(conn, a.id, f"admin@a-{tag}.test", role="admin")
        users["a_member"] = await auth.create_user(conn, a.id, f"member@a-{tag}.test")
        users["a_other"] = await auth.create_user(conn, a.id, f"other@a-{tag}.test")
        users["b_member"] = await auth.create_user(conn, b.id, f"member@b-{tag}.test")
        for name, owner in (("m", "a_member"), ("o", "a_owner"), ("b", "b_member")):
            user = users[owner]
            cursor = await conn.execute(
                "INSERT INTO email_accounts (workspace_id, user_id, email, provider) "
                "VALUES (%s, %s, %s, 'gmail') RETURNING id",
                (user.workspace_id, user.id, f"{name}-{tag}@gmail.test"),
            )
            row = await cursor.fetchone()
            assert row is not None
            accounts[name] = row[0]
        for name, account, workspace, deleted in (
            ("m", "m", a.id, None),
            ("o", "o", a.id, None),
            ("b", "b", b.id, None),
            ("deleted", "m", a.id, datetime(2026, 5, 2, tzinfo=UTC)),
        ):
            cursor = await conn.execute(
                "INSERT INTO emails (workspace_id, account_id, provider_message_id, email_date, subject, "
                "deleted_at) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    workspace,
                    accounts[account],
                    f"{name}-{tag}",
                    datetime(2026, 5, 1, tzinfo=UTC),
                    name,
                    deleted,
                ),
            )
            row = await cursor.fetchone()
            assert row is not None
            emails[name] = row[0]
    yield World(users=users, accounts=accounts, emails=emails)
    async with db_pool.connection() as conn:
        await conn.execute("DELETE FROM emails WHERE id = ANY(%s)", (list(emails.values()),))
        await conn.execute("DELETE FROM email_accounts WHERE id = ANY(%s)", (list(accounts.values()),))
        await conn.execute("DELETE FROM workspaces WHERE id = ANY(%s)", ([a.id, b.id],))


# --- reading an email ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "email", "owner"),
    [
        ("a_member", "m", "a_member"),  # the mailbox's owner
        ("a_owner", "m", "a_member"),  # the workspace's owner
        ("a_admin", "m", "a_member"),  # an admin
        ("a_admin", "o", "a_owner"),
        ("a_owner", "o", "a_owner"),
        ("b_member", "b", "b_member"),
        ("b_owner", "b", "b_member"),
    ],
)
async def test_owner_and_admins_read(db_pool: Pool, world: World, who: str, email: str, owner: str) -> None:
    async with db_pool.connection() as conn:
        resource = await require_read_email(conn, world.principal(who), world.emails[email])
    assert resource == OwnedResource(
        workspace_id=world.users[owner].workspace_id, owner_user_id=world.users[owner].id
    )


@pytest.mark.parametrize(("who", "email"), [("a_other", "m"), ("a_member", "o"), ("a_other", "o")])
async def test_another_member_of_the_workspace_is_forbidden(
    db_pool: Pool, world: World, who: str, email: str
) -> None:
    async with db_pool.connection() as conn:
        with pytest.raises(Forbidden):
            await require_read_email(conn, world.principal(who), world.emails[email])


@pytest.mark.parametrize(
    ("who", "email"),
    [
        ("b_owner", "m"),
        ("b_member", "m"),
        ("b_owner", "o"),
        ("a_owner", "b"),
        ("a_admin", "b"),
        ("a_member", "b"),
    ],
)
async def test_another_workspace_cannot_tell_the_email_exists(
    db_pool: Pool, world: World, who: str, email: str
) -> None:
    email_id = world.emails[email]
    async with db_pool.connection() as conn:
        with pytest.raises(NotFound) as foreign:
            await require_read_email(conn, world.principal(who), email_id)
    # The same answer as for an id that does not exist.
    assert str(foreign.value) == f"no email {email_id}"


async def test_an_unknown_email_is_not_found(db_pool: Pool, world: World) -> None:
    unknown = max(world.emails.values()) + 1_000_000
    async with db_pool.connection() as conn:
        for who in ("a_owner", "a_member"):
            with pytest.raises(NotFound) as info:
                await require_read_email(conn, world.principal(who), unknown)
            assert str(info.value) == f"no email {unknown}"


@pytest.mark.parametrize("who", ["a_member", "a_owner", "a_admin", "b_owner"])
async def test_a_deleted_email_is_not_found_even_for_its_owner(db_pool: Pool, world: World, who: str) -> None:
    async with db_pool.connection() as conn:
        with pytest.raises(NotFound):
            await require_read_email(conn, world.principal(who), world.emails["deleted"])


# --- sending from an account --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "account", "owner"),
    [
        ("a_member", "m", "a_member"),
        ("a_owner", "m", "a_member"),
        ("a_admin", "m", "a_member"),
        ("a_owner", "o", "a_owner"),
        ("a_admin", "o", "a_owner"),
        ("b_member", "b", "b_member"),
        ("b_owner", "b", "b_member"),
    ],
)
async def test_owner_and_admins_send_from_the_account(
    db_pool: Pool, world: World, who: str, account: str, owner: str
) -> None:
    async with db_pool.connection() as conn:
        resource = await require_send_from_account(conn, world.principal(who), world.accounts[account])
    assert resource == OwnedResource(
        workspace_id=world.users[owner].workspace_id, owner_user_id=world.users[owner].id
    )


@pytest.mark.parametrize(("who", "account"), [("a_other", "m"), ("a_member", "o")])
async def test_another_member_may_not_send_from_the_account(
    db_pool: Pool, world: World, who: str, account: str
) -> None:
    async with db_pool.connection() as conn:
        with pytest.raises(Forbidden):
            await require_send_from_account(conn, world.principal(who), world.accounts[account])


@pytest.mark.parametrize(
    ("who", "account"), [("b_owner", "m"), ("b_member", "o"), ("a_owner", "b"), ("a_admin", "b")]
)
async def test_another_workspace_cannot_tell_the_account_exists(
    db_pool: Pool, world: World, who: str, account: str
) -> None:
    account_id = world.accounts[account]
    async with db_pool.connection() as conn:
        with pytest.raises(NotFound) as info:
            await require_send_from_account(conn, world.principal(who), account_id)
    assert str(info.value) == f"no email account {account_id}"


async def test_an_unknown_account_is_not_found(db_pool: Pool, world: World) -> None:
    unknown = uuid.uuid4()
    async with db_pool.connection() as conn:
        with pytest.raises(NotFound) as info:
            await require_send_from_account(conn, world.principal("a_owner"), unknown)
    assert str(info.value) == f"no email account {unknown}"
