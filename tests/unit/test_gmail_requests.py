"""Gmail requests come from the discovery document, pointed at the configured endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from mail.gmail import discovery
from mail.gmail.api_request import ApiRequest
from mail.gmail.discovery import GmailRequests, discovery_document, gmail_service

ENDPOINT = "http://127.0.0.1:8765"


def _query(uri: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(uri).query)


def test_document_root_is_the_configured_endpoint() -> None:
    document = discovery_document(ENDPOINT + "/")
    assert document["rootUrl"] == ENDPOINT + "/"
    assert document["servicePath"] == ""
    # The shipped document itself is untouched: each call gets a fresh copy.
    assert discovery_document("http://elsewhere")["rootUrl"] == "http://elsewhere/"
    assert discovery_document(ENDPOINT)["rootUrl"] == ENDPOINT + "/"


def test_service_is_built_once_per_endpoint() -> None:
    assert gmail_service(ENDPOINT) is gmail_service(ENDPOINT)
    assert gmail_service(ENDPOINT) is not gmail_service("http://127.0.0.1:8766")


def test_message_get() -> None:
    request = GmailRequests(ENDPOINT + "/").get_message("18c0ffee", format="raw")
    assert request.method == "GET"
    assert request.method_id == "users.messages.get"
    assert request.uri.startswith(ENDPOINT + "/gmail/v1/users/me/messages/18c0ffee?")
    assert _query(request.uri)["format"] == ["raw"]
    assert request.path_and_query.startswith("/gmail/v1/users/me/messages/18c0ffee?")
    assert request.body is None
    # Transport-level headers are aiohttp's business; no credentials in a built request.
    assert "accept-encoding" not in request.headers
    assert "authorization" not in request.headers


@pytest.mark.parametrize("message_id", ["18c0ffee", "a/b?c#d", "Ünï cödé", "x%2Fy", "-._~", "100%"])
@pytest.mark.parametrize("format", ["raw", "full", "minimal", "metadata"])
def test_message_get_from_the_template_equals_the_library_request(message_id: str, format: str) -> None:
    requests = GmailRequests(ENDPOINT + "/")
    requests.get_message("warm-up", format=format)  # the template is made by the first call
    built = discovery.to_api_request(
        gmail_service(ENDPOINT).users().messages().get(userId="me", id=message_id, format=format)
    )
    assert requests.get_message(message_id, format=format) == built


def test_message_list_parameters() -> None:
    request = GmailRequests(ENDPOINT).list_messages(
        page_token="p2", max_results=100, q="from:ana@acme.test is:unread", label_ids=["INBOX", "SENT"]
    )
    assert request.method_id == "users.messages.list"
    assert urlsplit(request.uri).path == "/gmail/v1/users/me/messages"
    query = _query(request.uri)
    assert query["pageToken"] == ["p2"]
    assert query["maxResults"] == ["100"]
    assert query["q"] == ["from:ana@acme.test is:unread"]
    assert query["labelIds"] == ["INBOX", "SENT"]
    assert query["includeSpamTrash"] == ["true"]
    bare = _query(GmailRequests(ENDPOINT).list_messages(include_spam_trash=False).uri)
    assert "pageToken" not in bare and "q" not in bare and "labelIds" not in bare
    assert bare["includeSpamTrash"] == ["false"]


def test_history_list() -> None:
    request = GmailRequests(ENDPOINT).list_history(
        12345, page_token="next", history_types=["messageAdded", "labelRemoved"], max_results=50
    )
    assert request.method_id == "users.history.list"
    assert urlsplit(request.uri).path == "/gmail/v1/users/me/history"
    query = _query(request.uri)
    assert query["startHistoryId"] == ["12345"]
    assert query["historyTypes"] == ["messageAdded", "labelRemoved"]
    assert query["pageToken"] == ["next"]
    assert query["maxResults"] == ["50"]


def test_bodies_are_json() -> None:
    requests = GmailRequests(ENDPOINT)
    send = requests.send_message("UmF3", thread_id="t1")
    assert (send.method, send.method_id) == ("POST", "users.messages.send")
    assert urlsplit(send.uri).path == "/gmail/v1/users/me/messages/send"
    assert send.headers["content-type"] == "application/json"
    assert send.body is not None and json.loads(send.body) == {"raw": "UmF3", "threadId": "t1"}

    watch = requests.watch("projects/p/topics/gmail", ["INBOX"], "include")
    assert (watch.method, watch.method_id) == ("POST", "users.watch")
    assert watch.body is not None
    assert json.loads(watch.body)["topicName"] == "projects/p/topics/gmail"
    assert json.loads(watch.body)["labelIds"] == ["INBOX"]

    stop = requests.stop_watch()
    assert (stop.method, stop.method_id, stop.body) == ("POST", "users.stop", None)
    assert not stop.uri.endswith("?")


@pytest.mark.parametrize(
    ("build", "method_id", "path"),
    [
        (lambda r: r.get_profile(), "users.getProfile", "/gmail/v1/users/me/profile"),
        (lambda r: r.list_labels(), "users.labels.list", "/gmail/v1/users/me/labels"),
        (
            lambda r: r.get_attachment("m1", "a1"),
            "users.messages.attachments.get",
            "/gmail/v1/users/me/messages/m1/attachments/a1",
        ),
    ],
)
def test_other_calls(build: Callable[[GmailRequests], ApiRequest], method_id: str, path: str) -> None:
    request = build(GmailRequests(ENDPOINT))
    assert request.method == "GET"
    assert request.method_id == method_id
    assert urlsplit(request.uri).path == path


def test_endpoint_with_a_path_prefix() -> None:
    request = GmailRequests("http://127.0.0.1:8765/google").get_profile()
    assert request.uri.startswith("http://127.0.0.1:8765/google/gmail/v1/users/me/profile")
    assert request.path_and_query.startswith("/google/gmail/v1/users/me/profile")


def test_the_library_never_sends() -> None:
    http_request = gmail_service(ENDPOINT).users().getProfile(userId="me")
    with pytest.raises(RuntimeError, match=r"mail\.gmail\.transport"):
        http_request.execute()
    assert discovery.to_api_request(http_request).method_id == "users.getProfile"
