"""mail.bounces.webhooks: Amazon SES notifications (bare, in SNS, by email) and SendGrid events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mail.bounces import parse_bounce
from mail.bounces.webhooks import parse_sendgrid_events, parse_ses_notification
from mail.errors import ValidationError


def _ses_bounce(bounce_type: str, sub_type: str, recipients: list[dict[str, str]]) -> dict[str, Any]:
    """An SES bounce notification as SES documents it (fields mailray does not read left in)."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": sub_type,
            "bouncedRecipients": recipients,
            "timestamp": "2026-10-01T09:00:01.000Z",
            "feedbackId": "0100017a-feedback",
            "reportingMTA": "dsn; a27-23.smtp-out.us-west-2.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-10-01T09:00:00.000Z",
            "source": "news@mailray.test",
            "messageId": "0100017a-ses-message-id-000000",
            "destination": [r["emailAddress"] for r in recipients],
        },
    }


USER_UNKNOWN = {
    "emailAddress": "kijitora@example.org",
    "action": "failed",
    "status": "5.1.1",
    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
}


def _sns(message: dict[str, Any]) -> bytes:
    envelope = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:ses-bounces",
        "Message": json.dumps(message),
        "Timestamp": "2026-10-01T09:00:02.000Z",
        "SignatureVersion": "1",
    }
    return json.dumps(envelope).encode()


def test_an_ses_bounce_quoting_the_original_headers_names_our_message_id_and_campaign() -> None:
    notification = _ses_bounce("Permanent", "General", [USER_UNKNOWN])
    notification["mail"]["commonHeaders"] = {"messageId": "<autumn-42@mailray.test>", "subject": "Autumn"}
    notification["mail"]["headers"] = [
        {"name": "Message-ID", "value": "<autumn-42@mailray.test>"},
        {"name": "x-campaign-id", "value": "5b0c6a3e-1d2f-4e8a-9c7b-2a1f0e9d8c7b"},
    ]

    report = parse_ses_notification(_sns(notification))

    assert report.original_message_id == "autumn-42@mailray.test"  # not SES's own id
    assert report.original_campaign_id == "5b0c6a3e-1d2f-4e8a-9c7b-2a1f0e9d8c7b"
    assert (
        parse_ses_notification(_sns(_ses_bounce("Permanent", "General", [USER_UNKNOWN]))).original_campaign_id
        is None
    )


def test_an_ses_permanent_bounce_in_an_sns_envelope() -> None:
    report = parse_ses_notification(_sns(_ses_bounce("Permanent", "General", [USER_UNKNOWN])))

    assert report.is_bounce and report.source == "ses"
    assert report.original_message_id == "0100017a-ses-message-id-000000"
    assert report.reporting_mta == "a27-23.smtp-out.us-west-2.amazonses.com"
    [recipient] = report.recipients
    assert (recipient.recipient, recipient.status, recipient.reply_code) == (
        "kijitora@example.org",
        "5.1.1",
        "550",
    )
    assert (recipient.kind, recipient.reason, recipient.diagnostic) == (
        "hard",
        "userunknown",
        "550 5.1.1 user unknown",
    )


def test_ses_sub_types_speak_when_the_receiver_does_not() -> None:
    bare = [{"emailAddress": "kijitora@example.org"}]
    cases = {
        ("Transient", "MailboxFull"): ("soft", "mailboxfull"),
        ("Permanent", "Suppressed"): ("hard", "suppressed"),
        ("Permanent", "OnAccountSuppressionList"): ("hard", "suppressed"),
        ("Permanent", "General"): ("hard", "undefined"),
        ("Transient", "General"): ("soft", "undefined"),
        ("Transient", "ContentRejected"): ("blocked", "policyviolation"),
    }
    for (bounce_type, sub_type), expected in cases.items():
        body = json.dumps(_ses_bounce(bounce_type, sub_type, bare)).encode()  # raw message delivery

        [recipient] = parse_ses_notification(body).recipients

        assert (recipient.kind, recipient.reason) == expected, (bounce_type, sub_type)


def test_the_receivers_words_beat_a_permanent_general_bounce() -> None:
    blocked = {
        "emailAddress": "kijitora@example.org",
        "status": "5.7.1",
        "diagnosticCode": "smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
    }

    [recipient] = parse_ses_notification(
        json.dumps(_ses_bounce("Permanent", "General", [blocked]))
    ).recipients

    assert (recipient.kind, recipient.reason) == ("blocked", "blocked")


def test_an_ses_complaint_names_who_complained_about_which_message() -> None:
    notification = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "kijitora@example.org"}],
            "timestamp": "2026-10-01T10:00:00.000Z",
            "feedbackId": "0100017a-complaint",
            "complaintFeedbackType": "abuse",
        },
        "mail": {
            "messageId": "0100017a-ses-message-id-000000",
            "commonHeaders": {"messageId": "<autumn-42@mailray.test>"},
            "headers": [{"name": "X-Campaign-ID", "value": "5b0c6a3e-1d2f-4e8a-9c7b-2a1f0e9d8c7b"}],
        },
    }

    report = parse_ses_notification(_sns(notification))

    assert not report.is_bounce and report.recipients == []
    assert (report.complained_by, report.feedback_type, report.source) == (
        ["kijitora@example.org"],
        "abuse",
        "ses",
    )
    assert report.original_message_id == "autumn-42@mailray.test"
    assert report.original_campaign_id == "5b0c6a3e-1d2f-4e8a-9c7b-2a1f0e9d8c7b"
    assert report.event_id == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"


def test_ses_deliveries_complaints_and_subscription_confirmations_are_not_bounces() -> None:
    complaint = {"notificationType": "Complaint", "complaint": {}, "mail": {"messageId": "m-1"}}
    confirmation = {
        "Type": "SubscriptionConfirmation",
        "Message": "You have chosen to subscribe",
        "SubscribeURL": "x",
    }

    assert not parse_ses_notification(json.dumps(complaint)).is_bounce
    assert parse_ses_notification(json.dumps(complaint)).original_message_id == "m-1"
    assert not parse_ses_notification(json.dumps({"eventType": "Delivery", "mail": {}})).is_bounce
    assert not parse_ses_notification(json.dumps(confirmation)).is_bounce


def test_an_ses_notification_mailed_by_sns_is_read_by_parse_bounce() -> None:
    notification = json.dumps(_ses_bounce("Permanent", "General", [USER_UNKNOWN]))
    # SNS email subscriptions send the JSON as the body, lines broken Sendmail-style past 990 characters.
    body = (
        notification[:60]
        + "!\n "
        + notification[60:]
        + "\n\n--\nIf you wish to stop receiving notifications ...\n"
    )
    raw = (
        "From: AWS Notifications <no-reply@sns.amazonaws.com>\nTo: news@mailray.test\n"
        "Subject: AWS Notification Message\nContent-Type: text/plain; charset=UTF-8\n\n" + body
    ).encode()

    report = parse_bounce(raw)

    assert report.source == "ses"
    assert [(r.recipient, r.kind) for r in report.recipients] == [("kijitora@example.org", "hard")]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json at all",
        b'{"notificationType": "Bounce", "bounce": ',
        b'{"notificationType": "Bounce", "bounce": {"bouncedRecipients": [{"status": "5.1.1"}]}}',
        b'{"notificationType": "Bounce", "mail": {}}',
        b'{"Type": "Notification", "Message": "{broken"}',
    ],
)
def test_malformed_ses_notifications_raise_a_validation_error(body: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_ses_notification(body)


SENDGRID_EVENTS = [
    {
        "email": "kijitora@example.org",
        "event": "bounce",
        "type": "bounce",
        "status": "5.1.1",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "timestamp": 1790000000,
    },
    {
        "email": "mikeneko@example.org",
        "event": "bounce",
        "type": "blocked",
        "status": "5.0.0",
        "reason": "550 Access denied",
        "sg_message_id": "sg-2",
    },
    {"email": "sabatora@example.org", "event": "open", "sg_message_id": "sg-3"},
    {
        "email": "shironeko@example.org",
        "event": "dropped",
        "reason": "Bounced Address",
        "sg_message_id": "sg-4",
    },
    {
        "email": "chatora@example.org",
        "event": "dropped",
        "reason": "Unsubscribed Address",
        "sg_message_id": "sg-5",
    },
    {
        "email": "kuroneko@example.org",
        "event": "deferred",
        "response": "452 4.2.2 The email account that you tried to reach is over quota.",
        "attempt": "3",
        "sg_message_id": "sg-6",
    },
    {
        "email": "buchi@example.org",
        "event": "bounce",
        "type": "bounce",
        "status": "5.0.0",
        "reason": "",
        "sg_message_id": "sg-7",
    },
]


def test_sendgrid_events_become_one_report_per_failure() -> None:
    reports = parse_sendgrid_events(json.dumps(SENDGRID_EVENTS).encode())

    assert all(report.is_bounce and report.source == "sendgrid" for report in reports)
    summary = [
        (report.original_message_id, r.recipient, r.status, r.reply_code, r.kind, r.reason, r.action)
        for report in reports
        for r in report.recipients
    ]
    assert summary == [
        ("14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "kijitora@example.org", "5.1.1", "550", "hard", "userunknown", "failed"),
        ("sg-2", "mikeneko@example.org", "5.0.0", "550", "blocked", "blocked", "failed"),
        ("sg-4", "shironeko@example.org", "", "", "hard", "suppressed", "failed"),
        ("sg-6", "kuroneko@example.org", "4.2.2", "452", "soft", "mailboxfull", "delayed"),
        ("sg-7", "buchi@example.org", "5.0.0", "", "hard", "undefined", "failed"),
    ]  # fmt: skip


def test_a_sendgrid_spam_report_is_a_complaint() -> None:
    event = {
        "email": "kijitora@example.org",
        "event": "spamreport",
        "sg_message_id": "sg-9",
        "sg_event_id": "e-9",
    }

    [report] = parse_sendgrid_events(json.dumps([event, *SENDGRID_EVENTS[2:3]]))

    assert not report.is_bounce and report.complained_by == ["kijitora@example.org"]
    assert (report.source, report.event_id, report.original_message_id) == ("sendgrid", "e-9", "sg-9")


def test_a_single_sendgrid_event_object_is_read_too() -> None:
    [report] = parse_sendgrid_events(json.dumps(SENDGRID_EVENTS[0]))

    assert report.recipients[0].reason == "userunknown"


@pytest.mark.parametrize("body", [b"", b"[{", b'[{"email": 42, "event": "bounce"}]', b'["bounce"]'])
def test_malformed_sendgrid_events_raise_a_validation_error(body: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_sendgrid_events(body)
