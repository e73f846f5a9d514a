"""Gmail's JSON (camelCase, int64 as strings, base64url without padding) into models.gmail."""

from __future__ import annotations

import base64
import json

import pytest

from mail.errors import TransientError
from mail.gmail import api_responses
from models.gmail import HistoryChange, Label, MessageRef

RAW = b"From: ana@acme.test\r\nSubject: caf\xc3\xa9\r\n\r\nhello\r\n"


def _unpadded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_message_with_raw() -> None:
    body = json.dumps(
        {
            "id": "18c1",
            "threadId": "18c0",
            "labelIds": ["INBOX", "UNREAD"],
            "snippet": "hello",
            "historyId": "98765",
            "internalDate": "1777636800000",
            "sizeEstimate": 123,
            "raw": _unpadded(RAW),
            "classificationLabelValues": [],
        }
    ).encode()
    message = api_responses.message(body)
    assert message.id == "18c1" and message.thread_id == "18c0"
    assert message.label_ids == ["INBOX", "UNREAD"]
    assert message.history_id == 98765
    assert message.internal_date_ms == 1_777_636_800_000
    assert message.size_estimate == 123
    assert message.raw == RAW


def test_message_without_raw_and_with_numbers() -> None:
    message = api_responses.message(b'{"id": "a", "threadId": "t", "historyId": 5, "internalDate": 7}')
    assert (message.history_id, message.internal_date_ms, message.raw, message.label_ids) == (5, 7, None, [])


@pytest.mark.parametrize("length", range(0, 7))
def test_base64url_with_and_without_padding(length: int) -> None:
    data = bytes(range(250, 250 - length, -1))
    assert api_responses.decode_base64url(_unpadded(data)) == data
    assert api_responses.decode_base64url(base64.urlsafe_b64encode(data).decode()) == data
    assert api_responses.encode_base64url(data) == _unpadded(data)


def test_profile_labels_and_pages() -> None:
    profile = api_responses.profile(
        b'{"emailAddress": "ana@acme.test", "messagesTotal": 3, "threadsTotal": 2, "historyId": "77"}'
    )
    assert (profile.email_address, profile.messages_total, profile.threads_total, profile.history_id) == (
        "ana@acme.test",
        3,
        2,
        77,
    )
    labels = api_responses.labels(
        b'{"labels": [{"id": "INBOX", "name": "INBOX", "type": "system", "messagesTotal": 4},'
        b' {"id": "Label_1", "name": "Deals"}]}'
    )
    assert labels == [
        Label(id="INBOX", name="INBOX", type="system", messages_total=4),
        Label(id="Label_1", name="Deals", type="user"),
    ]
    page = api_responses.message_page(
        b'{"messages": [{"id": "m1", "threadId": "t1"}], "nextPageToken": "p2", "resultSizeEstimate": 9}'
    )
    assert page.messages == [MessageRef(id="m1", thread_id="t1")]
    assert (page.next_page_token, page.result_size_estimate) == ("p2", 9)
    empty = api_responses.message_page(b'{"resultSizeEstimate": 0}')
    assert (empty.messages, empty.next_page_token) == ([], None)


def test_history_page() -> None:
    body = json.dumps(
        {
            "history": [
                {
                    "id": "101",
                    "messages": [{"id": "m1", "threadId": "t1"}],
                    "messagesAdded": [{"message": {"id": "m1", "threadId": "t1", "labelIds": ["INBOX"]}}],
                },
                {
                    "id": "102",
                    "labelsRemoved": [{"message": {"id": "m1", "threadId": "t1"}, "labelIds": ["UNREAD"]}],
                    "labelsAdded": [{"message": {"id": "m1", "threadId": "t1"}, "labelIds": ["STARRED"]}],
                },
                {"id": "103", "messagesDeleted": [{"message": {"id": "m2", "threadId": "t2"}}]},
            ],
            "historyId": "110",
        }
    ).encode()
    page = api_responses.history_page(body)
    assert page.history_id == 110 and page.next_page_token is None
    assert [record.id for record in page.records] == [101, 102, 103]
    ref = MessageRef(id="m1", thread_id="t1")
    assert page.records[0].changes == [HistoryChange(kind="messageAdded", message=ref, label_ids=["INBOX"])]
    assert page.records[1].changes == [
        HistoryChange(kind="labelAdded", message=ref, label_ids=["STARRED"]),
        HistoryChange(kind="labelRemoved", message=ref, label_ids=["UNREAD"]),
    ]
    assert page.records[2].changes == [
        HistoryChange(kind="messageDeleted", message=MessageRef(id="m2", thread_id="t2"))
    ]


def test_watch_attachment_and_sent_message() -> None:
    watch = api_responses.watch_response(b'{"historyId": "1234", "expiration": "1778241600000"}')
    assert (watch.history_id, watch.expiration_ms) == (1234, 1_778_241_600_000)
    data = b"\x00\xffPDF"
    assert api_responses.attachment_data(json.dumps({"size": 5, "data": _unpadded(data)}).encode()) == data
    sent = api_responses.message_ref(b'{"id": "s1", "threadId": "t9", "labelIds": ["SENT"]}')
    assert sent == MessageRef(id="s1", thread_id="t9")


@pytest.mark.parametrize(
    "body", [b"<html>", b'{"id": 5}', b'{"id": "a", "historyId": "12x"}', b'{"threadId": "t"}']
)
def test_unreadable_answers_are_transient(body: bytes) -> None:
    with pytest.raises(TransientError):
        api_responses.message(body)
