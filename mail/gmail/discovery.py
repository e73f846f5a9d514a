"""Gmail API requests built from the gmail.v1 discovery document, never from hand-written URLs.

google-api-python-client ships the document (`discovery_cache/documents/gmail.v1.json`); it is
read once, its `rootUrl` is replaced by the configured `api_endpoint` and `build_from_document`
makes one service per endpoint. A call such as
`service.users().messages().get(userId="me", id=..., format="raw")` then yields an HttpRequest
whose method, URI, headers and body are copied into an `ApiRequest`; nothing is executed by the
library (its http object refuses to be used), `mail.gmail.transport` sends the requests.

Pointing the library at another server with `client_options={"api_endpoint": ...}` would not be
enough: its batch requests would still go to Google. Here the batch URL is the transport's.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any
from urllib.parse import quote

import msgspec
from googleapiclient.discovery import build_from_document

from mail.gmail.api_request import ApiRequest

DOCUMENT = "discovery_cache/documents/gmail.v1.json"
# Headers googleapiclient adds for httplib2 that aiohttp manages itself.
_TRANSPORT_HEADERS = frozenset({"accept-encoding", "user-agent", "content-length"})
USER_ME = "me"
# Stands for a message id in a messages.get request the library built once: only unreserved
# characters, so its URI expansion leaves it as it is.
_ID_SLOT = "mailrayMessageIdSlot"


@functools.cache
def _document_text() -> str:
    return resources.files("googleapiclient").joinpath(DOCUMENT).read_text(encoding="utf-8")


def discovery_document(api_endpoint: str) -> dict[str, Any]:
    """A fresh copy of the gmail.v1 document whose rootUrl is `api_endpoint` (with a final /)."""
    document: dict[str, Any] = json.loads(_document_text())
    document["rootUrl"] = api_endpoint.rstrip("/") + "/"
    # The mTLS root would be chosen only with a client certificate; keep it on the same server.
    document["mtlsRootUrl"] = document["rootUrl"]
    return document


class _NoNetwork:
    """The `http` the service is built with: requests are built here, never sent."""

    def request(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("Gmail requests are sent by mail.gmail.transport, not by googleapiclient")


@functools.lru_cache(maxsize=16)
def gmail_service(api_endpoint: str) -> Any:
    """The googleapiclient Resource for `api_endpoint`, built once per endpoint."""
    return build_from_document(discovery_document(api_endpoint), http=_NoNetwork())


def to_api_request(http_request: Any) -> ApiRequest:
    """Copy a googleapiclient HttpRequest (not executed) into an ApiRequest."""
    headers = {
        str(name).lower(): str(value)
        for name, value in http_request.headers.items()
        if str(name).lower() not in _TRANSPORT_HEADERS
    }
    body = http_request.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    method_id = str(http_request.methodId)
    # The document names methods gmail.users.messages.get; quota tables drop the API name.
    method_id = method_id.removeprefix("gmail.")
    return ApiRequest(
        method=str(http_request.method).upper(),
        uri=str(http_request.uri).removesuffix("?"),
        headers=headers,
        body=body,
        method_id=method_id,
    )


class GmailRequests:
    """Typed builders for the Gmail calls mailray makes, for one API endpoint."""

    def __init__(self, api_endpoint: str) -> None:
        self.api_endpoint = api_endpoint.rstrip("/")
        self._users = gmail_service(self.api_endpoint).users()
        self._messages = self._users.messages()
        self._attachments = self._messages.attachments()
        self._labels = self._users.labels()
        self._history = self._users.history()
        self._get_templates: dict[str, ApiRequest] = {}

    def get_profile(self) -> ApiRequest:
        return to_api_request(self._users.getProfile(userId=USER_ME))

    def list_labels(self) -> ApiRequest:
        return to_api_request(self._labels.list(userId=USER_ME))

    def list_messages(
        self,
        *,
        page_token: str | None = None,
        max_results: int = 500,
        q: str | None = None,
        label_ids: Sequence[str] | None = None,
        include_spam_trash: bool = True,
    ) -> ApiRequest:
        params: dict[str, Any] = {"maxResults": max_results, "includeSpamTrash": include_spam_trash}
        if page_token:
            params["pageToken"] = page_token
        if q:
            params["q"] = q
        if label_ids:
            params["labelIds"] = list(label_ids)
        return to_api_request(self._messages.list(userId=USER_ME, **params))

    def get_message(self, message_id: str, *, format: str = "raw") -> ApiRequest:
        """The library builds a messages.get once per format, with a slot for the id; each
        request is that one with the id percent-encoded into the slot, as the library's URI
        template expansion encodes it (a full sync builds thousands; the library takes about
        0.1 ms for each)."""
        template = self._get_templates.get(format)
        if template is None:
            template = to_api_request(self._messages.get(userId=USER_ME, id=_ID_SLOT, format=format))
            self._get_templates[format] = template
        return msgspec.structs.replace(
            template, uri=template.uri.replace(_ID_SLOT, quote(message_id, safe=""))
        )

    def list_history(
        self,
        start_history_id: int,
        *,
        page_token: str | None = None,
        history_types: Sequence[str] = (),
        max_results: int = 500,
    ) -> ApiRequest:
        params: dict[str, Any] = {"startHistoryId": str(start_history_id), "maxResults": max_results}
        if page_token:
            params["pageToken"] = page_token
        if history_types:
            params["historyTypes"] = list(history_types)
        return to_api_request(self._history.list(userId=USER_ME, **params))

    def watch(self, topic_name: str, label_ids: Sequence[str], label_filter_action: str) -> ApiRequest:
        body = {
            "topicName": topic_name,
            "labelIds": list(label_ids),
            "labelFilterBehavior": label_filter_action,
            "labelFilterAction": label_filter_action,
        }
        return to_api_request(self._users.watch(userId=USER_ME, body=body))

    def stop_watch(self) -> ApiRequest:
        return to_api_request(self._users.stop(userId=USER_ME))

    def get_attachment(self, message_id: str, attachment_id: str) -> ApiRequest:
        return to_api_request(self._attachments.get(userId=USER_ME, messageId=message_id, id=attachment_id))

    def send_message(self, raw_base64url: str, *, thread_id: str | None = None) -> ApiRequest:
        body: dict[str, str] = {"raw": raw_base64url}
        if thread_id:
            body["threadId"] = thread_id
        return to_api_request(self._messages.send(userId=USER_ME, body=body))
