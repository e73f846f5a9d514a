"""RFC 5322 pieces written directly: header lines as `email.policy.SMTP` writes them, addresses,
and bodies in 7bit or quoted-printable. mail.campaigns.render puts them together.

A header line is written as it is where that is exactly what the policy writes (printable ASCII
that fits one line; the tests compare the two), and by the policy otherwise (RFC 2047 for
non-ASCII names and subjects, quoting, folding): the common case costs a format, not a parse.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from email.headerregistry import Address
from email.policy import SMTP

from mail.campaigns.personalize import Template
from mail.errors import ValidationError

MAX_LINE = 78  # RFC 5322's "SHOULD" for header lines
MAX_BODY_LINE = 998  # RFC 5322's limit, CRLF not counted

_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_ADDRESS = re.compile(r"[^\s\"(),:;<>@\[\\\]]+@[^\s\"(),:;<>@\[\\\]]+")

TEXT_TYPE = 'text/plain; charset="utf-8"'
PART_HEADERS = {
    (subtype, encoding): (
        f'Content-Type: {subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n'
    ).encode("ascii")
    for subtype in ("text/plain", "text/html")
    for encoding in ("7bit", "quoted-printable")
}


class Body:
    """A body template, and what choosing its transfer encoding needs without scanning the result.

    7bit where it is safe: ASCII without NUL, every line at most 998 characters (known from the
    literals at compile time; a line with slots adds its values' lengths at render time), and no
    `=_`, which starts every MIME boundary render writes. Otherwise quoted-printable, which can
    never produce `=_`. Literals are stored with CRLF line ends already.
    """

    __slots__ = ("_ascii", "_longest_fixed", "_slot_lines", "template")

    def __init__(self, parts: Sequence[object]) -> None:
        parts = [crlf(part) if isinstance(part, str) else part for part in parts]
        self.template = Template(parts)
        index = {slot: number for number, slot in enumerate(self.template.slots)}
        self._ascii = all(part.isascii() and "\x00" not in part for part in parts if isinstance(part, str))
        longest, current, slots = 0, 0, []
        slot_lines: list[tuple[int, tuple[int, ...]]] = []
        for part in parts:
            if not isinstance(part, str):
                slots.append(index[part])
                continue
            lines = part.split("\r\n")
            current += len(lines[0])
            for line in lines[1:]:
                if slots:
                    slot_lines.append((current, tuple(slots)))
                else:
                    longest = max(longest, current)
                current, slots = len(line), []
        if slots:
            slot_lines.append((current, tuple(slots)))
        else:
            longest = max(longest, current)
        self._longest_fixed = longest
        self._slot_lines = tuple(slot_lines)

    def encode(self, values: Sequence[str]) -> tuple[bytes, str]:
        """The body as bytes and its Content-Transfer-Encoding."""
        text = self.template.render(values)
        if self._ascii and self._longest_fixed <= MAX_BODY_LINE:
            joined = "".join(values)
            if (
                "=_" not in text  # the MIME boundary's prefix: only quoted-printable cannot hold it
                and joined.isascii()
                and not any(character in joined for character in "\r\n\x00")
                and all(
                    fixed + sum(len(values[number]) for number in slots) <= MAX_BODY_LINE
                    for fixed, slots in self._slot_lines
                )
            ):
                return text.encode("ascii"), "7bit"
        return qp(text), "quoted-printable"


def crlf(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\n", "\r\n")


def qp(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends (soft breaks keep lines within 76 characters)."""
    data = crlf(text).encode("utf-8")
    encoded = binascii.b2a_qp(data, istext=True)
    # b2a_qp breaks lines the way the text's first line ends: with LF when there is none.
    return encoded if b"\r\n" in data else encoded.replace(b"\n", b"\r\n")


def ascii_address(address: str, field: str) -> str:
    """A plain addr-spec, ASCII (an international domain as IDNA); ValidationError otherwise."""
    address = address.strip()
    local, _, domain = address.rpartition("@")
    if not _ADDRESS.fullmatch(address) or not local.isascii() or not _PRINTABLE.fullmatch(local):
        raise ValidationError(f"{field}: cannot write {address!r} as an address (no SMTPUTF8)", field=field)
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValidationError(f"{field}: {address!r} has an invalid domain", field=field) from None
    return f"{local}@{domain}"


def address_line(name: str, display_name: str, address: str) -> str:
    """`name: display name <address>` folded as email.policy.SMTP folds it."""
    if not display_name:
        line = f"{name}: {address}\r\n"
    elif _ATEXT_PHRASE.fullmatch(display_name) and "=?" not in display_name:
        line = f"{name}: {display_name} <{address}>\r\n"
    else:
        line = ""
    if line and len(line) <= MAX_LINE + 2:
        return line
    header = SMTP.header_factory(name, [Address(display_name=display_name, addr_spec=address)])
    return str(header.fold(policy=SMTP))


def unstructured_line(name: str, value: str) -> str:
    """`name: value` folded as email.policy.SMTP folds it (RFC 2047 for anything not ASCII)."""
    if value and _PRINTABLE.fullmatch(value) and "=?" not in value and len(name) + 2 + len(value) <= MAX_LINE:
        return f"{name}: {value}\r\n"
    return str(SMTP.header_factory(name, value).fold(policy=SMTP))


def list_line(name: str, value: str) -> str:
    """A list of <URI>s, one per line when they do not fit on one."""
    if len(name) + 2 + len(value) <= MAX_LINE:
        return f"{name}: {value}\r\n"
    return f"{name}: " + ",\r\n ".join(value.split(", ")) + "\r\n"
