"""Routes for tracked emails: registering an outgoing message, and email and campaign analytics.

Analytics read one consistent snapshot (REPEATABLE READ, read only). Access follows mail.access:
another workspace's id is 404, another user's email or campaign in the caller's workspace is 403
unless the caller is an admin.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from fastapi import APIRouter, Request, Response

from mail.access import require_read_campaign, require_read_tracked_email, require_send_from_account
from mail.audit import AuditEntry, record
from mail.errors import ValidationError
from mail.mime_charsets import message_id as bare_message_id
from mail.tracking import analytics, registry
from mail.tracking.instrument import instrument_html
from mail.tracking.tokens import TokenKind, TokenSigner, TrackingToken
from models.analytics import RegisteredTrackedEmail, RegisterTrackedEmail, TrackedLinkUrl
from serve.api.deps import PrincipalDep, ServicesDep, decode_body, json_response, request_context

router = APIRouter(prefix="/v1")

ONE_CLICK = "List-Unsubscribe=One-Click"
MAX_TOP_LINKS = 1000
_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_URL_SPACE = "\t\n\f\r "


def _recipient(address: str) -> str:
    address = address.strip()
    # The users table's rule: an "@" after the first character.
    if address.find("@") < 1 or len(address) > 320 or any(c.isspace() for c in address):
        raise ValidationError(f"not an email address: {address!r}", field="recipientEmail")
    return address


def _sign(signer: TokenSigner, kind: TokenKind, email_id: int, link: int | None = None) -> str:
    # The same tokens instrument_html writes (signing is deterministic): no recipient id here.
    return signer.sign(TrackingToken(kind=kind, email_id=email_id, link=link))


@router.post("/tracking/emails")
async def register_tracked_email(request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """Track an outgoing message: its HTML comes back with tracked links and an open pixel."""
    body = await decode_body(request, RegisterTrackedEmail)
    recipient = _recipient(body.recipient_email)
    message_id = bare_message_id(body.message_id) if body.message_id else None
    signer = TokenSigner.from_keyring(svc.keyring)
    base = svc.settings.tracking.base_url.strip().rstrip("/")
    async with svc.pool.connection() as conn, conn.transaction():
        if body.account_id is not None:
            await require_send_from_account(conn, caller, body.account_id)
        email_id = await registry.create_tracked_email(
            conn,
            registry.NewTrackedEmail(
                workspace_id=caller.workspace_id,
                recipient_email=recipient,
                owner_id=caller.user_id,
                account_id=body.account_id,
                message_id=message_id,
                subject=body.subject,
            ),
        )
        unsubscribe_url = f"{base}/u/{_sign(signer, TokenKind.UNSUBSCRIBE, email_id)}"
        html: str | None = None
        links: list[TrackedLinkUrl] = []
        if body.html is not None:
            instrumented = instrument_html(
                body.html,
                email_id=email_id,
                recipient_id=None,
                signer=signer,
                base_url=base,
                track_opens=body.track_opens,
                track_clicks=body.track_clicks,
                unsubscribe_url=unsubscribe_url,
            )
            html = instrumented.html
            # The click redirect goes to the stored URL: without the whitespace an href may carry.
            rows = [
                registry.LinkRow(
                    position=link.position, url=link.url.strip(_URL_SPACE), text=link.text or None
                )
                for link in instrumented.links
            ]
            await registry.store_links(conn, caller.workspace_id, email_id, rows)
            links = [
                TrackedLinkUrl(
                    position=row.position,
                    url=row.url,
                    tracked_url=f"{base}/t/c/{_sign(signer, TokenKind.CLICK, email_id, row.position)}",
                )
                for row in rows
            ]
        await registry.mark_sent(conn, email_id, datetime.now(UTC), message_id)
        await record(
            conn,
            AuditEntry(
                action="tracked_email.create",
                resource_type="tracked_email",
                resource_id=str(email_id),
                metadata={
                    "accountId": body.account_id,
                    "links": len(links),
                    "trackOpens": body.track_opens,
                    "trackClicks": body.track_clicks,
                },
            ),
            principal=caller,
            request=request_context(request),
        )
    pixel_url = f"{base}/t/o/{_sign(signer, TokenKind.OPEN, email_id)}.gif" if body.track_opens else None
    return json_response(
        RegisteredTrackedEmail(
            id=email_id,
            html=html,
            pixel_url=pixel_url,
            unsubscribe_url=unsubscribe_url,
            list_unsubscribe=f"<{unsubscribe_url}>",
            list_unsubscribe_post=ONE_CLICK,
            links=links,
        ),
        201,
    )


@router.get("/tracking/emails/{email_id}/analytics")
async def email_analytics(email_id: int, caller: PrincipalDep, svc: ServicesDep) -> Response:
    async with svc.pool.connection() as conn, conn.transaction():
        await conn.execute(_SNAPSHOT)
        await require_read_tracked_email(conn, caller, email_id)
        return json_response(await analytics.email_analytics(conn, email_id))


@router.get("/campaigns/{campaign_id}/analytics")
async def campaign_analytics(
    campaign_id: UUID, caller: PrincipalDep, svc: ServicesDep, top_links: int = analytics.DEFAULT_TOP_LINKS
) -> Response:
    if not 1 <= top_links <= MAX_TOP_LINKS:
        raise ValidationError(f"top_links must be between 1 and {MAX_TOP_LINKS}", field="top_links")
    async with svc.pool.connection() as conn, conn.transaction():
        await conn.execute(_SNAPSHOT)
        await require_read_campaign(conn, caller, campaign_id)
        return json_response(await analytics.campaign_analytics(conn, campaign_id, top_links=top_links))
