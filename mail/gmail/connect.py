"""Connecting a Gmail account: the OAuth code becomes tokens, the profile names the mailbox.

`begin_oauth` hands out an authorization URL whose `state` is a one-time token in Redis bound
to the caller, so the browser's callback (which carries no API key) connects the account to
the workspace and user that asked for it.
"""

from __future__ import annotations

import secrets
from uuid import UUID

import msgspec

from mail import accounts
from mail.errors import Unauthorized
from mail.gmail.client import GmailClient
from mail.gmail.oauth import authorization_url, exchange_code
from mail.services import Services
from models.accounts import EmailAccount
from models.tenancy import Principal

STATE_TTL_S = 600
_STATE_PREFIX = "mailray:oauth:state:"


class _OAuthState(msgspec.Struct, frozen=True):
    workspace_id: UUID
    user_id: UUID
    role: str


async def begin_oauth(
    services: Services, principal: Principal, login_hint: str | None = None
) -> tuple[str, str]:
    """(authorization URL, state) for the caller; the state is good for one callback within 10 minutes."""
    state = secrets.token_urlsafe(24)
    await services.redis.set(
        _STATE_PREFIX + state,
        msgspec.json.encode(_OAuthState(principal.workspace_id, principal.user_id, principal.role)),
        ex=STATE_TTL_S,
    )
    return authorization_url(services.settings.gmail, state, login_hint=login_hint), state


async def principal_for_state(services: Services, state: str) -> Principal:
    raw = await services.redis.getdel(_STATE_PREFIX + state)
    if raw is None:
        raise Unauthorized("unknown or expired OAuth state: start the connection again")
    found = msgspec.json.decode(raw, type=_OAuthState)
    return Principal(workspace_id=found.workspace_id, user_id=found.user_id, role=found.role)  # type: ignore[arg-type]


async def connect_with_code(services: Services, principal: Principal, code: str) -> EmailAccount:
    """Exchange the code, read the mailbox's address, store the account with its tokens encrypted."""
    tokens = await exchange_code(services.settings.gmail, code)
    client = GmailClient(services.settings.gmail, tokens, email="me", quota=None)
    try:
        profile = await client.get_profile()
        tokens = client.tokens
    finally:
        await client.close()
    async with services.pool.connection() as conn:
        return await accounts.connect_gmail_account(conn, services.keyring, principal, profile, tokens)
