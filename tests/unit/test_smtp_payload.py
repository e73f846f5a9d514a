"""What DATA sends for a message: CRLF line ends, leading dots doubled, the dot line at the end,
and the size declared for it (RFC 5321 4.5.2, RFC 1870)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mail.sending.smtp_session import payload


def _unstuffed(data: bytes) -> bytes:
    """What a server stores: the dot line taken off, one leading dot of each line dropped."""
    assert data.endswith(b"\r\n.\r\n") or data == b".\r\n"
    lines = data[:-3].split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def test_a_message_in_crlf_without_leading_dots_goes_as_it_is() -> None:
    message = b"Subject: hi\r\n\r\nHello\r\n"
    assert payload(message) == (message + b".\r\n", len(message))


def test_line_ends_are_made_crlf_and_counted_so() -> None:
    data, size = payload(b"Subject: hi\n\nHello\rthere\r\n")
    assert data == b"Subject: hi\r\n\r\nHello\r\nthere\r\n.\r\n"
    assert size == len(data) - 3


def test_leading_dots_are_doubled_the_first_line_too() -> None:
    data, size = payload(b".first\r\nmiddle\r\n.\r\n..two\r\nend")
    assert data == b"..first\r\nmiddle\r\n..\r\n...two\r\nend\r\n.\r\n"
    assert size == len(b".first\r\nmiddle\r\n.\r\n..two\r\nend\r\n")


@given(st.lists(st.binary().map(lambda line: line.replace(b"\r", b"").replace(b"\n", b"")), max_size=12))
def test_what_the_server_stores_is_the_message(lines: list[bytes]) -> None:
    message = b"".join(line + b"\r\n" for line in lines)
    data, size = payload(message)
    assert _unstuffed(data) == message
    assert size == len(message)
    assert b"\r\n.\r\n" not in data[:-3] and not data[:-3].startswith(b".\r\n")
