"""Text out of the bytes of real mail: charsets as mail clients write them, RFC 2047 words, and
the syntax of the header fields mail.mime reads (ids, address lists).

Declared charsets are resolved the way mail clients and browsers read them (a label names its
superset: ISO-8859-1 is read as windows-1252, GB2312 as GB18030, Shift_JIS as cp932, ...). Bytes
that do not decode in the declared charset, or whose charset is unknown, are read as UTF-8 and
then as windows-1252 with replacement characters, and the fallback is reported, never raised.
"""

from __future__ import annotations

import binascii
import codecs
import re
from email.utils import getaddresses
from functools import lru_cache

# Labels without a charset behind them ("unknown-8bit") and ASCII (which 8-bit mail ignores):
# read by content, UTF-8 first, without reporting anything.
_BY_CONTENT = frozenset(
    {
        "",
        "unknown-8bit",
        "x-unknown",
        "unknown",
        "x-user-defined",
        "default",
        "default-charset",
        "none",
        "8bit",
        "7bit",
        "binary",
        "charset",
        "us-ascii",
        "ascii",
        "x-ascii",
    }
)
# Labels Python does not know.
_ALIASES = {
    "iso-8859-8-i": "iso8859-8",
    "iso-8859-8-e": "iso8859-8",
    "iso-8859-6-i": "iso8859-6",
    "iso-8859-6-e": "iso8859-6",
    "logical": "iso8859-8",
    "visual": "iso8859-8",
    "x-sjis": "cp932",
    "x-ms-cp932": "cp932",
    "windows-31j": "cp932",
    "x-euc-jp": "euc-jp",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "x-euc-cn": "gb18030",
    "cn-gb": "gb18030",
    "x-x-big5": "big5hkscs",
    "cn-big5": "big5hkscs",
    "x-windows-949": "cp949",
    "windows-949": "cp949",
    "ks-c-5601-1987": "cp949",
    "uft-8": "utf-8",
    "utf8": "utf-8",
    "x-utf-8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "x-mac-roman": "mac-roman",
    "x-mac-cyrillic": "mac-cyrillic",
    "x-mac-greek": "mac-greek",
    "x-mac-turkish": "mac-turkish",
    "x-mac-ce": "mac-latin2",
}
# After Python's lookup: the superset that senders of that label actually write.
_SUPERSETS = {
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "iso2022_jp": "iso2022_jp_ext",
}
# Text codecs that are not charsets.
_NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined", "mbcs"})
_WINDOWS = re.compile(r"(?:x-)?(?:cp|win|windows|ms)-?(\d{3,4})")
_UNKNOWN = "?"  # resolve(): a label that names no charset Python has


@lru_cache(maxsize=512)
def resolve(label: str | None) -> str | None:
    """The Python codec for a declared charset label; None: read by content; "?": unknown label."""
    if label is None:
        return None
    name = label.strip().strip("\"'").strip().rstrip(";,").lower().replace("_", "-").replace(" ", "-")
    if name.startswith("3d") and len(name) > 2:  # charset=3D"..." from a quoted-printable mix-up
        name = name[2:].strip("\"'")
    if name in _BY_CONTENT:
        return None
    if (windows := _WINDOWS.fullmatch(name)) is not None:
        name = "cp" + windows.group(1)
    name = _ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: labels with NUL characters
        return _UNKNOWN
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return _UNKNOWN
    if info.name == "ascii":
        return None
    return _SUPERSETS.get(info.name, info.name)


def decode_text(data: bytes, label: str | None) -> tuple[str, str | None]:
    """`data` as text in charset `label`, with fallbacks; second: what fell back, or None."""
    codec = resolve(label)
    declared: str | None = None
    if codec is not None and codec != _UNKNOWN:
        try:
            text = data.decode(codec)
        except UnicodeError:
            declared = codec
        else:
            if codec == "utf-7":  # the one charset that can decode to lone surrogates
                text = text.encode("utf-8", "replace").decode("utf-8")
            return _no_bom(text), None
    if data.isascii():
        text, used = data.decode("ascii"), "ascii"
    else:
        try:
            text, used = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, used = _damaged(data, declared), f"{declared} with replacement characters"
            if not text:
                text, used = data.decode("cp1252", errors="replace"), "windows-1252"
    shown = (label or "")[:40]
    if codec == _UNKNOWN:
        return _no_bom(text), f"unknown charset {shown!r}; read as {used}"
    if codec is not None:
        return _no_bom(text), f"text is not valid {shown!r}; read as {used}"
    return _no_bom(text), None


def _damaged(data: bytes, codec: str | None) -> str:
    """`data` in `codec` with replacement characters, if few of its 8-bit bytes need them (a
    Big5 subject with one bad byte); "" when they are many (the text is in another charset)."""
    if codec is None:
        return ""
    try:
        text = data.decode(codec, errors="replace")
    except (UnicodeError, LookupError):
        return ""
    eight_bit = len(data) - len(data.decode("ascii", errors="ignore"))
    return text if text.count("\ufffd") * 10 <= eight_bit else ""


def _no_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


def surrogates_to_text(value: str, fallback: str | None = None) -> str:
    """A header as the parser keeps it (8-bit bytes as surrogate escapes) as real text.

    Raw 8-bit bytes are read as UTF-8, else in charset `fallback` (the message's body charset:
    senders that put raw bytes into headers write them in the charset of their text), else as
    windows-1252.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        data = value.encode("utf-8", "surrogateescape")
    else:
        return value
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    codec = resolve(fallback)
    if codec is not None and codec != _UNKNOWN:
        try:
            return data.decode(codec)
        except UnicodeError:
            pass
    return data.decode("cp1252", errors="replace")


# RFC 2047 encoded words; anywhere, as email.header.decode_header finds them. The charset may
# carry an RFC 2231 language ("utf-8*en").
_ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([qQbB])\?(.*?)\?=")
_BASE64_JUNK = re.compile(r"[^A-Za-z0-9+/]")


def _word_bytes(encoding: str, encoded: str) -> bytes:
    if encoding in "qQ":
        return binascii.a2b_qp(encoded.encode("utf-8"), header=True)
    cleaned = encoded.rstrip("=")
    if _BASE64_JUNK.search(cleaned):
        raise binascii.Error("not base64")
    if len(cleaned) % 4 == 1:  # a dangling sextet carries no whole byte
        cleaned = cleaned[:-1]
    return binascii.a2b_base64(cleaned + "=" * (-len(cleaned) % 4))


def decode_words(value: str, errors: list[str]) -> str:
    """Decode the RFC 2047 encoded words of an (unfolded) header value, never raising.

    Whitespace between adjacent encoded words is dropped; adjacent words in one charset are
    decoded together (encoders split multi-byte characters between words). A word that cannot
    be decoded stays as written and is reported in `errors`.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = b""  # bytes of adjacent words in `pending_charset`
    pending_charset = ""
    position = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset:
            text, problem = decode_text(pending, pending_charset)
            out.append(text)
            if problem is not None:
                errors.append(f"encoded word: {problem}")
        pending, pending_charset = b"", ""

    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        position = match.end()
        charset = match.group(1).split("*", 1)[0]
        try:
            data = _word_bytes(match.group(2), match.group(3))
        except (binascii.Error, ValueError):
            flush()
            out += [between, match.group(0)]
            errors.append(f"encoded word: undecodable {match.group(0)[:60]!r}")
            continue
        if between and not (pending_charset and between.isspace()):
            flush()
            out.append(between)
        if charset.lower() != pending_charset.lower():
            flush()
        pending += data
        pending_charset = charset or "unknown-8bit"
    flush()
    out.append(value[position:])
    return "".join(out)


# -- the syntax of the header fields mailray reads ----------------------------------------------

_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
_BRACKETED = re.compile(r"<([^<>]*)>")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_ADDR_SPEC = r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_SIMPLE_MAILBOX = re.compile(  # "Name <a@b>", "\"Name\" <a@b>", "<a@b>", "a@b"
    rf'[ \t]*(?:(?:"([^"\\\r\n]*)"|({_ATEXT}(?:[ \t]+{_ATEXT})*))?[ \t]*<({_ADDR_SPEC})>|({_ADDR_SPEC}))[ \t]*'
)


def clean_line(value: str) -> str:
    """One line of text: line breaks (CR/LF injection included) become spaces; no NULs."""
    value = _LINE_BREAKS.sub(" ", value)
    return value.replace("\x00", "") if "\x00" in value else value


def message_id(value: str) -> str | None:
    """The first <id> of a header (or its one token), without brackets or whitespace."""
    bracketed = _BRACKETED.search(value)
    token = "".join((bracketed.group(1) if bracketed else value).split())
    return token or None


def in_reply_to(value: str) -> str | None:
    if "<" in value:
        return message_id(value)
    tokens = value.split()
    if len(tokens) == 1:
        return tokens[0]
    return next((token for token in tokens if "@" in token), None)  # "message of ... id@host"


def references(value: str) -> list[str]:
    """The ids of a References header in order, once each."""
    tokens = _BRACKETED.findall(value) if "<" in value else value.split()
    ids = ("".join(token.split()) for token in tokens)
    return list(dict.fromkeys(token for token in ids if token))


def mailboxes(value: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of one address-list header: email.utils.getaddresses,
    with a fast path for the shapes most headers have."""
    simple = _SIMPLE_MAILBOX.fullmatch(value)
    if simple is None:
        return getaddresses([value])
    quoted, atoms, bracketed, bare = simple.groups()
    return [(quoted if quoted is not None else " ".join((atoms or "").split()), bracketed or bare)]


def address(addr: str, errors: list[str]) -> str:
    """An address from getaddresses as mailray keeps it: whitespace and angle brackets gone, a
    local part written as an encoded word decoded, needless quotes dropped ("a.b"@x is a.b@x);
    "" where nothing usable is left ("", or "@host" from a group's name)."""
    email = "".join(addr.split()).strip("<>")
    local, at, domain = email.rpartition("@")
    if at and "=?" in local:  # =?iso-2022-jp?B?...?=@host
        local = clean_line(decode_words(local, errors)).strip()
        if not _DOT_ATOM.fullmatch(local):
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        email = local + at + domain
    elif at and len(local) > 2 and local[0] == local[-1] == '"' and _DOT_ATOM.fullmatch(local[1:-1]):
        email = local[1:-1] + at + domain
    return "" if email.startswith("@") else email
