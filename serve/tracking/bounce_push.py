"""Provider bounce webhooks on the push deployment: `POST /push/bounces/ses` (Amazon SES through
SNS) and `POST /push/bounces/sendgrid` (SendGrid's signed event webhook).

Nothing in a body is believed before its signature verifies (mail.bounces.webhook_auth). Each
notification is acted on in one transaction keyed by the provider's event id, so a provider's
retry of a delivered webhook changes nothing; the answer is 200 only after the commit, so a
failure makes the provider retry. An SNS SubscriptionConfirmation is confirmed by visiting its
SubscribeURL when that URL is Amazon's and settings allow it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from fastapi import FastAPI, Request, Response

from mail.bounces.ingest import IngestResult, ingest_report, publish_alerts
from mail.bounces.webhook_auth import SnsVerifier, verify_sendgrid
from mail.bounces.webhooks import MAX_BODY_BYTES, parse_sendgrid_events, parse_ses_notification
from mail.errors import TransientError, Unauthorized, ValidationError
from mail.services import Services
from models.bounces import BounceReport
from serve.api.deps import ServicesDep, json_response

log = logging.getLogger(__name__)

_FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10)


async def _fetch(url: str) -> bytes:
    """GET `url` (an SNS certificate or SubscribeURL, already checked against the pattern)."""
    try:
        async with aiohttp.ClientSession(timeout=_FETCH_TIMEOUT) as session, session.get(url) as response:
            if response.status != 200:
                raise TransientError(f"GET {url}: HTTP {response.status}")
            return await response.content.read(1024 * 1024)
    except (aiohttp.ClientError, TimeoutError) as error:
        raise TransientError(f"GET {url}: {error}") from None


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ValidationError(f"body over {MAX_BODY_BYTES} bytes", field="body")
    return body


async def _ingest(svc: Services, reports: list[BounceReport]) -> IngestResult:
    total = IngestResult()
    async with svc.pool.connection() as conn, conn.transaction():
        for report in reports:
            key = f"{report.source}:{report.event_id}" if report.event_id else None
            total.add(await ingest_report(conn, report, svc.settings.sending, report_key=key))
    await publish_alerts(svc.redis, total.alerts)
    return total


def _answer(result: IngestResult) -> Response:
    counts = {name: getattr(result, name) for name in IngestResult.__struct_fields__ if name != "alerts"}
    return json_response(counts)


def add_bounce_routes(app: FastAPI) -> None:
    verifiers: dict[str, SnsVerifier] = {}

    @app.post("/bounces/ses")
    async def ses_bounces(request: Request, svc: ServicesDep) -> Response:
        body = await _body(request)
        try:
            message: Any = json.loads(body)
        except ValueError:
            raise ValidationError("SES webhook: the body is not JSON", field="body") from None
        if not isinstance(message, dict) or "Signature" not in message:
            # Raw message delivery carries no signature: nothing in it could be trusted.
            raise Unauthorized("SES webhook: not a signed SNS message (turn raw message delivery off)")
        verifier = verifiers.get("sns")
        if verifier is None:
            verifier = verifiers.setdefault("sns", SnsVerifier(svc.settings.webhooks, _fetch))
        await verifier.verify(message)
        kind = message.get("Type")
        if kind == "SubscriptionConfirmation":
            url = str(message.get("SubscribeURL", ""))
            if svc.settings.webhooks.sns_confirm_subscriptions and verifier.url_allowed(url):
                await _fetch(url)
                log.info("confirmed the SNS subscription to %s", message.get("TopicArn"))
            return json_response({"confirmed": svc.settings.webhooks.sns_confirm_subscriptions})
        if kind != "Notification":
            return json_response({})
        return _answer(await _ingest(svc, [parse_ses_notification(body)]))

    @app.post("/bounces/sendgrid")
    async def sendgrid_bounces(request: Request, svc: ServicesDep) -> Response:
        body = await _body(request)
        verify_sendgrid(svc.settings.webhooks, request.headers, body)
        return _answer(await _ingest(svc, parse_sendgrid_events(body)))
