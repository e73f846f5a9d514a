"""Bounces after acceptance, end to end on real services: a campaign goes through the SMTP sink,
whose `bounce:` rules mail RFC 3464 reports back into a maildir; ingesting that maildir links
each report to the outbox row by its Message-ID and acts by kind (hard: bounced and suppressed;
soft: queued again, suppressed past the limit; blocked: bounced, not suppressed, alerted), once
per report however often it is read."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cluster.emulators.smtp import start_sink
from mail.bounces import parse_bounce
from mail.bounces.ingest import IngestResult, ingest_maildir, ingest_report
from mail.bounces.webhooks import parse_ses_notification
from mail.campaigns import repository
from mail.sending import guardrails
from mail.sending.campaign_compose import CampaignComposer
from mail.sending.compose import compose_plain
from mail.sending.sender import Sender
from mail.sending.transport import SmtpTransport
from mail.services import Services
from models.bounces import BouncedRecipient, BounceReport
from models.campaigns import CampaignInput
from models.events import BounceAlert, event_decoder, workspace_channel
from models.settings import SendingSettings
from models.tenancy import Principal
from tests.sending_helpers import FROM_EMAIL, sending_campaign, sending_services

pytestmark = [pytest.mark.integration, pytest.mark.storage]

RULES = [
    "hard-*@*=bounce:550 5.1.1 user unknown",
    "full-*@*=bounce:552 5.2.2 mailbox full",
    "spam-*@*=bounce:550 5.7.1 message rejected as spam by content filter",
]


@pytest.fixture
async def services(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    async with sending_services(database_url, redis_url, tmp_path) as opened:
        yield opened


async def _states(database_url: str, campaign_id: uuid.UUID) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT email, state FROM campaign_recipients WHERE campaign_id = %s", (campaign_id,)
        )
        return dict(await cursor.fetchall())


async def _count(database_url: str, query: str, *params: object) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(query, params)
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def _sent_campaign(conn: Any, addresses: list[str]) -> tuple[Principal, uuid.UUID]:
    """sending_campaign with every row sent, its Message-ID <m-ROWID@x>."""
    owner, campaign_id = await sending_campaign(conn, addresses)
    await conn.execute(
        "UPDATE campaign_recipients SET state = 'sent', sent_at = now(), message_id = '<m-' || id || '@x>' "
        "WHERE campaign_id = %s",
        (campaign_id,),
    )
    return owner, campaign_id


async def test_bounces_from_the_sink_are_linked_and_acted_on_once(
    services: Services, database_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    good = [f"ok{index}-{tag}@example.com" for index in range(8)]
    hard, full, spam = f"hard-{tag}@example.com", f"full-{tag}@example.com", f"spam-{tag}@example.com"
    async with services.pool.connection() as conn:
        await conn.set_autocommit(True)
        owner, campaign_id = await sending_campaign(conn, [*good, hard, full, spam])
    dsn = tmp_path / "dsn"
    async with start_sink(store=tmp_path / "sink", dsn_maildir=dsn, rules=RULES, admin_port=None) as sink:
        transport = SmtpTransport(sink.host, sink.port, connections=2)
        sender = Sender(services, f"sender-{tag}", transport, compose_plain)
        try:
            while (await sender.step()).claimed:
                pass
        finally:
            await transport.close()
        for _ in range(200):  # the sink mails its reports a moment after accepting
            if len(list((dsn / "new").glob("*"))) == 3:
                break
            await asyncio.sleep(0.05)
    assert set((await _states(database_url, campaign_id)).values()) == {"sent"}  # the relay took all 11
    sent_count = "SELECT sent_count FROM campaigns WHERE id = %s"
    assert await _count(database_url, sent_count, campaign_id) == 11

    pubsub = services.redis.pubsub()
    await pubsub.subscribe(workspace_channel(owner.workspace_id))
    result = await ingest_maildir(services.pool, services.redis, dsn, services.settings.sending)
    assert (result.reports, result.hard, result.soft_retried, result.blocked, result.unmatched) == (
        3,
        1,
        1,
        1,
        0,
    )
    assert result.suppressed == 1
    states = await _states(database_url, campaign_id)
    assert (states[hard], states[full], states[spam]) == ("bounced", "queued", "bounced")
    assert {states[address] for address in good} == {"sent"}
    assert await _count(database_url, sent_count, campaign_id) == 8  # the three bounced left the count
    suppressed = await _count(
        database_url, "SELECT count(*) FROM suppressions WHERE workspace_id = %s AND email = ANY(%s)",
        owner.workspace_id, [hard, full, spam],
    )  # fmt: skip
    assert suppressed == 1  # only the hard bounce: a blocked message says nothing about the address
    alert = None
    for _ in range(50):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            alert = event_decoder.decode(message["data"])
            break
    await pubsub.unsubscribe()
    assert isinstance(alert, BounceAlert) and alert.data.recipient == spam and alert.data.status == "5.7.1"

    # Read again (as after a crash before the files were moved): nothing is done twice.
    for path in (dsn / "cur").iterdir():
        path.rename(dsn / "new" / path.name.removesuffix(":2,S"))
    again = await ingest_maildir(services.pool, services.redis, dsn, services.settings.sending)
    assert (again.reports, again.hard, again.soft_retried, again.blocked, again.suppressed) == (3, 0, 0, 0, 0)
    assert await _count(database_url, "SELECT count(*) FROM bounces WHERE campaign_id = %s", campaign_id) == 3
    assert await _count(database_url, sent_count, campaign_id) == 8


async def test_repeated_soft_bounces_suppress_the_address_and_unknown_mail_is_unmatched(
    services: Services, database_url: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    address = f"tired-{tag}@example.com"
    async with services.pool.connection() as conn:
        await conn.set_autocommit(True)
        owner, campaign_id = await _sent_campaign(conn, [address])
    soft = BouncedRecipient(
        recipient=address, kind="soft", reason="mailboxfull", status="4.2.2", action="failed"
    )
    results: list[IngestResult] = []
    limit = services.settings.sending.soft_bounce_limit
    for attempt in range(limit):
        async with services.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE campaign_recipients SET state = 'sent' WHERE campaign_id = %s", (campaign_id,)
            )
            report = BounceReport(is_bounce=True, recipients=[soft])
            results.append(
                await ingest_report(conn, report, services.settings.sending, report_key=f"{tag}-{attempt}")
            )
    assert [r.soft_retried for r in results] == [1] * (limit - 1) + [0]
    assert results[-1].soft_final == 1 and results[-1].suppressed == 1
    assert (await _states(database_url, campaign_id))[address] == "bounced"
    async with services.pool.connection() as conn, conn.transaction():
        stray = BouncedRecipient(recipient=f"never-{tag}@example.com", kind="hard", reason="userunknown")
        unmatched = await ingest_report(
            conn, BounceReport(is_bounce=True, recipients=[stray]), services.settings.sending
        )
        not_a_bounce = await ingest_report(conn, BounceReport(is_bounce=False), services.settings.sending)
    assert (unmatched.unmatched, unmatched.hard) == (1, 0)
    assert not_a_bounce.not_bounces == 1
    del owner


async def test_a_bounce_quoting_only_the_campaign_id_is_linked_to_that_campaigns_message(
    services: Services, database_url: str
) -> None:
    """Two campaigns went to one address; a bounce whose returned headers carry the first's
    X-Campaign-ID but no Message-ID is the first's, not the most recent message's."""
    tag = uuid.uuid4().hex[:6]
    address = f"twice-{tag}@example.com"
    async with services.pool.connection() as conn:
        await conn.set_autocommit(True)
        owner, first = await sending_campaign(conn, [address])
        second = await repository.create_campaign(
            conn,
            owner,
            CampaignInput(
                name="Again", subject="More", from_name="Us", from_email=FROM_EMAIL, body_text="Hi"
            ),
        )
        await repository.send_now(conn, owner, second.id)
        await conn.execute(
            "UPDATE campaign_recipients SET state = 'sent', sent_at = now() - CASE WHEN campaign_id = %s "
            "THEN interval '1 day' ELSE interval '1 hour' END, message_id = '<m-' || id || '@x>' "
            "WHERE campaign_id IN (%s, %s)",
            (first, first, second.id),
        )
    hard = BouncedRecipient(
        recipient=address, kind="hard", reason="userunknown", status="5.1.1", action="failed"
    )
    async with services.pool.connection() as conn, conn.transaction():
        report = BounceReport(is_bounce=True, recipients=[hard], original_campaign_id=str(first))
        linked = await ingest_report(conn, report, services.settings.sending, report_key=f"{tag}-first")
    assert (linked.hard, linked.unmatched) == (1, 0)
    assert (await _states(database_url, first))[address] == "bounced"
    assert (await _states(database_url, second.id))[address] == "sent"
    async with services.pool.connection() as conn, conn.transaction():
        report = BounceReport(is_bounce=True, recipients=[hard])  # no Message-ID, no campaign: the latest
        await ingest_report(conn, report, services.settings.sending, report_key=f"{tag}-latest")
    assert (await _states(database_url, second.id))[address] == "bounced"


async def test_a_bounce_from_an_address_forwarded_on_is_linked_by_the_verp_return_path(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Campaign mail goes out with VERP envelope senders; the relay's DSN comes back to that
    address. Rewritten as if the recipient's mail had been forwarded on and bounced there, the
    report names an address mailray never sent to, and the return path still links it."""
    tag = uuid.uuid4().hex[:6]
    gone = f"hard-{tag}@example.com"  # RULES bounce it after accepting
    environ = {"MAILRAY_SENDING__VERP_RETURN_PATH": "bounces@mailray.test"}
    async with sending_services(database_url, redis_url, tmp_path, **environ) as services:
        async with services.pool.connection() as conn:
            await conn.set_autocommit(True)
            _, campaign_id = await sending_campaign(conn, [gone])
        dsn = tmp_path / "dsn"
        async with start_sink(store=tmp_path / "sink", dsn_maildir=dsn, rules=RULES, admin_port=None) as sink:
            transport = SmtpTransport(sink.host, sink.port, connections=1)
            sender = Sender(
                services, f"verp-{tag}", transport, CampaignComposer(services.settings, services.keyring)
            )
            try:
                while (await sender.step()).claimed:
                    pass
            finally:
                await transport.close()
            assert [sink.index.get(message).mail_from for message in sink.index.ids()] == [
                f"bounces+hard-{tag}=example.com@mailray.test"
            ]
            for _ in range(200):
                if list((dsn / "new").glob("*")):
                    break
                await asyncio.sleep(0.05)
        [report_file] = list((dsn / "new").glob("*"))
        report_file.write_bytes(
            report_file.read_bytes().replace(gone.encode(), f"hard-{tag}@forwarded.example".encode())
        )
        result = await ingest_maildir(services.pool, services.redis, dsn, services.settings.sending)
        assert (result.reports, result.hard, result.unmatched) == (1, 1, 0)
        assert (await _states(database_url, campaign_id))[gone] == "bounced"


def _arf(recipient: str, message_id: str) -> bytes:
    """A feedback-loop complaint (RFC 5965) with the recipient redacted, as providers send it."""
    return (
        "From: <fbl@feedback.example.net>\r\nTo: <fbl@mailray.test>\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n"
        "--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nTo: {recipient}\r\nMessage-ID: {message_id}\r\n\r\n"
        "--b--\r\n"
    ).encode()


async def test_complaints_suppress_the_address_once_and_trip_the_complaint_guardrail(
    services: Services, database_url: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    addresses = [f"reader{index}-{tag}@example.com" for index in range(10)]
    async with services.pool.connection() as conn:
        await conn.set_autocommit(True)
        owner, campaign_id = await _sent_campaign(conn, addresses)
        cursor = await conn.execute(
            "SELECT email, message_id FROM campaign_recipients WHERE campaign_id = %s", (campaign_id,)
        )
        message_ids: dict[str, str] = dict(await cursor.fetchall())
    ses = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": addresses[1]}],
            "complaintFeedbackType": "abuse",
        },
        "mail": {"messageId": "ses-id", "commonHeaders": {"messageId": message_ids[addresses[1]]}},
    }
    reports = [
        parse_bounce(_arf(addresses[0], message_ids[addresses[0]])),
        parse_ses_notification(json.dumps(ses)),
    ]
    results = []
    for report in [*reports, reports[0]]:  # the feedback loop's report delivered twice
        async with services.pool.connection() as conn, conn.transaction():
            results.append(await ingest_report(conn, report, services.settings.sending))
    assert [(r.complaints, r.unmatched, r.not_bounces) for r in results] == [(1, 0, 0), (1, 0, 0), (0, 0, 0)]
    async with services.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT email, reason, source, campaign_id FROM suppressions WHERE workspace_id = %s ORDER BY email",
            (owner.workspace_id,),
        )
        assert await cursor.fetchall() == [
            (addresses[0], "complaint", "arf", campaign_id),
            (addresses[1], "complaint", "ses", campaign_id),
        ]
        limits = SendingSettings(guardrail_min_sample=10, max_bounce_rate=1.0, max_complaint_rate=0.003)
        trips = [trip for trip in await guardrails.enforce(conn, limits) if trip.campaign_id == campaign_id]
        await conn.commit()
    assert [trip.reason for trip in trips] == ["complaint rate 20.00% over 0.30% (2 of 10 sent)"]
