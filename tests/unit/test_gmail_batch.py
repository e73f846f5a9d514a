"""Batch bodies in Google's multipart/mixed format, both ways."""

from __future__ import annotations

import email.parser
import email.policy
import json

import pytest

from mail.errors import TransientError, ValidationError
from mail.gmail.api_request import ApiRequest
from mail.gmail.batch import MAX_BATCH_PARTS, boundary_of, decode_batch, encode_batch
from mail.gmail.discovery import GmailRequests

REQUESTS = GmailRequests("http://127.0.0.1:8765")

# What Google answers to a batch of three messages.get (the second one deleted meanwhile), with
# the parts out of order, as documented at developers.google.com/gmail/api/guides/batch.
GOOGLE_RESPONSE = (
    b"--batch_pK7JBAk73-E=_AA5eFwv4m2Q=\r\n"
    b"Content-Type: application/http\r\n"
    b"Content-ID: <response-item-3>\r\n"
    b"\r\n"
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json; charset=UTF-8\r\n"
    b"Vary: Origin\r\n"
    b"Vary: X-Origin\r\n"
    b"\r\n"
    b'{\n  "id": "m3",\n  "threadId": "t3",\n  "raw": "SGVsbG8"\n}\n'
    b"\r\n"
    b"--batch_pK7JBAk73-E=_AA5eFwv4m2Q=\r\n"
    b"Content-Type: application/http\r\n"
    b"Content-ID: <response-item-1>\r\n"
    b"\r\n"
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json; charset=UTF-8\r\n"
    b"\r\n"
    b'{"id": "m1", "threadId": "t1"}\r\n'
    b"--batch_pK7JBAk73-E=_AA5eFwv4m2Q=\r\n"
    b"Content-Type: application/http\r\n"
    b"Content-ID: <response-item-2>\r\n"
    b"\r\n"
    b"HTTP/1.1 404 Not Found\r\n"
    b"Content-Type: application/json; charset=UTF-8\r\n"
    b"\r\n"
    b'{"error": {"code": 404, "message": "Requested entity was not found.", '
    b'"errors": [{"reason": "notFound"}], "status": "NOT_FOUND"}}\r\n'
    b"--batch_pK7JBAk73-E=_AA5eFwv4m2Q=--\r\n"
)
GOOGLE_CONTENT_TYPE = "multipart/mixed; boundary=batch_pK7JBAk73-E=_AA5eFwv4m2Q="


def _parts(body: bytes, content_type: str) -> list[email.message.Message]:
    """Parse a multipart body with the standard library, as an independent reader."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + body)
    assert message.is_multipart()
    payload = message.get_payload()
    assert isinstance(payload, list)
    return [part for part in payload if isinstance(part, email.message.Message)]


def test_encoded_batch_is_multipart_mixed_of_http_requests() -> None:
    requests = [REQUESTS.get_message(f"m{i}") for i in range(3)] + [REQUESTS.send_message("UmF3")]
    body, content_type = encode_batch(requests, boundary="batch_test")
    assert content_type == "multipart/mixed; boundary=batch_test"
    parts = _parts(body, content_type)
    assert len(parts) == 4
    for number, (part, request) in enumerate(zip(parts, requests, strict=True), start=1):
        assert part["Content-Type"] == "application/http"
        assert part["Content-ID"] == f"<item-{number}>"
        inner = part.get_payload()
        assert isinstance(inner, str)
        request_line, _, rest = inner.partition("\r\n")
        assert request_line == f"{request.method} {request.path_and_query} HTTP/1.1"
        assert request_line.split()[1].startswith("/gmail/v1/users/me/messages")
        head, _, content = rest.partition("\r\n\r\n")
        if request.body is None:
            assert content == ""
        else:
            assert json.loads(content) == {"raw": "UmF3"}
            assert f"content-length: {len(request.body)}" in head
            assert "content-type: application/json" in head


def test_the_boundary_is_random() -> None:
    request = [REQUESTS.get_profile()]
    assert encode_batch(request)[1] != encode_batch(request)[1]


def test_batch_size_limits() -> None:
    request = REQUESTS.get_message("m")
    encode_batch([request] * MAX_BATCH_PARTS)
    with pytest.raises(ValidationError, match="at most 100"):
        encode_batch([request] * (MAX_BATCH_PARTS + 1))
    with pytest.raises(ValidationError):
        encode_batch([])


def test_decode_google_response_matches_ids_not_order() -> None:
    parts = decode_batch(GOOGLE_CONTENT_TYPE, GOOGLE_RESPONSE, count=3)
    assert [part.status if part else None for part in parts] == [200, 404, 200]
    first, missing, third = parts
    assert first is not None and json.loads(first.body) == {"id": "m1", "threadId": "t1"}
    assert first.headers["content-type"] == "application/json; charset=UTF-8"
    assert third is not None and json.loads(third.body)["raw"] == "SGVsbG8"
    assert missing is not None and b"notFound" in missing.body and not missing.ok


def test_decode_tolerates_bare_newlines_quoted_boundary_and_missing_parts() -> None:
    body = (
        b"preamble\n"
        b"--b1\n"
        b"Content-Type: application/http\n"
        b"Content-ID: <response-item-2>\n"
        b"\n"
        b"HTTP/1.1 503 Service Unavailable\n"
        b"Retry-After: 3\n"
        b"\n"
        b"\n--b1--\n"
    )
    parts = decode_batch('multipart/mixed; boundary="b1"', body, count=3)
    assert parts[0] is None and parts[2] is None
    assert parts[1] is not None
    assert (parts[1].status, parts[1].headers, parts[1].body) == (503, {"retry-after": "3"}, b"")


def test_a_body_that_looks_like_a_boundary_inside_a_line_is_kept() -> None:
    text = b'{"snippet": "see --b1 for details"}'
    body = (
        b"--b1\r\nContent-Type: application/http\r\nContent-ID: <response-item-1>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\n\r\n" + text + b"\r\n--b1--"
    )
    (part,) = decode_batch("multipart/mixed; boundary=b1", body, count=1)
    assert part is not None and part.body == text


def test_round_trip_through_a_google_style_server() -> None:
    """Encode, answer each part as Google does (ids prefixed with response-), decode."""
    requests = [REQUESTS.get_message(f"m{i}") for i in range(1, 51)]
    body, content_type = encode_batch(requests)
    answer = []
    for part in reversed(_parts(body, content_type)):
        content_id = part["Content-ID"].strip("<>")
        inner = part.get_payload()
        assert isinstance(inner, str)
        message_id = inner.split()[1].split("?")[0].rsplit("/", 1)[1]
        answer.append(
            f"--resp\r\nContent-Type: application/http\r\nContent-ID: <response-{content_id}>\r\n\r\n"
            f'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{{"id": "{message_id}"}}\r\n'
        )
    response = ("".join(answer) + "--resp--\r\n").encode()
    decoded = decode_batch("multipart/mixed; boundary=resp", response, count=len(requests))
    assert [json.loads(part.body)["id"] for part in decoded if part] == [f"m{i}" for i in range(1, 51)]


def test_binary_bodies_survive() -> None:
    raw_body = bytes(range(256))
    request = ApiRequest(method="POST", uri="http://h/gmail/v1/x", body=raw_body, method_id="x")
    body, _ = encode_batch([request], boundary="bin")
    assert raw_body in body
    assert body.endswith(b"\r\n--bin--\r\n")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{}"),
        ("multipart/mixed", b"--x\r\n"),
        (
            "multipart/mixed; boundary=x",
            b"--x\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n--x--",
        ),
        (
            "multipart/mixed; boundary=x",
            b"--x\r\nContent-ID: <response-item-1>\r\n\r\nnot a status line\r\n\r\n{}\r\n--x--",
        ),
    ],
)
def test_unreadable_responses_are_transient(content_type: str, body: bytes) -> None:
    with pytest.raises(TransientError):
        decode_batch(content_type, body, count=1)


def test_boundary_parameter() -> None:
    assert boundary_of("multipart/mixed; boundary=abc") == "abc"
    assert boundary_of('multipart/mixed; charset=utf-8; boundary="a b=c"') == "a b=c"
