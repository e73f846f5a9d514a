"""A scripted stand-in for the Gmail API behind GmailTransport, for unit tests without a server.

It replaces the transport's one HTTP exchange, so everything above it (retries, batching,
quota charging, token handling, decoding) runs as in production. Single calls and batch parts
are answered from a script keyed by the last path segment of the call (a message id, or
"profile"); batch answers come back in reverse order, as Google's may.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Sequence

import aiohttp

from mail.gmail.api_request import ApiRequest, ApiResponse
from mail.gmail.transport import GmailTransport

# What the server does with one call: answer (status, extra headers), or None: drop it (a single
# call's connection is closed; a batch part is left out of the answer).
Answer = tuple[int, dict[str, str]] | None
Script = Callable[[str, int], Answer]  # (name, how often it was asked before) -> answer

_REASONS = {429: "rateLimitExceeded", 404: "notFound", 401: "authError", 400: "invalidArgument"}


def raw_of(name: str) -> bytes:
    return f"Subject: {name}\r\n\r\nbody of {name}\r\n".encode()


def _name(request: ApiRequest) -> str:
    return request.uri.split("?")[0].rsplit("/", 1)[1]


class FakeGmail:
    def __init__(
        self,
        script: Script = lambda name, seen: (200, {}),
        *,
        batch_status: Callable[[int], int] | None = None,
        valid_tokens: set[str] | None = None,
    ) -> None:
        self.script = script
        self.batch_status = batch_status
        self.valid_tokens = valid_tokens  # None: any token
        self.asked: dict[str, int] = {}
        self.exchanges: list[list[str]] = []  # call names per HTTP exchange
        self.charged: list[list[str]] = []
        self.tokens_seen: list[str] = []

    def install(self, transport: GmailTransport) -> GmailTransport:
        transport._exchange = self.exchange  # type: ignore[method-assign]
        return transport

    def _body(self, name: str) -> bytes:
        if name == "profile":
            return (
                b'{"emailAddress": "ana@acme.test", "messagesTotal": 1, "threadsTotal": 1, "historyId": "9"}'
            )
        raw = base64.urlsafe_b64encode(raw_of(name)).rstrip(b"=").decode()
        return json.dumps(
            {"id": name, "threadId": "t", "historyId": "9", "internalDate": "1", "raw": raw}
        ).encode()

    def _answer(self, request: ApiRequest, token: str) -> ApiResponse | None:
        name = _name(request)
        seen = self.asked.get(name, 0)
        self.asked[name] = seen + 1
        if self.valid_tokens is not None and token not in self.valid_tokens:
            answer: Answer = (401, {})
        else:
            answer = self.script(name, seen)
        if answer is None:
            return None
        status, headers = answer
        if status == 200:
            return ApiResponse(status=200, headers=headers, body=self._body(name))
        error = {"code": status, "message": "x", "errors": [{"reason": _REASONS.get(status, "backendError")}]}
        return ApiResponse(status=status, headers=headers, body=json.dumps({"error": error}).encode())

    async def charge(self, requests: Sequence[ApiRequest]) -> None:
        self.charged.append([_name(request) for request in requests])

    async def access_token(self) -> str:
        return "token"

    async def exchange(
        self,
        method: str,
        uri: str,
        headers: dict[str, str],
        body: bytes | None,
        requests: Sequence[ApiRequest],
        access_token: Callable[[], Awaitable[str]],
        before_send: Callable[[Sequence[ApiRequest]], Awaitable[None]] | None,
    ) -> ApiResponse:
        if before_send is not None:
            await before_send(requests)
        token = await access_token()
        self.tokens_seen.append(token)
        self.exchanges.append([_name(request) for request in requests])
        if not uri.endswith("/batch/gmail/v1"):
            answer = self._answer(requests[0], token)
            if answer is None:
                raise aiohttp.ServerDisconnectedError()
            return answer
        if self.batch_status is not None:
            status = self.batch_status(len(self.exchanges))
            if status != 200:
                return ApiResponse(status=status, body=b'{"error": {"code": 503, "message": "down"}}')
        parts = []
        for number, request in reversed(list(enumerate(requests, start=1))):
            answer = self._answer(request, token)
            if answer is None:
                continue
            headers_text = "".join(f"{k}: {v}\r\n" for k, v in answer.headers.items())
            parts.append(
                f"--B\r\nContent-Type: application/http\r\nContent-ID: <response-item-{number}>\r\n\r\n"
                f"HTTP/1.1 {answer.status} X\r\n{headers_text}\r\n".encode()
                + answer.body
                + b"\r\n"
            )
        return ApiResponse(
            status=200,
            headers={"content-type": "multipart/mixed; boundary=B"},
            body=b"".join(parts) + b"--B--\r\n",
        )


class Sleeps:
    """A fake asyncio.sleep that records what it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
