"""The Gmail emulator, driven by the real google-api-python-client and google-auth over HTTP.

googleapiclient is synchronous (httplib2): its calls run in a thread so the in-process emulator
keeps serving on the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import aiohttp
import google.auth.exceptions
import google.oauth2.credentials
import google_auth_httplib2
import httplib2
import msgspec
import pytest
from aiohttp import web
from google.oauth2 import id_token
from googleapiclient.discovery import build, build_from_document
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, MediaIoBaseUpload

from cluster.emulators.gmail import EmulatorConfig, GmailEmulator
from cluster.emulators.gmail.admin_client import EmulatorAdmin
from cluster.emulators.gmail.quota import QuotaGate
from tests.fix_gmail import GmailEmulatorFactory

pytestmark = pytest.mark.integration

T = TypeVar("T")
USER = "ana@acme.test"
CLIENT_ID = "mailray-dev"
CLIENT_SECRET = "mailray-dev-secret"
CORPUS = Path("/work/shared/corpora/spamassassin")
MAILRAY = str(Path(sys.executable).with_name("mailray"))


async def in_thread(function: Callable[[], T]) -> T:
    return await asyncio.to_thread(function)


def credentials(base_url: str, tokens: dict[str, Any]) -> google.oauth2.credentials.Credentials:
    # google-auth leaves Credentials.__init__ unannotated.
    return google.oauth2.credentials.Credentials(  # type: ignore[no-untyped-call]
        token=tokens["access_token"],
        refresh_token=tokens.get("refresh_token"),
        token_uri=f"{base_url}/token",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )


def service(base_url: str, tokens: dict[str, Any]) -> Any:
    return build(
        "gmail",
        "v1",
        credentials=credentials(base_url, tokens),
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": base_url},
    )


def error_body(error: HttpError) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.content)
    return body


def message(
    subject: str, *, body: str = "Hello there.", attachment: bytes | None = None, **headers: str
) -> bytes:
    mail = EmailMessage()
    mail["From"] = headers.pop("sender", "Ben <ben@northwind.test>")
    mail["To"] = headers.pop("to", USER)
    mail["Subject"] = subject
    mail["Date"] = headers.pop("date", "Mon, 06 Jan 2025 09:00:00 +0000")
    mail["Message-ID"] = headers.pop("message_id", f"<{uuid.uuid4().hex}@northwind.test>")
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(body)
    if attachment is not None:
        mail.add_attachment(attachment, maintype="application", subtype="pdf", filename="quote.pdf")
    return mail.as_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def batch_request(ids: list[str], fmt: str = "raw") -> tuple[str, bytes]:
    boundary = "batch_" + uuid.uuid4().hex
    parts = [
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{index}>\r\n\r\n"
        f"GET /gmail/v1/users/me/messages/{message_id}?format={fmt} HTTP/1.1\r\n\r\n"
        for index, message_id in enumerate(ids)
    ]
    return f"multipart/mixed; boundary={boundary}", ("".join(parts) + f"--{boundary}--\r\n").encode()


def batch_answers(content_type: str, body: bytes) -> list[tuple[str, int, dict[str, Any]]]:
    """(Content-ID, status, JSON) of each part of a batch response."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    answers = []
    for piece in body.split(b"--" + boundary)[1:]:
        if piece.startswith(b"--"):
            break
        head, _, inner = piece.partition(b"\r\n\r\n")
        content_id = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-id")
        )
        status_line, _, rest = inner.partition(b"\r\n")
        _, _, content = rest.partition(b"\r\n\r\n")
        answers.append(
            (content_id, int(status_line.split()[1]), msgspec.json.decode(content.rstrip(b"\r\n") or b"{}"))
        )
    return answers


# ------------------------------------------------------------------------------------ OAuth


async def test_oauth_flow_refresh_and_revocation(gmail_emulator: GmailEmulator) -> None:
    base = gmail_emulator.base_url
    gmail_emulator.generate(USER, 5)
    redirect = "http://127.0.0.1:8000/v1/accounts/oauth/callback"
    scopes = "https://www.googleapis.com/auth/gmail.readonly openid email"
    async with aiohttp.ClientSession() as session:
        params = {
            "client_id": CLIENT_ID,
            "redirect_uri": redirect,
            "response_type": "code",
            "scope": scopes,
            "access_type": "offline",
            "prompt": "consent",
            "state": "s-123",
            "login_hint": USER,
        }
        async with session.get(f"{base}/o/oauth2/auth", params=params, allow_redirects=False) as response:
            assert response.status == 302
            location = urlsplit(response.headers["Location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
        query = parse_qs(location.query)
        assert query["state"] == ["s-123"]
        form = {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": redirect,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
        async with session.post(f"{base}/token", data=form) as response:
            assert response.status == 200
            tokens = await response.json()
        assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
        assert tokens["refresh_token"].startswith("1//") and tokens["scope"] == scopes
        async with session.post(f"{base}/token", data=form) as response:  # a code works once
            assert response.status == 400
            assert (await response.json())["error"] == "invalid_grant"

    claims = await in_thread(
        lambda: id_token.verify_token(
            tokens["id_token"],
            google_auth_httplib2.Request(httplib2.Http()),
            audience=CLIENT_ID,
            certs_url=f"{base}/oauth2/v1/certs",
        )
    )
    assert claims["email"] == USER and claims["iss"] == "https://accounts.google.com"

    gmail = service(base, tokens)
    profile = await in_thread(gmail.users().getProfile(userId="me").execute)
    assert profile["emailAddress"] == USER and profile["messagesTotal"] == 5

    gmail_emulator.expire_access_tokens()  # google-auth refreshes on the 401 and retries
    assert (await in_thread(gmail.users().getProfile(userId="me").execute))["messagesTotal"] == 5
    assert gmail_emulator.stats.tokens_refreshed == 1 and gmail_emulator.stats.auth_failures == 1

    with pytest.raises(HttpError) as denied:  # readonly scope: no modify
        await in_thread(gmail.users().messages().trash(userId="me", id="1900000000000000").execute)
    assert denied.value.resp.status == 403
    assert error_body(denied.value)["error"]["errors"][0]["reason"] == "insufficientPermissions"

    gmail_emulator.revoke(tokens["refresh_token"])
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        await in_thread(gmail.users().getProfile(userId="me").execute)

    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": "Bearer ya29.nothing"}
        async with session.get(f"{base}/gmail/v1/users/me/profile", headers=headers) as response:
            assert response.status == 401
            body = await response.json()
        assert body["error"]["status"] == "UNAUTHENTICATED"
        assert body["error"]["errors"][0] == {
            "message": "Invalid Credentials",
            "domain": "global",
            "reason": "authError",
            "location": "Authorization",
            "locationType": "header",
        }
        async with session.post(f"{base}/revoke", data={"token": "unknown"}) as response:
            assert response.status == 400


# ------------------------------------------------------------------------------- messages


async def test_list_pages_through_1200_messages(gmail_emulator: GmailEmulator) -> None:
    gmail_emulator.generate(USER, 1200, seed=3)
    gmail = service(gmail_emulator.base_url, gmail_emulator.issue_tokens(USER))
    state = gmail_emulator.state(USER)

    def list_all() -> tuple[list[str], list[int]]:
        ids: list[str] = []
        sizes: list[int] = []
        request = gmail.users().messages().list(userId="me", maxResults=500, includeSpamTrash=True)
        while request is not None:
            page = request.execute()
            sizes.append(len(page["messages"]))
            ids += [item["id"] for item in page["messages"]]
            request = gmail.users().messages().list_next(request, page)
        return ids, sizes

    ids, sizes = await in_thread(list_all)
    assert sizes == [500, 500, 200]
    assert sorted(ids) == sorted(state)
    dates = [state[message_id]["internalDate"] for message_id in ids]
    assert dates == sorted(dates, reverse=True)  # newest first

    first = await in_thread(gmail.users().messages().list(userId="me").execute)
    hidden = sum(1 for info in state.values() if {"SPAM", "TRASH"} & set(info["labelIds"]))
    assert hidden > 0 and len(first["messages"]) == 100
    assert first["resultSizeEstimate"] == 1200 - hidden


async def test_include_spam_trash_and_date_queries(gmail_emulator: GmailEmulator) -> None:
    day = 86_400_000
    jan_1 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
    inbox = gmail_emulator.add_message(USER, message("inbox"), ["INBOX"], jan_1 + day)
    spam = gmail_emulator.add_message(USER, message("spam"), ["SPAM"], jan_1 + 2 * day)
    trash = gmail_emulator.add_message(USER, message("trash"), ["TRASH"], jan_1 + 3 * day)
    later = gmail_emulator.add_message(USER, message("later"), ["INBOX", "UNREAD"], jan_1 + 10 * day)
    gmail = service(gmail_emulator.base_url, gmail_emulator.issue_tokens(USER))

    def ids(**params: Any) -> list[str]:
        return [
            item["id"]
            for item in gmail.users().messages().list(userId="me", **params).execute().get("messages", [])
        ]

    assert await in_thread(ids) == [later, inbox]
    assert await in_thread(lambda: ids(includeSpamTrash=True)) == [later, trash, spam, inbox]
    assert await in_thread(lambda: ids(labelIds=["SPAM"])) == [spam]
    assert await in_thread(lambda: ids(labelIds=["INBOX", "UNREAD"])) == [later]
    assert await in_thread(lambda: ids(q="in:trash")) == [trash]
    after = (jan_1 + 2 * day) // 1000
    assert await in_thread(lambda: ids(q=f"after:{after}", includeSpamTrash=True)) == [later, trash, spam]
    # YYYY/MM/DD is midnight Pacific time (UTC-8), as Gmail documents.
    assert await in_thread(lambda: ids(q="after:2025/01/01 before:2025/01/05", includeSpamTrash=True)) == [
        trash,
        spam,
        inbox,
    ]
    assert await in_thread(lambda: ids(q="before:2025/01/02")) == [inbox]
    assert await in_thread(lambda: ids(q="is:unread")) == [later]
    partial = await in_thread(gmail.users().messages().list(userId="me", fields="messages/id").execute)
    assert partial == {"messages": [{"id": later}, {"id": inbox}]}
    empty = await in_thread(gmail.users().messages().list(userId="me", q="after:2030/01/01").execute)
    assert empty == {"resultSizeEstimate": 0}  # no "messages" key, as Gmail answers


async def test_get_in_every_format(gmail_emulator: GmailEmulator) -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 20
    raw = message("Quote for Q3", body="Please find the quote attached.", attachment=pdf)
    message_id = gmail_emulator.add_message(USER, raw, ["INBOX", "UNREAD"])
    gmail = service(gmail_emulator.base_url, gmail_emulator.issue_tokens(USER))
    messages = gmail.users().messages()

    fetched = await in_thread(messages.get(userId="me", id=message_id, format="raw").execute)
    assert base64.urlsafe_b64decode(fetched["raw"]) == raw
    assert fetched["sizeEstimate"] == len(raw) and fetched["labelIds"] == ["INBOX", "UNREAD"]
    assert fetched["historyId"].isdigit() and fetched["internalDate"].isdigit() and "payload" not in fetched

    minimal = await in_thread(messages.get(userId="me", id=message_id, format="minimal").execute)
    assert set(minimal) == {
        "id",
        "threadId",
        "labelIds",
        "snippet",
        "sizeEstimate",
        "historyId",
        "internalDate",
    }
    assert minimal["snippet"] == "Please find the quote attached."

    metadata = await in_thread(
        messages.get(
            userId="me", id=message_id, format="metadata", metadataHeaders=["Subject", "from"]
        ).execute
    )
    assert metadata["payload"]["headers"] == [
        {"name": "From", "value": "Ben <ben@northwind.test>"},
        {"name": "Subject", "value": "Quote for Q3"},
    ]

    full = await in_thread(messages.get(userId="me", id=message_id).execute)
    payload = full["payload"]
    assert payload["partId"] == "" and payload["mimeType"] == "multipart/mixed"
    text, attachment = payload["parts"]
    assert text["partId"] == "0" and text["mimeType"] == "text/plain"
    assert base64.urlsafe_b64decode(text["body"]["data"] + "==").strip() == b"Please find the quote attached."
    assert attachment["filename"] == "quote.pdf" and attachment["body"]["size"] == len(pdf)
    assert "data" not in attachment["body"]
    got = await in_thread(
        messages.attachments()
        .get(userId="me", messageId=message_id, id=attachment["body"]["attachmentId"])
        .execute
    )
    assert got["size"] == len(pdf)
    assert base64.urlsafe_b64decode(got["data"] + "=" * (-len(got["data"]) % 4)) == pdf

    with pytest.raises(HttpError) as missing:
        await in_thread(messages.get(userId="me", id="19000000000000ff").execute)
    assert missing.value.resp.status == 404
    assert error_body(missing.value) == {
        "error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "errors": [
                {"message": "Requested entity was not found.", "domain": "global", "reason": "notFound"}
            ],
            "status": "NOT_FOUND",
        }
    }


async def test_send_insert_threads_and_labels(gmail_emulator: GmailEmulator) -> None:
    first = message("Kick-off", message_id="<kickoff@northwind.test>")
    first_id = gmail_emulator.add_message(USER, first, ["INBOX"])
    tokens = gmail_emulator.issue_tokens(USER)
    gmail = service(gmail_emulator.base_url, tokens)
    messages = gmail.users().messages()
    reply = message(
        "Re: Kick-off",
        sender=USER,
        to="ben@northwind.test",
        In_Reply_To="<kickoff@northwind.test>",
        References="<kickoff@northwind.test>",
    )
    sent = await in_thread(
        messages.send(userId="me", body={"raw": base64.urlsafe_b64encode(reply).decode()}).execute
    )
    assert sent["labelIds"] == ["SENT"] and sent["threadId"] == first_id  # the reply joins the thread

    # googleapiclient keeps https:// for media uploads when only client_options' api_endpoint
    # changes; a service built from the emulator's discovery document gets http:// right.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{gmail_emulator.base_url}/$discovery/rest?version=v1") as response,
    ):
        document = await response.text()
    from_document = build_from_document(document, credentials=credentials(gmail_emulator.base_url, tokens))
    upload = MediaIoBaseUpload(io.BytesIO(message("Uploaded", to="zoe@lin.test")), "message/rfc822")
    uploaded = await in_thread(
        from_document.users().messages().send(userId="me", body={}, media_body=upload).execute
    )
    assert uploaded["threadId"] == uploaded["id"] and uploaded["labelIds"] == ["SENT"]
    async with aiohttp.ClientSession() as session:
        headers = {
            "Authorization": f"Bearer {gmail_emulator.issue_tokens(USER)['access_token']}",
            "Content-Type": "message/rfc822",
        }
        url = f"{gmail_emulator.base_url}/upload/gmail/v1/users/me/messages/send?uploadType=media"
        async with session.post(url, data=message("Media", to="zoe@lin.test"), headers=headers) as response:
            assert response.status == 200
            media_id = (await response.json())["id"]
    assert gmail_emulator.raw(USER, media_id).endswith(b"Hello there.\n")

    with pytest.raises(HttpError) as no_recipient:
        raw = base64.urlsafe_b64encode(b"Subject: nobody\r\n\r\nhi").decode()
        await in_thread(messages.send(userId="me", body={"raw": raw}).execute)
    assert no_recipient.value.resp.status == 400 and "Recipient address required" in str(no_recipient.value)

    inserted = await in_thread(
        messages.insert(
            userId="me",
            body={"raw": base64.urlsafe_b64encode(message("Imported")).decode(), "labelIds": ["INBOX"]},
        ).execute
    )
    assert inserted["labelIds"] == ["INBOX"]

    thread = await in_thread(gmail.users().threads().get(userId="me", id=first_id, format="minimal").execute)
    assert [item["id"] for item in thread["messages"]] == [first_id, sent["id"]]
    threads = await in_thread(gmail.users().threads().list(userId="me", includeSpamTrash=True).execute)
    assert [item["id"] for item in threads["threads"]].count(first_id) == 1

    label = await in_thread(gmail.users().labels().create(userId="me", body={"name": "Customers"}).execute)
    assert label["id"].startswith("Label_") and label["type"] == "user"
    with pytest.raises(HttpError) as duplicate:
        await in_thread(gmail.users().labels().create(userId="me", body={"name": "customers"}).execute)
    assert duplicate.value.resp.status == 409
    await in_thread(messages.modify(userId="me", id=first_id, body={"addLabelIds": [label["id"]]}).execute)
    counted = await in_thread(gmail.users().labels().get(userId="me", id=label["id"]).execute)
    assert counted["messagesTotal"] == 1 and counted["threadsTotal"] == 1
    names = {
        item["id"] for item in (await in_thread(gmail.users().labels().list(userId="me").execute))["labels"]
    }
    assert {
        "INBOX",
        "SENT",
        "DRAFT",
        "SPAM",
        "TRASH",
        "UNREAD",
        "STARRED",
        "IMPORTANT",
        "CATEGORY_SOCIAL",
    } <= names


async def test_trash_batch_modify_and_batch_delete(gmail_emulator: GmailEmulator) -> None:
    gmail_emulator.generate(USER, 12, seed=9)
    ids = sorted(gmail_emulator.state(USER))
    gmail = service(gmail_emulator.base_url, gmail_emulator.issue_tokens(USER))
    messages = gmail.users().messages()
    trashed = await in_thread(messages.trash(userId="me", id=ids[0]).execute)
    assert "TRASH" in trashed["labelIds"] and "SPAM" not in trashed["labelIds"]
    listed = await in_thread(messages.list(userId="me", maxResults=500).execute)
    assert ids[0] not in {item["id"] for item in listed["messages"]}
    untrashed = await in_thread(messages.untrash(userId="me", id=ids[0]).execute)
    assert "TRASH" not in untrashed.get("labelIds", [])

    body = {"ids": ids[:5], "addLabelIds": ["STARRED"], "removeLabelIds": ["UNREAD"]}
    assert await in_thread(messages.batchModify(userId="me", body=body).execute) == ""
    state = gmail_emulator.state(USER)
    assert all("STARRED" in state[i]["labelIds"] and "UNREAD" not in state[i]["labelIds"] for i in ids[:5])
    with pytest.raises(HttpError) as too_many:
        await in_thread(messages.batchModify(userId="me", body={"ids": ["1"] * 1001}).execute)
    assert "Number of ids cannot exceed 1000" in str(too_many.value)

    await in_thread(messages.batchDelete(userId="me", body={"ids": [*ids[:3], "1900000000000fff"]}).execute)
    assert sorted(gmail_emulator.state(USER)) == ids[3:]
    thread_id = gmail_emulator.state(USER)[ids[5]]["threadId"]
    await in_thread(gmail.users().threads().trash(userId="me", id=thread_id).execute)
    assert all(
        "TRASH" in info["labelIds"]
        for info in gmail_emulator.state(USER).values()
        if info["threadId"] == thread_id
    )


# -------------------------------------------------------------------------------- history


async def test_history_records_changes_in_order(gmail_emulator: GmailEmulator) -> None:
    gmail_emulator.add_user(USER)
    gmail = service(gmail_emulator.base_url, gmail_emulator.issue_tokens(USER))
    start = (await in_thread(gmail.users().getProfile(userId="me").execute))["historyId"]

    message_id = gmail_emulator.add_message(USER, message("new"), ["INBOX", "UNREAD"])
    await in_thread(
        gmail.users()
        .messages()
        .modify(userId="me", id=message_id, body={"addLabelIds": ["STARRED"], "removeLabelIds": ["UNREAD"]})
        .execute
    )
    gmail_emulator.modify_labels(USER, message_id, add=["IMPORTANT"])
    await in_thread(gmail.users().messages().delete(userId="me", id=message_id).execute)

    def history(**params: Any) -> dict[str, Any]:
        result: dict[str, Any] = (
            gmail.users().history().list(userId="me", startHistoryId=start, **params).execute()
        )
        return result

    everything = await in_thread(history)
    records = everything["history"]
    assert [sorted(set(record) - {"id", "messages"}) for record in records] == [
        ["messagesAdded"],
        ["labelsAdded", "labelsRemoved"],
        ["labelsAdded"],
        ["messagesDeleted"],
    ]
    ids = [int(record["id"]) for record in records]
    assert ids == sorted(ids) and ids[0] > int(start)
    assert everything["historyId"] == str(ids[-1])
    assert records[0]["messagesAdded"][0]["message"] == {
        "id": message_id,
        "threadId": message_id,
        "labelIds": ["INBOX", "UNREAD"],
    }
    assert records[1]["labelsAdded"][0]["labelIds"] == ["STARRED"]
    assert records[1]["labelsRemoved"][0]["labelIds"] == ["UNREAD"]
    assert records[3]["messagesDeleted"][0]["message"]["id"] == message_id

    added_only = await in_thread(lambda: history(historyTypes=["labelAdded"]))
    assert [list(record["labelsAdded"][0]["labelIds"]) for record in added_only["history"]] == [
        ["STARRED"],
        ["IMPORTANT"],
    ]
    assert all("labelsRemoved" not in record for record in added_only["history"])
    paged = await in_thread(lambda: history(maxResults=3))
    assert len(paged["history"]) == 3 and paged["nextPageToken"]
    rest = await in_thread(lambda: history(maxResults=3, pageToken=paged["nextPageToken"]))
    assert [record["id"] for record in rest["history"]] == [str(ids[-1])] and "nextPageToken" not in rest

    gmail_emulator.expire_history(USER)
    with pytest.raises(HttpError) as expired:
        await in_thread(history)
    assert expired.value.resp.status == 404
    assert error_body(expired.value)["error"]["errors"][0]["reason"] == "notFound"
    current = str(gmail_emulator.history_id(USER))
    assert "history" not in await in_thread(
        gmail.users().history().list(userId="me", startHistoryId=current).execute
    )


async def test_history_retention_limit(gmail_emulator_factory: GmailEmulatorFactory) -> None:
    gmail_emulator = await gmail_emulator_factory(history_retention=10)
    gmail_emulator.add_user(USER)
    start = gmail_emulator.history_id(USER)
    for index in range(15):
        gmail_emulator.add_message(USER, message(f"m{index}"))
    gmail = service(gmail_emulator.base_url, gmail_emulator.issue_tokens(USER))
    with pytest.raises(HttpError) as expired:
        await in_thread(gmail.users().history().list(userId="me", startHistoryId=str(start)).execute)
    assert expired.value.resp.status == 404
    recent = await in_thread(gmail.users().history().list(userId="me", startHistoryId=str(start + 5)).execute)
    assert len(recent["history"]) == 10


# ---------------------------------------------------------------------------------- batch


async def test_batch_of_50_gets_with_a_missing_id(gmail_emulator: GmailEmulator) -> None:
    gmail_emulator.generate(USER, 60, seed=5)
    base = gmail_emulator.base_url
    ids = sorted(gmail_emulator.state(USER))[:50]
    tokens = gmail_emulator.issue_tokens(USER)
    gmail = service(base, tokens)
    results: dict[str, tuple[Any, Any]] = {}

    def callback(request_id: str, response: Any, exception: Any) -> None:
        results[request_id] = (response, exception)

    def run_batch() -> None:
        batch = BatchHttpRequest(callback=callback, batch_uri=f"{base}/batch")
        for message_id in [*ids, "1900000000000fff"]:
            batch.add(
                gmail.users().messages().get(userId="me", id=message_id, format="raw"), request_id=message_id
            )
        batch.execute()

    await in_thread(run_batch)
    assert len(results) == 51
    for message_id in ids:
        response, exception = results[message_id]
        assert exception is None and response["id"] == message_id
        assert base64.urlsafe_b64decode(response["raw"]) == gmail_emulator.raw(USER, message_id)
    assert results["1900000000000fff"][0] is None
    assert results["1900000000000fff"][1].resp.status == 404
    assert gmail_emulator.stats.batch_parts == 51
    assert gmail_emulator.stats.requests_per_method["users.messages.get"] == 51

    # A service built from the emulator's discovery document sends batches to the emulator itself.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/discovery/v1/apis/gmail/v1/rest") as response,
    ):
        document = await response.text()
    # google-auth leaves Credentials.__init__ unannotated.
    credentials = google.oauth2.credentials.Credentials(token=tokens["access_token"])  # type: ignore[no-untyped-call]
    from_document = build_from_document(document, credentials=credentials)
    labelled: list[str] = []

    def run_document_batch() -> None:
        batch = from_document.new_batch_http_request(
            callback=lambda _, response, __: labelled.append(response["id"])
        )
        for message_id in ids[:3]:
            batch.add(
                from_document.users()
                .messages()
                .modify(userId="me", id=message_id, body={"addLabelIds": ["STARRED"]})
            )
        batch.execute()

    await in_thread(run_document_batch)
    assert labelled == ids[:3]
    assert all("STARRED" in gmail_emulator.state(USER)[message_id]["labelIds"] for message_id in ids[:3])


async def test_batch_over_100_parts_is_refused(gmail_emulator: GmailEmulator) -> None:
    gmail_emulator.generate(USER, 5)
    base = gmail_emulator.base_url
    gmail = service(base, gmail_emulator.issue_tokens(USER))

    def run_batch() -> None:
        batch = BatchHttpRequest(batch_uri=f"{base}/batch")
        for _ in range(101):
            batch.add(gmail.users().getProfile(userId="me"))
        batch.execute()

    with pytest.raises(HttpError) as refused:
        await in_thread(run_batch)
    assert refused.value.resp.status == 400
    assert "Inner request count exceeds the limit. Received: 101, Limit: 100" in str(refused.value)


# ---------------------------------------------------------------------- quota and faults


async def test_legacy_quota_answers_429_after_the_burst(gmail_emulator_factory: GmailEmulatorFactory) -> None:
    gmail_emulator = await gmail_emulator_factory(quota="legacy")
    gmail_emulator.generate(USER, 5)
    message_id = next(iter(gmail_emulator.state(USER)))
    token = gmail_emulator.issue_tokens(USER)["access_token"]
    content_type, body = batch_request([message_id] * 60)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gmail_emulator.base_url}/batch/gmail/v1",
            data=body,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
        ) as response,
    ):
        answers = batch_answers(response.headers["Content-Type"], await response.read())
    statuses = [status for _, status, _ in answers]
    assert [content_id for content_id, _, _ in answers] == [f"<response-{index}>" for index in range(60)]
    ok = statuses.count(200)
    assert 50 <= ok <= 51 and statuses == [200] * ok + [429] * (60 - ok)  # 250 units / 5 per get
    error = answers[-1][2]["error"]
    assert error["code"] == 429 and error["status"] == "RESOURCE_EXHAUSTED"
    assert error["message"].startswith("User-rate limit exceeded.  Retry after 20")
    assert error["errors"] == [
        {"message": error["message"], "domain": "usageLimits", "reason": "rateLimitExceeded"}
    ]
    assert gmail_emulator.stats.quota_errors == 60 - ok == gmail_emulator.stats.quota_errors_user
    assert gmail_emulator.stats.units_charged == 5 * ok

    await asyncio.sleep(0.05)  # 250 units per second refill: 12 units, two more gets
    gmail_emulator.set_quota("off")
    gmail = service(gmail_emulator.base_url, {"access_token": token})
    assert (await in_thread(gmail.users().getProfile(userId="me").execute))["emailAddress"] == USER


async def test_project_quota_answers_403_and_the_2026_regime_costs_20() -> None:
    now = [0.0]
    gate = QuotaGate("legacy", "mailray-dev", clock=lambda: now[0])
    calls = 0
    while True:  # 1,200,000 units a minute shared by every user of the project
        _, error = gate.charge(f"user{calls // 50}@acme.test", "users.messages.get")
        if error is not None:
            break
        calls += 1
    assert calls == 1_200_000 // 5
    body = error.to_dict()["error"]
    assert error.code == 403 and body["status"] == "PERMISSION_DENIED"
    assert body["errors"][0]["reason"] == "rateLimitExceeded" and body["errors"][0]["domain"] == "usageLimits"
    now[0] += 1.0  # 20,000 units a second come back
    assert gate.charge("fresh@acme.test", "users.messages.get") == (5, None)

    gate.set_regime("2026")
    assert gate.cost("users.messages.get") == 20 and gate.cost("users.history.list") == 2
    granted = sum(gate.charge(USER, "users.messages.get")[1] is None for _ in range(400))
    assert granted == 6_000 // 20  # one minute's units, then 429


async def test_faults_and_dropped_connections(gmail_emulator_factory: GmailEmulatorFactory) -> None:
    gmail_emulator = await gmail_emulator_factory(fault_rate=1.0)
    gmail_emulator.generate(USER, 3)
    gmail = service(gmail_emulator.base_url, gmail_emulator.issue_tokens(USER))
    with pytest.raises(HttpError) as failed:
        await in_thread(gmail.users().getProfile(userId="me").execute)
    assert failed.value.resp.status in {500, 503}
    assert error_body(failed.value)["error"]["errors"][0]["reason"] == "backendError"

    ids = list(gmail_emulator.state(USER))
    token = gmail_emulator.issue_tokens(USER)["access_token"]
    content_type, body = batch_request(ids)
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gmail_emulator.base_url}/batch", data=body, headers=headers) as response:
            assert response.status == 200
            answers = batch_answers(response.headers["Content-Type"], await response.read())
        assert all(status in {500, 503} for _, status, _ in answers)
        assert gmail_emulator.stats.faults_injected == 4

        gmail_emulator.set_faults(fault_rate=0.0, drop_rate=1.0)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.get(f"{gmail_emulator.base_url}/gmail/v1/users/me/profile", headers=headers):
                pass
        assert gmail_emulator.stats.connections_dropped >= 1  # aiohttp retries once on a reused connection

        async with EmulatorAdmin(gmail_emulator.base_url) as admin:
            await admin.set_faults(drop_rate=0.0, latency_ms=50)
            started = time.perf_counter()
            async with session.get(
                f"{gmail_emulator.base_url}/gmail/v1/users/me/profile", headers=headers
            ) as response:
                assert response.status == 200
            assert time.perf_counter() - started >= 0.05
            assert (await admin.stats()).faults_injected == 4


# ----------------------------------------------------------------------------------- push


async def test_watch_pushes_signed_notifications_at_most_once_a_second(
    gmail_emulator_factory: GmailEmulatorFactory,
) -> None:
    received: list[tuple[float, dict[str, Any], str]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((time.monotonic(), await request.json(), request.headers["Authorization"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/push", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        gmail_emulator = await gmail_emulator_factory(
            push_url=f"http://127.0.0.1:{port}/push", push_audience="mailray-push"
        )
        gmail_emulator.add_user(USER)
        gmail = service(gmail_emulator.base_url, gmail_emulator.issue_tokens(USER))
        watch = await in_thread(
            gmail.users()
            .watch(
                userId="me", body={"topicName": "projects/mailray-dev/topics/gmail", "labelIds": ["INBOX"]}
            )
            .execute
        )
        assert int(watch["expiration"]) > (time.time() + 6.9 * 86400) * 1000
        assert watch["historyId"] == str(gmail_emulator.history_id(USER))

        gmail_emulator.add_message(USER, message("one"), ["SENT"])  # not INBOX: no notification
        await asyncio.sleep(0.2)
        assert received == []

        async def pushes(count: int) -> None:
            deadline = time.monotonic() + 3
            while len(received) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.02)

        gmail_emulator.add_message(USER, message("inbox"))
        await pushes(1)
        assert len(received) == 1
        for index in range(4):  # within the second after the first push: one more, a second later
            gmail_emulator.add_message(USER, message(f"inbox {index}"))
            await asyncio.sleep(0.05)
        await pushes(2)
        await asyncio.sleep(0.3)
        assert len(received) == 2
        assert received[1][0] - received[0][0] >= 0.95

        _, envelope, authorization = received[-1]
        assert envelope["subscription"] == "projects/mailray-dev/subscriptions/gmail-push"
        data = json.loads(base64.b64decode(envelope["message"]["data"]))
        assert data == {"emailAddress": USER, "historyId": gmail_emulator.history_id(USER)}
        assert envelope["message"]["messageId"] == envelope["message"]["message_id"]
        token = authorization.removeprefix("Bearer ")
        claims = await in_thread(
            lambda: id_token.verify_token(
                token,
                google_auth_httplib2.Request(httplib2.Http()),
                audience="mailray-push",
                certs_url=f"{gmail_emulator.base_url}/oauth2/v1/certs",
            )
        )
        assert (
            claims["email"] == "gmail-push@mailray-dev.iam.gserviceaccount.com" and claims["email_verified"]
        )
        assert gmail_emulator.stats.pushes_sent == 2

        gmail_emulator.set_faults(push_drop_rate=1.0)
        await asyncio.sleep(1.0)
        gmail_emulator.add_message(USER, message("dropped"))
        await asyncio.sleep(0.3)
        assert len(received) == 2 and gmail_emulator.stats.pushes_dropped == 1

        await in_thread(gmail.users().stop(userId="me").execute)
        with pytest.raises(HttpError) as bad_topic:
            await in_thread(
                gmail.users().watch(userId="me", body={"topicName": "projects/other/topics/x"}).execute
            )
        assert bad_topic.value.resp.status == 400
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------------ corpus, generate


async def test_the_spamassassin_corpus_loads_and_round_trips(gmail_emulator: GmailEmulator) -> None:
    files = sorted(path for path in CORPUS.rglob("*") if path.is_file())
    assert len(files) == 3250
    count = gmail_emulator.load_mailbox(USER, CORPUS)
    assert count == 3250
    # Most files start with an mbox "From " line, which the loader drops; a few start with headers.
    expected = Counter(
        hashlib.sha256(data.split(b"\n", 1)[1] if data.startswith(b"From ") else data).hexdigest()
        for data in (path.read_bytes() for path in files)
    )
    state = gmail_emulator.state(USER)
    assert sum("SPAM" in info["labelIds"] for info in state.values()) == 500
    assert any("UNREAD" in info["labelIds"] for info in state.values())
    assert (
        sum(
            len(gmail_emulator.mailboxes[USER].threads.members(thread)) > 1
            for thread in {i["threadId"] for i in state.values()}
        )
        > 100
    )

    token = gmail_emulator.issue_tokens(USER)["access_token"]
    ids = list(state)
    fetched: Counter[str] = Counter()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        for start in range(0, len(ids), 100):
            content_type, body = batch_request(ids[start : start + 100])
            async with session.post(
                f"{gmail_emulator.base_url}/batch", data=body, headers={"Content-Type": content_type}
            ) as response:
                answers = batch_answers(response.headers["Content-Type"], await response.read())
            for _, status, answer in answers:
                assert status == 200
                fetched[hashlib.sha256(base64.urlsafe_b64decode(answer["raw"])).hexdigest()] += 1
    assert fetched == expected


async def test_maildir_and_mbox_load_as_they_are(gmail_emulator: GmailEmulator, tmp_path: Path) -> None:
    maildir = tmp_path / "mail" / "Junk"
    for folder in ("cur", "new", "tmp"):
        (maildir / folder).mkdir(parents=True)
    seen = message("seen", message_id="<seen@x.test>")
    fresh = message("fresh", In_Reply_To="<seen@x.test>")
    (maildir / "cur" / "1.host:2,S").write_bytes(seen)
    (maildir / "new" / "2.host").write_bytes(fresh)
    (maildir / "tmp" / "3.host").write_bytes(message("being delivered"))
    (tmp_path / "mail" / "README.md").write_text("# not mail\n")
    first = message("first", date="Tue, 07 Jan 2025 10:00:00 +0100")
    second = b"Subject: second\nFrom: x@y.test\n\nbody\n>From the start\n"
    (tmp_path / "mail" / "archive.mbox").write_bytes(
        b"From a@b Mon Jan  6 09:00:00 2025\n" + first + b"\nFrom c@d Mon Jan  6 10:00:00 2025\n" + second
    )
    assert gmail_emulator.load_mailbox(USER, tmp_path / "mail") == 4
    by_raw = {
        gmail_emulator.raw(USER, message_id): info for message_id, info in gmail_emulator.state(USER).items()
    }
    assert by_raw[seen]["labelIds"] == ["SPAM"] and by_raw[fresh]["labelIds"] == ["SPAM", "UNREAD"]
    assert by_raw[fresh]["threadId"] == by_raw[seen]["threadId"]
    assert by_raw[first]["internalDate"] == 1_736_240_400_000
    assert by_raw[b"Subject: second\nFrom: x@y.test\n\nbody\nFrom the start\n"]["labelIds"][0] == "INBOX"
    single = tmp_path / "one.mbox"
    single.write_bytes(b"From someone Mon Jan  6 09:00:00 2025\n" + first)
    assert gmail_emulator.load_mailbox("other@acme.test", single) == 1
    assert next(iter(gmail_emulator.state("other@acme.test").values()))["labelIds"][0] == "INBOX"


async def test_generate_makes_threads_attachments_and_charsets(gmail_emulator: GmailEmulator) -> None:
    assert gmail_emulator.generate(USER, 300, seed=11) == 300
    state = gmail_emulator.state(USER)
    raws = {message_id: gmail_emulator.raw(USER, message_id) for message_id in state}
    replies = [message_id for message_id, raw in raws.items() if b"\r\nIn-Reply-To: " in raw]
    assert len(replies) > 50
    threads = Counter(info["threadId"] for info in state.values())
    assert max(threads.values()) >= 3
    for message_id in replies:  # a reply sits in its parent's thread
        parent = raws[message_id].split(b"\r\nIn-Reply-To: ", 1)[1].split(b"\r\n", 1)[0]
        parent_id = next(
            other for other, raw in raws.items() if b"\r\nMessage-ID: " + parent + b"\r\n" in raw
        )
        assert state[message_id]["threadId"] == state[parent_id]["threadId"]
    everything = b"".join(raws.values())
    for charset in (b"utf-8", b"iso-8859-1", b"windows-1252", b"koi8-r", b"iso-2022-jp"):
        assert b'charset="' + charset + b'"' in everything
    assert b"multipart/alternative" in everything and b"Content-Disposition: attachment" in everything
    assert sum("SENT" in info["labelIds"] for info in state.values()) > 20

    other = GmailEmulator(EmulatorConfig())  # the same seed gives the same mail
    other.generate(USER, 300, seed=11)
    assert [other.raw(USER, message_id) for message_id in other.state(USER)] == list(raws.values())

    gmail = service(gmail_emulator.base_url, gmail_emulator.issue_tokens(USER))
    with_attachment = next(
        message_id for message_id, raw in raws.items() if b"Content-Disposition: attachment" in raw
    )
    full = await in_thread(gmail.users().messages().get(userId="me", id=with_attachment).execute)
    assert any(part["body"].get("attachmentId") for part in full["payload"]["parts"][1:])
    found = await in_thread(
        gmail.users().messages().list(userId="me", q="has:attachment", maxResults=500).execute
    )
    assert with_attachment in {item["id"] for item in found["messages"]}


# -------------------------------------------------------------------------------- errors


async def test_malformed_requests_get_google_style_400s(gmail_emulator: GmailEmulator) -> None:
    gmail_emulator.generate(USER, 3)
    message_id = next(iter(gmail_emulator.state(USER)))
    token = gmail_emulator.issue_tokens(USER)["access_token"]
    api = f"{gmail_emulator.base_url}/gmail/v1/users/me"
    cases: list[tuple[str, str, bytes | None, int]] = [
        ("GET", f"/messages/{message_id}?format=bogus", None, 400),
        ("GET", "/messages/not-an-id", None, 400),
        ("GET", "/messages?pageToken=zzz", None, 400),
        ("GET", "/messages?maxResults=-4", None, 400),
        ("GET", "/messages?includeSpamTrash=maybe", None, 400),
        ("GET", "/messages?q=%22unbalanced", None, 400),
        ("GET", "/history", None, 400),
        ("GET", "/history?startHistoryId=abc", None, 400),
        ("GET", "/history?startHistoryId=1&historyTypes=everything", None, 400),
        ("POST", f"/messages/{message_id}/modify", b"{not json", 400),
        ("POST", f"/messages/{message_id}/modify", b'{"addLabelIds": "INBOX"}', 400),
        ("POST", f"/messages/{message_id}/modify", b'{"addLabelIds": ["Label_404"]}', 400),
        ("POST", "/messages/send", b'{"raw": "***"}', 400),
        ("POST", "/messages/send", b"[]", 400),
        ("POST", "/messages/batchModify", b'{"ids": ["a"], "addLabelIds": 5}', 400),
        ("POST", "/labels", b'{"name": "INBOX"}', 400),
        ("POST", "/watch", b"{}", 400),
        ("GET", "/nowhere", None, 404),
        ("GET", f"/messages/{message_id}/attachments/bogus", None, 400),
        ("GET", "/messages/1900000000000abc/attachments/bogus", None, 404),
    ]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        for method, path, data, status in cases:
            async with session.request(method, api + path, data=data) as response:
                body = await response.json()
                assert response.status == status, (method, path, body)
                assert body["error"]["code"] == status and body["error"]["errors"][0]["reason"], (path, body)
                assert "Traceback" not in json.dumps(body)
        async with session.post(
            f"{gmail_emulator.base_url}/batch", data=b"x", headers={"Content-Type": "text/plain"}
        ) as response:
            assert response.status == 400
        async with session.get(
            f"{gmail_emulator.base_url}/gmail/v1/users/someone@else.test/profile"
        ) as response:
            assert response.status == 403
        async with session.get(f"{gmail_emulator.base_url}/o/oauth2/auth?client_id=other") as response:
            assert response.status == 401
        async with session.post(
            f"{gmail_emulator.base_url}/token", data={"grant_type": "password"}
        ) as response:
            assert (await response.json())["error"] == "unsupported_grant_type"


# ----------------------------------------------------------------------- admin client, CLI


async def test_admin_client_over_http(gmail_emulator: GmailEmulator) -> None:
    async with EmulatorAdmin(gmail_emulator.base_url) as admin:
        await admin.add_user(USER)
        label = await admin.create_label(USER, "Leads")
        message_id = await admin.add_message(USER, message("via admin"), ["INBOX", label], 1_700_000_000_000)
        assert await admin.raw(USER, message_id) == gmail_emulator.raw(USER, message_id)
        await admin.modify_labels(USER, message_id, add=["STARRED"], remove=[label])
        state = await admin.state(USER)
        assert state[message_id]["labelIds"] == ["INBOX", "STARRED"]
        assert state[message_id]["internalDate"] == 1_700_000_000_000
        assert await admin.generate(USER, 10, seed=1) == 10
        tokens = await admin.issue_tokens(USER)
        assert tokens["access_token"].startswith("ya29.")
        history_id = await admin.history_id(USER)
        await admin.delete_message(USER, message_id)
        assert await admin.history_id(USER) == history_id + 1
        await admin.expire_history(USER)
        await admin.expire_access_tokens()
        await admin.set_quota("2026")
        assert gmail_emulator.quota.name == "2026"
        with pytest.raises(KeyError):
            await admin.delete_message(USER, message_id)
        with pytest.raises(KeyError):
            await admin.state("nobody@acme.test")


async def test_cli_starts_the_emulator_and_mutates_it(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [MAILRAY, "emulator", "gmail", "--port", str(port), "--generate", "20", "--user", USER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert process.stdout is not None
        first_line = await in_thread(process.stdout.readline)
        assert first_line.startswith(f"Gmail emulator: http://127.0.0.1:{port}"), first_line
        base = f"http://127.0.0.1:{port}"
        async with EmulatorAdmin(base) as admin:
            tokens = await admin.issue_tokens(USER)
        gmail = service(base, tokens)
        assert (await in_thread(gmail.users().getProfile(userId="me").execute))["messagesTotal"] == 20

        path = tmp_path / "new.eml"
        path.write_bytes(message("from the CLI"))
        added = await in_thread(
            lambda: subprocess.run(
                [
                    MAILRAY,
                    "emulator",
                    "mutate",
                    "--url",
                    base,
                    "add",
                    "--user",
                    USER,
                    "--file",
                    str(path),
                    "--label",
                    "INBOX",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        )
        assert added.returncode == 0, added.stderr
        new_id = added.stdout.strip()
        fetched = await in_thread(
            gmail.users().messages().get(userId="me", id=new_id, format="minimal").execute
        )
        assert fetched["labelIds"] == ["INBOX"]
        missing = await in_thread(
            lambda: subprocess.run(
                [
                    MAILRAY,
                    "emulator",
                    "mutate",
                    "--url",
                    base,
                    "delete",
                    "--user",
                    USER,
                    "--id",
                    "1900000000000fff",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        )
        assert missing.returncode == 2 and missing.stderr.startswith("mailray: gmail emulator: no message")
    finally:
        process.send_signal(signal.SIGINT)
        await in_thread(lambda: process.wait(timeout=20))
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
