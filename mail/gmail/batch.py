"""Gmail batch requests: many API calls in one multipart/mixed HTTP request.

A batch body is one part per call, each `Content-Type: application/http` with a `Content-ID`
of `<item-N>` (N from 1), holding the call as an HTTP request: request line with the path and
query relative to the server, headers, a blank line and the JSON body. The answer is a
multipart/mixed body with one `application/http` part per call whose Content-ID is
`<response-item-N>`; the parts may come in any order, so they are matched by that id. Gmail
takes at most 100 calls in a batch and recommends 50; each call counts against the quota on its
own, and each part has its own status (one message deleted meanwhile is one 404 part).

    body, content_type = encode_batch(requests)
    parts = decode_batch(response_content_type, response_body, count=len(requests))
    parts[0]   # ApiResponse of requests[0], or None when the server left it out
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from mail.errors import TransientError, ValidationError
from mail.gmail.api_request import ApiRequest, ApiResponse

MAX_BATCH_PARTS = 100
_CRLF = b"\r\n"
_BOUNDARY_PARAM = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_ITEM_ID = re.compile(r"^<?\s*(?:response-)?item-?(\d+)(?:[@:][^>]*)?\s*>?$", re.IGNORECASE)
_STATUS_LINE = re.compile(rb"^HTTP/\d(?:\.\d)?\s+(\d{3})(?:\s.*)?$")


def _boundary() -> str:
    # Random, so it cannot occur in a JSON body by accident.
    return f"batch_{secrets.token_hex(16)}"


def encode_batch(requests: Sequence[ApiRequest], *, boundary: str | None = None) -> tuple[bytes, str]:
    """The multipart/mixed body for `requests` and its Content-Type header value."""
    if not requests:
        raise ValidationError("a batch needs at least one request", field="requests")
    if len(requests) > MAX_BATCH_PARTS:
        raise ValidationError(
            f"a Gmail batch holds at most {MAX_BATCH_PARTS} requests, got {len(requests)}",
            field="requests",
        )
    boundary = boundary or _boundary()
    delimiter = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for number, request in enumerate(requests, start=1):
        chunks += (
            delimiter,
            _CRLF,
            b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n",
            f"Content-ID: <item-{number}>\r\n\r\n".encode("ascii"),
            f"{request.method} {request.path_and_query} HTTP/1.1\r\n".encode("ascii"),
        )
        for name, value in request.headers.items():
            if name.lower() not in ("content-length", "host", "authorization"):
                chunks.append(f"{name}: {value}\r\n".encode("latin-1"))
        if request.body is not None:
            chunks.append(f"content-length: {len(request.body)}\r\n".encode("ascii"))
        chunks.append(_CRLF)  # the blank line that ends the part's headers
        if request.body is not None:
            chunks.append(request.body)
        chunks.append(_CRLF)  # belongs to the next delimiter, not to the body
    chunks += (delimiter, b"--", _CRLF)
    return b"".join(chunks), f"multipart/mixed; boundary={boundary}"


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Headers and what follows the first blank line (CRLF or bare LF line ends)."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf != -1 and (lf == -1 or crlf < lf):
        return data[:crlf], data[crlf + 4 :]
    if lf != -1:
        return data[:lf], data[lf + 2 :]
    return data, b""


def _parse_headers(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


def _parse_part(part: bytes) -> tuple[int, ApiResponse]:
    """One part: its outer headers (Content-ID) and the HTTP response inside it."""
    outer_head, inner = _split_head(part.lstrip(b" \t\r\n"))
    outer = _parse_headers(outer_head)
    match = _ITEM_ID.match(outer.get("content-id", ""))
    if match is None:
        raise TransientError(f"Gmail batch response part without a usable Content-ID: {outer!r}")
    inner_head, body = _split_head(inner.lstrip(b"\r\n"))
    status_line, _, header_lines = inner_head.replace(b"\r\n", b"\n").partition(b"\n")
    status = _STATUS_LINE.match(status_line.strip())
    if status is None:
        raise TransientError(f"Gmail batch response part with a bad status line: {status_line[:80]!r}")
    return int(match.group(1)), ApiResponse(
        status=int(status.group(1)), headers=_parse_headers(header_lines), body=body
    )


def boundary_of(content_type: str) -> str:
    match = _BOUNDARY_PARAM.search(content_type)
    if not content_type.lower().startswith("multipart/") or match is None:
        raise TransientError(f"Gmail batch response is not multipart: {content_type!r}")
    return match.group(1) or match.group(2)


def decode_batch(content_type: str, body: bytes, *, count: int) -> list[ApiResponse | None]:
    """The parts of a multipart/mixed batch response, in the order of the `count` requests.

    A request the response has no part for is None (the caller retries it). A body that is not
    a multipart batch at all raises TransientError.
    """
    delimiter = b"--" + boundary_of(content_type).encode("latin-1")
    results: list[ApiResponse | None] = [None] * count
    # Delimiters start a line; the CRLF before one belongs to it, not to the part's body.
    pieces = (b"\r\n" + body).split(b"\n" + delimiter)
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break  # the close delimiter
        if piece.endswith(b"\r"):
            piece = piece[:-1]
        number, response = _parse_part(piece)
        if 1 <= number <= count:
            results[number - 1] = response
    return results
