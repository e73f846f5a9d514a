"""Provider bounce webhooks on the push app, real Postgres and Redis: SNS messages signed with a
certificate served over HTTP (the settings' pattern admits this test's server in place of
Amazon's), SendGrid batches signed with an ECDSA key; forged, altered, stale and foreign
requests are refused and change nothing; a delivery repeated by the provider is acted on once."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mail.bounces.webhook_auth import SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP, sns_string_to_sign
from mail.services import Services
from serve.tracking.push import create_push_app
from tests.certificates import self_signed
from tests.sending_helpers import sending_campaign, sending_services

pytestmark = [pytest.mark.integration, pytest.mark.storage]

TOPIC = "arn:aws:sns:eu-west-1:123456789012:mailray-bounces"


class Signer:
    """An SNS stand-in: an RSA key, its certificate served at `cert_url`."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.cert_pem = self_signed(self.key, "sns.amazonaws.com").public_bytes(serialization.Encoding.PEM)
        self.cert_url = ""
        self.confirmations = 0

    def sign(self, message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        signed = {**message, "SignatureVersion": version, "SigningCertURL": self.cert_url}
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = self.key.sign(sns_string_to_sign(signed), padding.PKCS1v15(), algorithm)
        return {**signed, "Signature": base64.b64encode(signature).decode()}


@pytest.fixture
async def signer() -> AsyncIterator[Signer]:
    sns = Signer()

    async def cert(request: web.Request) -> web.Response:
        return web.Response(body=sns.cert_pem)

    async def confirm(request: web.Request) -> web.Response:
        sns.confirmations += 1
        return web.Response(text="<ConfirmSubscriptionResponse/>")

    app = web.Application()
    app.router.add_get("/SimpleNotificationService-test.pem", cert)
    app.router.add_get("/confirm", confirm)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sns.cert_url = f"http://127.0.0.1:{port}/SimpleNotificationService-test.pem"
    yield sns
    await runner.cleanup()


@pytest.fixture
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def services(
    database_url: str, redis_url: str, tmp_path: Path, sendgrid_key: ec.EllipticCurvePrivateKey
) -> AsyncIterator[Services]:
    public = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    async with sending_services(
        database_url, redis_url, tmp_path,
        MAILRAY_WEBHOOKS__SES_TOPIC_ARNS=json.dumps([TOPIC]),
        MAILRAY_WEBHOOKS__SNS_CERT_URL_PATTERN=r"^http://127\.0\.0\.1:\d+/",
        MAILRAY_WEBHOOKS__SENDGRID_PUBLIC_KEY=base64.b64encode(public).decode(),
    ) as opened:  # fmt: skip
        yield opened


@pytest.fixture
async def push(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async def factory() -> Services:
        return services

    transport = httpx.ASGITransport(app=create_push_app(factory))
    async with httpx.AsyncClient(transport=transport, base_url="http://mailray.test") as client:
        yield client


async def _sent_campaign(services: Services, addresses: list[str]) -> uuid.UUID:
    async with services.pool.connection() as conn:
        await conn.set_autocommit(True)
        _, campaign_id = await sending_campaign(conn, addresses)
        await conn.execute(
            "UPDATE campaign_recipients SET state = 'sent', sent_at = now(), message_id = 'm-' || id || '@x' "
            "WHERE campaign_id = %s",
            (campaign_id,),
        )
    return campaign_id


async def _states(database_url: str, campaign_id: uuid.UUID) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT email, state FROM campaign_recipients WHERE campaign_id = %s", (campaign_id,)
        )
        return dict(await cursor.fetchall())


def _ses_bounce(address: str, message_id: str) -> dict[str, Any]:
    notification = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": address, "action": "failed", "status": "5.1.1",
                 "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
            ],
        },
        "mail": {"messageId": "0102018c-ses-id", "destination": [address]},
    }  # fmt: skip
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": json.dumps(notification),
        "Timestamp": "2026-12-04T05:00:00.000Z",
    }


async def test_signed_ses_bounce_suppresses_once_and_forgeries_change_nothing(
    services: Services, push: httpx.AsyncClient, signer: Signer, database_url: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    gone, other, stranger = f"gone-{tag}@example.com", f"other-{tag}@example.com", f"s-{tag}@example.com"
    campaign_id = await _sent_campaign(services, [gone, other, stranger])

    # Forged: signed by a key whose certificate is not where SigningCertURL points.
    impostor = Signer()
    impostor.cert_url = signer.cert_url
    forged = await push.post("/bounces/ses", json=impostor.sign(_ses_bounce(other, f"f-{tag}")))
    assert forged.status_code == 401, forged.text
    # Altered after signing: the recipient swapped.
    good = signer.sign(_ses_bounce(gone, f"g-{tag}"))
    altered = {**good, "Message": good["Message"].replace(gone, other)}
    assert (await push.post("/bounces/ses", json=altered)).status_code == 401
    # A certificate from anywhere but the allowed addresses is never fetched.
    elsewhere = {**signer.sign(_ses_bounce(other, f"e-{tag}")), "SigningCertURL": "http://evil.test/x.pem"}
    assert (await push.post("/bounces/ses", json=elsewhere)).status_code == 401
    # Another topic, even correctly signed.
    foreign = signer.sign({**_ses_bounce(other, f"t-{tag}"), "TopicArn": TOPIC + "-other"})
    assert (await push.post("/bounces/ses", json=foreign)).status_code == 403
    # Raw message delivery (no SNS envelope, no signature).
    bare = json.loads(_ses_bounce(other, "x")["Message"])
    assert (await push.post("/bounces/ses", json=bare)).status_code == 401
    assert (await push.post("/bounces/ses", content=b"{not json")).status_code == 422
    assert set((await _states(database_url, campaign_id)).values()) == {"sent"}

    accepted = await push.post("/bounces/ses", json=good)
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["hard"], accepted.json()["suppressed"]) == (1, 1)
    # SNS delivers at least once: the same message again does nothing more.
    again = await push.post("/bounces/ses", json=good)
    assert again.status_code == 200 and again.json()["hard"] == 0
    # Signature version 1 (SHA1withRSA) is accepted too.
    version1 = await push.post("/bounces/ses", json=signer.sign(_ses_bounce(stranger, f"v1-{tag}"), "1"))
    assert version1.status_code == 200 and version1.json()["hard"] == 1

    states = await _states(database_url, campaign_id)
    assert (states[gone], states[other], states[stranger]) == ("bounced", "sent", "bounced")
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM bounces WHERE campaign_id = %s AND report_key LIKE 'ses:%%'", (campaign_id,)
        )
        assert (await cursor.fetchone()) == (2,)


async def test_sns_subscription_is_confirmed_only_when_signed(
    push: httpx.AsyncClient, signer: Signer
) -> None:
    base = signer.cert_url.rsplit("/", 1)[0]
    confirmation = {
        "Type": "SubscriptionConfirmation",
        "MessageId": uuid.uuid4().hex,
        "Token": "t0k3n",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": f"{base}/confirm",
        "Timestamp": "2026-12-04T05:00:00.000Z",
    }
    unsigned = {**signer.sign(confirmation), "Signature": base64.b64encode(b"x" * 256).decode()}
    assert (await push.post("/bounces/ses", json=unsigned)).status_code == 401
    assert signer.confirmations == 0
    response = await push.post("/bounces/ses", json=signer.sign(confirmation))
    assert response.status_code == 200 and response.json() == {"confirmed": True}
    assert signer.confirmations == 1


def _sendgrid_headers(key: ec.EllipticCurvePrivateKey, body: bytes, at: int | None = None) -> dict[str, str]:
    timestamp = str(int(time.time()) if at is None else at)
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SENDGRID_SIGNATURE: base64.b64encode(signature).decode(), SENDGRID_TIMESTAMP: timestamp}


async def test_signed_sendgrid_events_act_once_and_bad_signatures_are_refused(
    services: Services, push: httpx.AsyncClient, sendgrid_key: ec.EllipticCurvePrivateKey, database_url: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    hard, blocked, opened = f"hard-{tag}@example.com", f"blk-{tag}@example.com", f"open-{tag}@example.com"
    campaign_id = await _sent_campaign(services, [hard, blocked, opened])
    events = [
        {"email": hard, "event": "bounce", "type": "bounce", "status": "5.1.1",
         "reason": "550 5.1.1 The email account that you tried to reach does not exist", "sg_event_id": f"a-{tag}"},
        {"email": blocked, "event": "bounce", "type": "blocked", "status": "5.7.1",
         "reason": "550 5.7.1 Service unavailable; client host blocked using a blocklist", "sg_event_id": f"b-{tag}"},
        {"email": opened, "event": "open", "sg_event_id": f"c-{tag}"},
    ]  # fmt: skip
    body = json.dumps(events).encode()

    other_key = ec.generate_private_key(ec.SECP256R1())
    refused = [
        await push.post("/bounces/sendgrid", content=body),  # unsigned
        await push.post("/bounces/sendgrid", content=body, headers=_sendgrid_headers(other_key, body)),
        await push.post(
            "/bounces/sendgrid",
            content=body.replace(b"hard-", b"open-"),
            headers=_sendgrid_headers(sendgrid_key, body),
        ),
        await push.post(  # a signature captured an hour ago
            "/bounces/sendgrid",
            content=body,
            headers=_sendgrid_headers(sendgrid_key, body, int(time.time()) - 3600),
        ),
    ]
    assert [response.status_code for response in refused] == [401] * 4
    assert set((await _states(database_url, campaign_id)).values()) == {"sent"}

    accepted = await push.post(
        "/bounces/sendgrid", content=body, headers=_sendgrid_headers(sendgrid_key, body)
    )
    assert accepted.status_code == 200, accepted.text
    counts = accepted.json()
    assert (counts["reports"], counts["hard"], counts["blocked"], counts["suppressed"]) == (2, 1, 1, 1)
    retried = await push.post(
        "/bounces/sendgrid", content=body, headers=_sendgrid_headers(sendgrid_key, body)
    )
    assert retried.status_code == 200 and (retried.json()["hard"], retried.json()["blocked"]) == (0, 0)
    states = await _states(database_url, campaign_id)
    assert (states[hard], states[blocked], states[opened]) == ("bounced", "bounced", "sent")


async def test_unconfigured_webhooks_answer_404(database_url: str, redis_url: str, tmp_path: Path) -> None:
    async with sending_services(database_url, redis_url, tmp_path) as plain:

        async def factory() -> Services:
            return plain

        transport = httpx.ASGITransport(app=create_push_app(factory))
        async with httpx.AsyncClient(transport=transport, base_url="http://mailray.test") as client:
            ses = await client.post("/bounces/ses", json={**_ses_bounce("a@b.test", "m"), "Signature": "x"})
            sendgrid = await client.post("/bounces/sendgrid", content=b"[]")
    assert (ses.status_code, sendgrid.status_code) == (404, 404)
