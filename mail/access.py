"""Access policies, as in the design document.

- can_read_email: the caller is in the email's workspace, and owns the mailbox it came from or
  is an admin.
- can_send_from_account: the caller owns the account or is an admin of its workspace.
- can_read_tracked_email: as can_read_email; a tracked email's owner is whoever registered it
  (tracked_emails.owner_id), else, for a campaign's message, the campaign's creator.
- can_read_campaign: the caller created the campaign or is an admin of its workspace.

A resource whose owner is gone (a deleted user: the column is NULL) is for admins only.

Outside the caller's workspace a resource does not exist as far as the caller can tell: the
`require_*` helpers raise NotFound there, and Forbidden inside the workspace.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
import psycopg

from mail.errors import Forbidden, NotFound
from models.tenancy import Principal

Conn = psycopg.AsyncConnection[Any]


class OwnedResource(msgspec.Struct, frozen=True, kw_only=True):
    """What a policy needs to know of an email, account or campaign: whose it is (None: nobody's)."""

    workspace_id: UUID
    owner_user_id: UUID | None


def can_read_email(principal: Principal, email: OwnedResource) -> bool:
    if principal.workspace_id != email.workspace_id:
        return False
    return email.owner_user_id == principal.user_id or principal.is_admin


def can_send_from_account(principal: Principal, account: OwnedResource) -> bool:
    if principal.workspace_id != account.workspace_id:
        return False
    return account.owner_user_id == principal.user_id or principal.is_admin


def can_read_tracked_email(principal: Principal, email: OwnedResource) -> bool:
    return can_read_email(principal, email)


def can_read_campaign(principal: Principal, campaign: OwnedResource) -> bool:
    if principal.workspace_id != campaign.workspace_id:
        return False
    return campaign.owner_user_id == principal.user_id or principal.is_admin


async def email_owner(conn: Conn, email_id: int) -> OwnedResource | None:
    cursor = await conn.execute(
        "SELECT e.workspace_id, a.user_id FROM emails e JOIN email_accounts a ON a.id = e.account_id "
        "WHERE e.id = %s AND e.deleted_at IS NULL",
        (email_id,),
    )
    row = await cursor.fetchone()
    return OwnedResource(workspace_id=row[0], owner_user_id=row[1]) if row else None


async def account_owner(conn: Conn, account_id: UUID) -> OwnedResource | None:
    cursor = await conn.execute(
        "SELECT workspace_id, user_id FROM email_accounts WHERE id = %s", (account_id,)
    )
    row = await cursor.fetchone()
    return OwnedResource(workspace_id=row[0], owner_user_id=row[1]) if row else None


async def tracked_email_owner(conn: Conn, email_id: int) -> OwnedResource | None:
    cursor = await conn.execute(
        "SELECT t.workspace_id, coalesce(t.owner_id, c.created_by) FROM tracked_emails t "
        "LEFT JOIN campaigns c ON c.id = t.campaign_id WHERE t.id = %s",
        (email_id,),
    )
    row = await cursor.fetchone()
    return OwnedResource(workspace_id=row[0], owner_user_id=row[1]) if row else None


async def campaign_owner(conn: Conn, campaign_id: UUID) -> OwnedResource | None:
    cursor = await conn.execute(
        "SELECT workspace_id, created_by FROM campaigns WHERE id = %s", (campaign_id,)
    )
    row = await cursor.fetchone()
    return OwnedResource(workspace_id=row[0], owner_user_id=row[1]) if row else None


async def require_read_email(conn: Conn, principal: Principal, email_id: int) -> OwnedResource:
    owner = await email_owner(conn, email_id)
    if owner is None or owner.workspace_id != principal.workspace_id:
        raise NotFound(f"no email {email_id}")
    if not can_read_email(principal, owner):
        raise Forbidden(
            f"email {email_id} belongs to another user's mailbox; only its owner or an admin may read it"
        )
    return owner


async def require_send_from_account(conn: Conn, principal: Principal, account_id: UUID) -> OwnedResource:
    owner = await account_owner(conn, account_id)
    if owner is None or owner.workspace_id != principal.workspace_id:
        raise NotFound(f"no email account {account_id}")
    if not can_send_from_account(principal, owner):
        raise Forbidden(f"only the owner of account {account_id} or an admin may send from it")
    return owner


async def require_read_tracked_email(conn: Conn, principal: Principal, email_id: int) -> OwnedResource:
    owner = await tracked_email_owner(conn, email_id)
    if owner is None or owner.workspace_id != principal.workspace_id:
        raise NotFound(f"no tracked email {email_id}")
    if not can_read_tracked_email(principal, owner):
        raise Forbidden(f"tracked email {email_id} is another user's; only its owner or an admin may read it")
    return owner


async def require_read_campaign(conn: Conn, principal: Principal, campaign_id: UUID) -> OwnedResource:
    owner = await campaign_owner(conn, campaign_id)
    if owner is None or owner.workspace_id != principal.workspace_id:
        raise NotFound(f"no campaign {campaign_id}")
    if not can_read_campaign(principal, owner):
        raise Forbidden(f"campaign {campaign_id} is another user's; only its creator or an admin may read it")
    return owner
