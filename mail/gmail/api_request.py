"""One HTTP exchange with the Gmail API, as plain values that no HTTP library owns.

`ApiRequest` is what `mail.gmail.discovery` builds from the discovery document and what
`mail.gmail.transport` sends, alone or as one part of a batch; `ApiResponse` is what comes back,
from a plain response or from one part of a multipart batch response. Requests carry no
credentials: the transport adds the access token current at the moment each attempt goes out.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import msgspec


class ApiRequest(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    uri: str  # absolute: the configured api_endpoint, path and query
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: bytes | None = None
    # As in the discovery document without the API name, e.g. users.messages.get: the key of
    # mail.gmail.quota_costs and of the error mapping (a 404 from users.history.list differs).
    method_id: str = ""

    @property
    def path_and_query(self) -> str:
        """The request target relative to the server, as a batch part's request line needs it."""
        parts = urlsplit(self.uri)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class ApiResponse(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    headers: dict[str, str] = msgspec.field(default_factory=dict)  # names in lower case
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300
