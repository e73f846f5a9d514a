"""A GmailClient for a stored account: tokens decrypted from the store, refreshed tokens written
back encrypted, quota shared through Redis with every other client of the mailbox and project."""

from __future__ import annotations

from uuid import UUID

from mail import accounts
from mail.gmail.client import GmailClient
from mail.gmail.quota import GmailQuota
from mail.services import Services
from models.gmail import TokenSet


async def open_account_client(services: Services, account_id: UUID) -> GmailClient:
    async with services.pool.connection() as conn:
        tokens = await accounts.load_tokens(conn, services.keyring, account_id)
        _, email = await accounts.account_identity(conn, account_id)

    async def on_tokens(new: TokenSet) -> None:
        async with services.pool.connection() as conn, conn.transaction():
            await accounts.save_tokens(conn, services.keyring, account_id, new)

    return GmailClient(
        services.settings.gmail,
        tokens,
        email=email,
        quota=None
        if services.settings.gmail.quota_regime == "off"
        else GmailQuota(services.redis, services.settings.gmail),
        on_tokens=on_tokens,
    )
