"""Google's batch protocol: a multipart/mixed request of `application/http` parts, each an inner
HTTP request with a Content-ID, answered by a multipart/mixed response whose parts carry
`Content-ID: <response-ID>` and an inner HTTP response, in the order of the request.

Line endings in requests may be CRLF or LF (google-api-python-client writes LF); responses use
CRLF, which google-api-python-client's parser needs between an inner response's headers and body.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus

MAX_PARTS = 100


class BatchFormatError(ValueError):
    """A batch body that cannot be read; the message says why (it goes into a 400)."""


@dataclass(slots=True)
class InnerRequest:
    content_id: str | None
    method: str
    target: str  # path and query, e.g. /gmail/v1/users/me/messages/1a?format=raw
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass(slots=True)
class InnerResponse:
    content_id: str | None
    status: int
    body: bytes
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] | None = None


def content_type_parameter(content_type: str, name: str) -> str | None:
    """A parameter of a Content-Type value (quotes removed), e.g. the boundary."""
    for item in content_type.split(";")[1:]:
        key, equals, value = item.strip().partition("=")
        if equals and key.strip().lower() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """(header block, rest) at the first empty line; (data, b"") when there is none."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return data[:crlf], data[crlf + 4 :]
    if lf >= 0:
        return data[:lf], data[lf + 2 :]
    return data, b""


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    last: str | None = None
    for line in block.decode("utf-8", "replace").splitlines():
        if line[:1] in (" ", "\t") and last is not None:
            headers[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if colon:
            last = name.strip().lower()
            headers[last] = value.strip()
    return headers


def split_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body: (headers with lower-cased names, content)."""
    if not boundary:
        raise BatchFormatError("Missing boundary in multipart Content-Type")
    delimiter = b"--" + boundary.encode("latin-1")
    pieces = body.split(delimiter)
    if len(pieces) < 2:
        raise BatchFormatError("Multipart body has no part delimited by its boundary")
    parts: list[tuple[dict[str, str], bytes]] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break  # the close delimiter
        # The rest of the delimiter line (transport padding), then the part.
        newline = piece.find(b"\n")
        if newline < 0:
            continue
        piece = piece[newline + 1 :]
        if piece.endswith(b"\r\n"):
            piece = piece[:-2]
        elif piece.endswith(b"\n"):
            piece = piece[:-1]
        head, content = _split_head(piece)
        parts.append((_headers(head), content))
    return parts


def parse_inner_request(content_id: str | None, data: bytes) -> InnerRequest:
    data = data.lstrip(b"\r\n")
    line_end = data.find(b"\n")
    request_line = (data if line_end < 0 else data[:line_end]).decode("latin-1").strip()
    rest = b"" if line_end < 0 else data[line_end + 1 :]
    fields = request_line.split()
    if len(fields) < 2:
        raise BatchFormatError(f"Invalid inner request line: {request_line[:100]!r}")
    method, target = fields[0].upper(), fields[1]
    if "://" in target:  # an absolute URI: keep the path and query
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    if rest.startswith((b"\r\n", b"\n")):
        head, body = b"", rest.lstrip(b"\r\n")
    else:
        head, body = _split_head(rest)
    headers = _headers(head)
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) <= len(body):
        body = body[: int(length)]
    return InnerRequest(content_id=content_id, method=method, target=target, headers=headers, body=body)


def parse_batch(body: bytes, content_type: str) -> list[InnerRequest]:
    if content_type.split(";")[0].strip().lower() != "multipart/mixed":
        raise BatchFormatError("Batch requests must be multipart/mixed")
    boundary = content_type_parameter(content_type, "boundary")
    if not boundary:
        raise BatchFormatError("Missing boundary in multipart/mixed Content-Type")
    return [
        parse_inner_request(headers.get("content-id"), content)
        for headers, content in split_multipart(body, boundary)
    ]


def response_content_id(content_id: str | None) -> str:
    if not content_id:
        return "<response-" + secrets.token_hex(8) + ">"
    inner = content_id.strip()
    if inner.startswith("<") and inner.endswith(">"):
        inner = inner[1:-1]
    return f"<response-{inner}>"


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def build_batch_response(responses: Sequence[InnerResponse]) -> tuple[str, bytes]:
    """(Content-Type, body) of the multipart/mixed answer."""
    boundary = "batch_" + secrets.token_urlsafe(18)
    delimiter = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for response in responses:
        reason = _reason(response.status)
        head = [
            f"Content-Type: application/http\r\nContent-ID: {response_content_id(response.content_id)}\r\n\r\n",
            f"HTTP/1.1 {response.status} {reason}\r\n",
        ]
        if response.body or response.status != 204:
            head.append(f"Content-Type: {response.content_type}\r\n")
        for name, value in (response.headers or {}).items():
            head.append(f"{name}: {value}\r\n")
        head.append(f"Content-Length: {len(response.body)}\r\n\r\n")
        chunks.append(delimiter + b"\r\n" + "".join(head).encode("latin-1") + response.body + b"\r\n")
    chunks.append(delimiter + b"--\r\n")
    return f"multipart/mixed; boundary={boundary}", b"".join(chunks)
