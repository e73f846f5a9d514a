"""mail.mime.parse_message on hand-made messages: one rule per test, and fuzzing that it never raises."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import UTC, datetime, timedelta, timezone
from email.utils import getaddresses
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mail import mime
from mail.mime import parse_message, read_corpus_message
from mail.mime_charsets import decode_text, decode_words, mailboxes, resolve
from models.mail import Address, ParsedMessage


def _msg(headers: str, body: bytes | str = b"hello\n", *, extra: bytes = b"") -> bytes:
    data = body.encode() if isinstance(body, str) else body
    return headers.strip("\n").encode() + b"\n" + extra + b"\n" + data


def _storable(parsed: ParsedMessage) -> None:
    """What the store needs: JSON-encodable (no lone surrogates), no NULs, one-line headers."""
    msgspec.json.encode(parsed)
    texts = [parsed.subject, parsed.snippet, parsed.text_body or "", parsed.html_body or ""]
    for address in [*parsed.to, *parsed.cc, *parsed.bcc, *parsed.reply_to]:
        texts += [address.email, address.name or ""]
    assert not any("\x00" in text for text in texts)
    for line in [parsed.subject, *(a.filename for a in parsed.attachments)]:
        assert "\r" not in line and "\n" not in line


# -- subjects and encoded words -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Subject: plain ascii", "plain ascii"),
        ("Subject: =?utf-8?B?w6l0w6kgw6AgUGFyaXM=?=", "été à Paris"),
        ("Subject: =?iso-8859-1?Q?caf=E9_cr=E8me?=", "café crème"),
        ("Subject: =?koi8-r?B?8NLJ18XU?=", "Привет"),
        ("Subject: =?iso-2022-jp?B?GyRCJUYlOSVIGyhC?=", "テスト"),
        ("Subject: =?shift_jis?B?g2WDWINn?=", "テスト"),
        ("Subject: =?gb2312?B?1tDOxA==?=", "中文"),
        ("Subject: =?ks_c_5601-1987?B?x9Gxub7u?=", "한국어"),
        ("Subject: =?windows-1252?Q?=93quoted=94?=", "\u201cquoted\u201d"),
        # whitespace between adjacent encoded words goes; text between them stays
        ("Subject: =?utf-8?Q?a?= =?utf-8?Q?b?= c =?utf-8?Q?d?=", "ab c d"),
        # a multi-byte character split between two words
        ("Subject: =?utf-8?B?w6k=?= =?utf-8?B?w6k=?=", "éé"),
        ("Subject: =?UTF-8?b?w6k=?=", "é"),
        ("Subject: =?utf-8*en?Q?lang?=", "lang"),  # RFC 2231 language in the charset
        ("Subject: =?utf-8?B?w6l0w6k?=", "été"),  # missing base64 padding
        ("Subject: =?utf-8?Q?no_end", "=?utf-8?Q?no_end"),  # not an encoded word
        ("Subject: folded\n  across\n\tlines", "folded  across\tlines"),
        ("Subject:    padded   ", "padded"),
    ],
)
def test_subject_decoding(header: str, expected: str) -> None:
    parsed = parse_message(_msg(header))
    assert parsed.subject == expected
    assert parsed.parse_errors == []


def test_encoded_word_in_unknown_charset_is_read_and_reported() -> None:
    parsed = parse_message(_msg("Subject: =?x-bogus?Q?caf=C3=A9?= ok"))
    assert parsed.subject == "café ok"
    assert parsed.parse_errors == ["subject: encoded word: unknown charset 'x-bogus'; read as utf-8"]


def test_encoded_word_with_bytes_not_in_its_charset_falls_back() -> None:
    parsed = parse_message(_msg("Subject: =?utf-8?Q?caf=E9?="))
    assert parsed.subject == "café"
    assert parsed.parse_errors == ["subject: encoded word: text is not valid 'utf-8'; read as windows-1252"]


def test_raw_8bit_subject_is_read_as_utf8_else_in_the_body_charset() -> None:
    utf8 = "Subject: café".encode() + b"\n\nbody"
    assert parse_message(utf8).subject == "café"
    korean = b"Subject: " + "광고".encode("cp949") + b"\nContent-Type: text/plain; charset=euc-kr\n\nx"
    assert parse_message(korean).subject == "광고"
    latin = b"Subject: caf\xe9\n\nbody"
    assert parse_message(latin).subject == "café"


@pytest.mark.parametrize(
    "header",
    [
        "Subject: =?utf-8?Q?Hello=0D=0ABcc:_evil@example.com?=",
        "Subject: =?utf-8?B?SGVsbG8NCkJjYzogZXZpbEBleGFtcGxlLmNvbQ==?=",
        "Subject: =?utf-8?Q?Hello=E2=80=A8Bcc:_evil@example.com?=",  # U+2028 line separator
        "Subject: Hello\n Bcc: evil@example.com",
    ],
)
def test_header_injection_stays_one_line(header: str) -> None:
    parsed = parse_message(_msg(header + "\nFrom: =?utf-8?Q?Eve=0D=0ATo=3A_x=40y?= <eve@example.com>"))
    assert parsed.subject in ("Hello Bcc: evil@example.com", "Hello  Bcc: evil@example.com")
    assert parsed.from_address == Address(email="eve@example.com", name="Eve To: x@y")
    assert parsed.bcc == [] and parsed.to == []
    _storable(parsed)


# -- addresses ----------------------------------------------------------------------------------


def test_address_lists() -> None:
    parsed = parse_message(
        _msg(
            """
From: "Doe, Jane" <Jane.Doe@Example.com>
To: bob@example.com, Alice Smith <alice@example.com>,
  =?utf-8?Q?J=C3=B6rg_M=C3=BCller?= < joerg@example.de >, "O'Neil \\"Q\\"" <q@example.com>
To: second-header@example.com
Cc: Team: one@example.com, Two <two@example.com>;, undisclosed-recipients:;
Cc: old@example.com (Old Style), "a.b"@example.com, =?utf-8?Q?Doe=2C_J?= <j@example.com>
Bcc: <hidden@example.com>
Reply-To: , replies@example.com,
"""
        )
    )
    assert parsed.from_address == Address(email="Jane.Doe@Example.com", name="Doe, Jane")
    assert parsed.to == [
        Address(email="bob@example.com"),
        Address(email="alice@example.com", name="Alice Smith"),
        Address(email="joerg@example.de", name="Jörg Müller"),
        Address(email="q@example.com", name='O\'Neil "Q"'),
        Address(email="second-header@example.com"),
    ]
    assert parsed.cc == [
        Address(email="one@example.com"),
        Address(email="two@example.com", name="Two"),
        Address(email="old@example.com", name="Old Style"),
        Address(email="a.b@example.com"),
        Address(email="j@example.com", name="Doe, J"),
    ]
    assert parsed.bcc == [Address(email="hidden@example.com")]
    assert parsed.reply_to == [Address(email="replies@example.com")]
    assert parsed.parse_errors == []


def test_odd_addresses() -> None:
    parsed = parse_message(
        _msg(
            """
From: =?iso-2022-jp?B?am9rb0Bycy4xMjgubmUuanA=?=@FreeBSD.ORG
To: <Undisclosed-Recipient:;@example.org>, MAILER-DAEMON <>
Cc: root
"""
        )
    )
    assert parsed.from_address == Address(email='"joko@rs.128.ne.jp"@FreeBSD.ORG')
    assert parsed.to == [Address(email="Undisclosed-Recipient")]  # "@example.org" and "<>" dropped
    assert parsed.cc == [Address(email="root")]


_ATOM = st.text("abcxyzABC019'_-", min_size=1, max_size=8)
_LOCAL = st.lists(st.text("abcxyz019_%+-", min_size=1, max_size=6), min_size=1, max_size=3).map(".".join)
_DOMAIN = st.lists(st.text("abcxyz019-", min_size=1, max_size=6), min_size=1, max_size=3).map(".".join)


@given(
    names=st.one_of(
        st.just(""),
        st.lists(_ATOM, min_size=1, max_size=3).map(" ".join),
        st.text("abc ,.;:@<>()'=?", max_size=10).map(lambda name: f'"{name}"'),
    ),
    local=_LOCAL,
    domain=_DOMAIN,
    bracketed=st.booleans(),
    padding=st.sampled_from(["", " ", "  ", "\t"]),
)
def test_mailboxes_fast_path_agrees_with_getaddresses(
    names: str, local: str, domain: str, bracketed: bool, padding: str
) -> None:
    address = f"{local}@{domain}"
    value = f"{padding}{names}{padding}<{address}>{padding}" if bracketed or names else padding + address
    assert mailboxes(value) == getaddresses([value])


# -- ids and dates ------------------------------------------------------------------------------


def test_message_ids_and_references() -> None:
    parsed = parse_message(
        _msg(
            """
Message-ID:  < abc.123@example.com >
In-Reply-To: <parent@example.com> (from Bob)
References: <root@example.com>
 <mid@example.com><parent@example.com>   <root@example.com>
"""
        )
    )
    assert parsed.message_id == "abc.123@example.com"
    assert parsed.in_reply_to == "parent@example.com"
    assert parsed.references == ["root@example.com", "mid@example.com", "parent@example.com"]


@pytest.mark.parametrize(
    ("headers", "in_reply_to", "references"),
    [
        ("In-Reply-To: bare@example.com\nReferences: a@x b@x a@x", "bare@example.com", ["a@x", "b@x"]),
        ('In-Reply-To: Your message of "Mon, 1 Jul" id@example.com', "id@example.com", []),
        ("In-Reply-To: Your message of Monday", None, []),
        ("References: ", None, []),
    ],
)
def test_ids_without_brackets(headers: str, in_reply_to: str | None, references: list[str]) -> None:
    parsed = parse_message(_msg(headers))
    assert (parsed.in_reply_to, parsed.references) == (in_reply_to, references)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Date: Thu, 22 Aug 2002 12:36:16 +0100", datetime(2002, 8, 22, 11, 36, 16, tzinfo=UTC)),
        ("Date: Thu, 22 Aug 2002 12:36:16 -0000", datetime(2002, 8, 22, 12, 36, 16, tzinfo=UTC)),
        ("Date: 22 Aug 2002 12:36 EDT", datetime(2002, 8, 22, 16, 36, tzinfo=UTC)),
        ("Date: Thu,\n 22 Aug 2002 12:36:16 +0900", datetime(2002, 8, 22, 3, 36, 16, tzinfo=UTC)),
    ],
)
def test_dates_are_timezone_aware(header: str, expected: datetime) -> None:
    parsed = parse_message(_msg(header))
    assert parsed.date == expected
    assert parsed.date is not None and parsed.date.tzinfo is not None
    assert parsed.parse_errors == []


def test_dates_come_in_utc_at_the_same_instant() -> None:
    date = parse_message(_msg("Date: Thu, 22 Aug 2002 12:36:16 +0530")).date
    assert date is not None and date.utcoffset() == timedelta(0)
    assert date == datetime(2002, 8, 22, 12, 36, 16, tzinfo=timezone(timedelta(hours=5, minutes=30)))


def test_an_offset_postgres_refuses_still_gives_a_storable_date() -> None:
    date = parse_message(_msg("Date: Wed, 07 Oct 2020 23:01:36 -1900")).date
    assert date is not None and date.tzinfo == UTC


def test_unreadable_date_is_none_and_reported() -> None:
    parsed = parse_message(_msg("Date: 2002/09/14 Sat 02:29:32 CDT"))
    assert parsed.date is None
    assert parsed.parse_errors == ["date: unreadable '2002/09/14 Sat 02:29:32 CDT'"]


def test_missing_headers() -> None:
    parsed = parse_message(b"\nJust a body.\n")
    assert (parsed.message_id, parsed.in_reply_to, parsed.references) == (None, None, [])
    assert (parsed.subject, parsed.from_address, parsed.to, parsed.date) == ("", None, [], None)
    assert parsed.text_body == "Just a body.\n" and parsed.snippet == "Just a body."
    assert parsed.parse_errors == []


# -- bodies -------------------------------------------------------------------------------------

ALTERNATIVE = (
    b"""From: a@example.com
Subject: alt
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="ALT"

preamble
--ALT
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 au lait, =
soft break.
--ALT
Content-Type: text/html; charset=iso-8859-1
Content-Transfer-Encoding: base64

"""
    + base64.encodebytes("<p>Caf\xe9 <b>au</b> lait</p>".encode("latin-1"))
    + b"""--ALT--
epilogue
"""
)


def test_alternative_text_and_html() -> None:
    parsed = parse_message(ALTERNATIVE)
    assert parsed.text_body == "Café au lait, soft break."  # the line break before "--ALT" is the boundary's
    assert parsed.html_body == "<p>Café <b>au</b> lait</p>"
    assert parsed.snippet == "Café au lait, soft break."
    assert parsed.attachments == []
    assert parsed.parse_errors == []
    assert parsed.raw_size == len(ALTERNATIVE)


PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(300)
PDF = b"%PDF-1.4\n" + os.urandom(500)


def _nested() -> bytes:
    png64 = base64.encodebytes(PNG).decode()
    pdf64 = base64.encodebytes(PDF).decode()
    return f"""From: a@example.com
Subject: nested
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="MIX"

--MIX
Content-Type: multipart/alternative; boundary="ALT"

--ALT
Content-Type: text/plain; charset=us-ascii

See the logo.
--ALT
Content-Type: multipart/related; boundary="REL"

--REL
Content-Type: text/html; charset=us-ascii

<html><body><img src="cid:logo@example.com"> See the logo.</body></html>
--REL
Content-Type: image/png
Content-ID: <logo@example.com>
Content-Transfer-Encoding: base64

{png64}--REL--
--ALT--
--MIX
Content-Type: application/pdf; name="=?utf-8?B?UmVjaG51bmcgw5xiZXJzaWNodC5wZGY=?="
Content-Disposition: attachment
Content-Transfer-Encoding: base64

{pdf64}--MIX
Content-Type: message/rfc822
Content-Disposition: attachment; filename="fwd.eml"

From: inner@example.com
Subject: the inner message

Inner text that is not the body.
--MIX
Content-Type: text/plain; charset=utf-8
Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt

a text file, not the body
--MIX
Content-Type: text/plain

-- a list footer: neither body nor attachment
--MIX--
""".encode()


def test_nested_mixed_with_inline_image_and_attachments() -> None:
    parsed = parse_message(_nested())
    assert parsed.text_body == "See the logo."
    assert parsed.html_body is not None and 'src="cid:logo@example.com"' in parsed.html_body
    assert parsed.parse_errors == []
    by_id = {attachment.part_id: attachment for attachment in parsed.attachments}
    assert list(by_id) == ["0.1.1", "1", "2", "3"]  # Gmail's partId shape

    logo = by_id["0.1.1"]
    assert (logo.content_type, logo.filename, logo.content_id, logo.is_inline) == (
        "image/png",
        "",
        "logo@example.com",
        True,
    )
    assert logo.content == PNG and logo.size == len(PNG) and logo.sha256 == hashlib.sha256(PNG).digest()

    pdf = by_id["1"]
    assert (pdf.content_type, pdf.filename, pdf.content_id, pdf.is_inline) == (
        "application/pdf",
        "Rechnung Übersicht.pdf",
        None,
        False,
    )
    assert pdf.content == PDF and pdf.sha256 == hashlib.sha256(PDF).digest()

    forwarded = by_id["2"]
    assert (forwarded.content_type, forwarded.filename) == ("message/rfc822", "fwd.eml")
    inner = parse_message(forwarded.content)
    assert inner.subject == "the inner message"
    assert inner.text_body == "Inner text that is not the body."

    resume = by_id["3"]
    assert (resume.content_type, resume.filename, resume.content) == (
        "text/plain",
        "résumé.txt",
        b"a text file, not the body",
    )


def test_single_part_message_that_is_a_file() -> None:
    parsed = parse_message(
        _msg("Content-Type: application/zip\nContent-Transfer-Encoding: base64", base64.encodebytes(b"PK"))
    )
    assert parsed.text_body is None and parsed.html_body is None and parsed.snippet == ""
    assert [(a.part_id, a.content_type, a.content) for a in parsed.attachments] == [
        ("", "application/zip", b"PK")
    ]


def test_inline_text_with_content_id_that_is_not_the_body_is_an_attachment() -> None:
    raw = b"""Content-Type: multipart/related; boundary=R

--R
Content-Type: text/html

<p>body</p>
--R
Content-Type: text/html
Content-ID: <frame@x>

<p>frame</p>
--R--
"""
    parsed = parse_message(raw)
    assert parsed.html_body == "<p>body</p>"
    assert [(a.part_id, a.content_id, a.is_inline) for a in parsed.attachments] == [("1", "frame@x", True)]
    assert parsed.snippet == "body"


def test_a_named_inline_text_part_is_a_file_and_the_body_when_nothing_came_before() -> None:
    only = parse_message(
        _msg('Content-Type: text/html\nContent-Disposition: inline; filename="offer.html"', "<b>Offer</b>")
    )
    assert only.html_body == "<b>Offer</b>" and only.snippet == "Offer"
    assert [(a.part_id, a.filename, a.content) for a in only.attachments] == [
        ("", "offer.html", b"<b>Offer</b>")
    ]

    after_a_body = parse_message(
        b"Content-Type: multipart/mixed; boundary=M\n\n--M\nContent-Type: text/html\n\n<p>body</p>\n"
        b"--M\nContent-Type: text/plain; name=notes.txt\n\nnotes\n--M--\n"
    )
    assert (after_a_body.text_body, after_a_body.html_body) == (None, "<p>body</p>")
    assert [(a.part_id, a.filename) for a in after_a_body.attachments] == [("1", "notes.txt")]


def test_one_megabyte_attachment() -> None:
    payload = os.urandom(1024 * 1024)
    raw = (
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\nsee attached\n"
        b"--B\nContent-Type: application/octet-stream; name=big.bin\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(payload)
        + b"--B--\n"
    )
    (attachment,) = parse_message(raw).attachments
    assert (attachment.filename, attachment.size) == ("big.bin", 1024 * 1024)
    assert attachment.sha256 == hashlib.sha256(payload).digest()
    assert attachment.content == payload


# -- charsets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "data", "expected"),
    [
        ("ks_c_5601-1987", "안녕하세요".encode("cp949"), "안녕하세요"),
        ("iso-8859-8-i", "שלום".encode("iso8859_8"), "שלום"),
        ("gb2312", "中文𠀀".encode("gb18030"), "中文𠀀"),  # GB2312 read as its superset GB18030
        ("x-sjis", "日本語".encode("cp932"), "日本語"),
        ("unknown-8bit", "naïve".encode(), "naïve"),
        ("x-unknown", "na\xefve".encode("cp1252"), "naïve"),
        ("us-ascii", "smart \u201cquotes\u201d".encode("cp1252"), "smart \u201cquotes\u201d"),
        ("us-ascii", "utf-8 in ascii: é".encode(), "utf-8 in ascii: é"),
        ("iso-8859-1", b"\x93quoted\x94", "\u201cquoted\u201d"),  # Latin-1 read as windows-1252
        ('"UTF-8"', "é".encode(), "é"),
        ("uft-8", "é".encode(), "é"),
        ("utf-8", "\ufeffbom".encode(), "bom"),
    ],
)
def test_charset_aliases_decode_without_errors(charset: str, data: bytes, expected: str) -> None:
    raw = _msg(f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: 8bit", data)
    parsed = parse_message(raw)
    assert parsed.text_body == expected
    assert parsed.parse_errors == []


def test_wrong_declared_charset_falls_back_and_is_reported() -> None:
    raw = _msg("Content-Type: text/plain; charset=utf-8", "caf\xe9 \x80".encode("latin-1"))
    parsed = parse_message(raw)
    assert parsed.text_body == "café €"
    assert parsed.parse_errors == ["message: text is not valid 'utf-8'; read as windows-1252"]


def test_a_few_bad_bytes_keep_the_declared_multibyte_charset() -> None:
    data = "我知道你需要更多機會".encode("big5") + b"\xff" + "來吧".encode("big5")
    parsed = parse_message(_msg("Content-Type: text/plain; charset=big5", data))
    assert parsed.text_body == "我知道你需要更多機會\ufffd來吧"
    assert parsed.parse_errors == [
        "message: text is not valid 'big5'; read as big5hkscs with replacement characters"
    ]


def test_unknown_charset_is_reported() -> None:
    parsed = parse_message(_msg("Content-Type: text/plain; charset=klingon", b"qapla'"))
    assert parsed.text_body == "qapla'"
    assert parsed.parse_errors == ["message: unknown charset 'klingon'; read as ascii"]


@pytest.mark.parametrize("label", ["base64", "zlib", "rot13", "unicode_escape", "idna", "undefined"])
def test_codecs_that_are_not_charsets_are_refused(label: str) -> None:
    assert resolve(label) == "?"
    text, problem = decode_text(b"\\x41 abc", label)
    assert text == "\\x41 abc" and problem is not None


def test_utf7_cannot_smuggle_lone_surrogates() -> None:
    parsed = parse_message(
        _msg("Content-Type: text/plain; charset=utf-7\nSubject: =?utf-7?Q?+2D0-?=", b"+2D0-")
    )
    _storable(parsed)


def test_decode_words_keeps_undecodable_words() -> None:
    errors: list[str] = []
    assert decode_words("=?utf-8?B?w6k?= =?utf-8?B?!!!?= x", errors) == "é =?utf-8?B?!!!?= x"
    assert errors == ["encoded word: undecodable '=?utf-8?B?!!!?='"]


# -- broken input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"", b"\x00\xff not a mail", b"\n\n\n", b":", b"From nobody\n", b"\xff" * 100]
)
def test_garbage_never_raises(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert parsed.raw_size == len(raw)
    _storable(parsed)


def test_garbage_body_is_kept_as_text() -> None:
    parsed = parse_message(b"\x00\xff not a mail")
    assert parsed.text_body == "ÿ not a mail"
    assert parsed.parse_errors == ["message: MissingHeaderBodySeparatorDefect"]


def test_multipart_without_boundary_is_read_as_text() -> None:
    parsed = parse_message(_msg("Content-Type: multipart/alternative", "<html><body>hi</body></html>"))
    assert parsed.html_body == "<html><body>hi</body></html>"
    assert parsed.snippet == "hi"
    assert "message: multipart/alternative without readable parts; read as text/html" in parsed.parse_errors


def test_deep_nesting_keeps_the_headers() -> None:
    depth = 3000
    raw = b"Subject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n"
    raw += b"".join(
        b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1) for i in range(depth)
    )
    parsed = parse_message(raw)
    assert parsed.subject == "deep"
    assert parsed.parse_errors  # says what could not be read


def test_a_parser_bug_still_yields_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(raw: bytes) -> ParsedMessage:
        raise RuntimeError("boom")

    monkeypatch.setattr(mime._Reader, "read", broken)
    parsed = parse_message(b"Subject: x\n\nbody")
    assert parsed.raw_size == 16
    assert parsed.parse_errors == ["unreadable message: RuntimeError: boom"]


# -- snippet ------------------------------------------------------------------------------------


def test_snippet_from_html_without_scripts_styles_and_entities() -> None:
    html = (
        "<html><head><title>Title</title><style>p {color: red}</style></head><body>"
        "<script>var secret = 1;</script><p>Fish &amp; chips&nbsp;&mdash;\n\n  today</p>"
        "<span style='display:none'>&zwnj;&zwnj;</span><p>" + "word " * 100 + "</p></body></html>"
    )
    parsed = parse_message(_msg("Content-Type: text/html; charset=utf-8", html))
    assert parsed.snippet.startswith("Fish & chips \u2014 today word word")
    assert "secret" not in parsed.snippet and "color" not in parsed.snippet and "Title" not in parsed.snippet
    assert 150 <= len(parsed.snippet) <= 200 and not parsed.snippet.endswith(" ")


def test_snippet_folds_whitespace_of_text() -> None:
    parsed = parse_message(_msg("Subject: x", "  Hello\n\n\tworld  \n" + "x" * 500))
    assert parsed.snippet.startswith("Hello world x")
    assert len(parsed.snippet) == 200


def test_blank_text_body_falls_back_to_html_for_the_snippet() -> None:
    raw = (
        b"Content-Type: multipart/alternative; boundary=A\n\n--A\nContent-Type: text/plain\n\n \n"
        b"--A\nContent-Type: text/html\n\n<p>from html</p>\n--A--\n"
    )
    assert parse_message(raw).snippet == "from html"


def test_read_corpus_message_strips_the_mbox_line(tmp_path: Path) -> None:
    path = tmp_path / "m.txt"
    path.write_bytes(b"From someone@example.com  Thu Aug 22 12:36:23 2002\nSubject: s\n\nbody\n")
    assert read_corpus_message(path) == b"Subject: s\n\nbody\n"
    path.write_bytes(b"Subject: s\n\nbody\n")
    assert read_corpus_message(path) == b"Subject: s\n\nbody\n"


# -- fuzzing ------------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        b"\n", b"\r\n", b"\r", b"\x00", b"\xff", b"\xe9", b":", b";", b"<", b">", b'"', b"=?", b"?=",
        b"=?utf-8?B?", b"=?utf-7?Q?+2D0-?=", b"=?x?Q?=E9?=", b"Subject: ", b"From: ", b"To: ",
        b"Date: ", b"References: ", b"Content-Type: multipart/mixed; boundary=b\n", b"--b\n", b"--b--\n",
        b"Content-Type: message/rfc822\n", b"Content-Type: message/delivery-status\n",
        b"Content-Type: text/html; charset=utf-7\n", b"Content-Transfer-Encoding: base64\n",
        b"Content-Transfer-Encoding: quoted-printable\n", b"Content-Transfer-Encoding: x-uuencode\n",
        b"Content-Disposition: attachment; filename*=x''%ff%fe\n", b"Content-ID: <a>\n",
        b"begin 644 f\n", b"<html><script>x</script>", b"&amp;", b"\t", b" ", b"abc", b"@",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_binary_never_raises(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert parsed.raw_size == len(raw)
    _storable(parsed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_PIECES, st.binary(max_size=8)), max_size=60).map(b"".join))
def test_fuzz_mime_shaped_bytes_never_raise(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert parsed.raw_size == len(raw)
    _storable(parsed)
