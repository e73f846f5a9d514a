"""A campaign's content compiled into templates with slots, once per content and options.

The HTML goes through mail.tracking.instrument's `instrument_html` once, with a signer that writes
markers where tokens go (so which links are tracked stays instrument's rule); the instrumented
HTML is then cut into literal text and slots: placeholders (escaped by context: text, URL
attribute), each tracked link's click URL, the open pixel's URL, the unsubscribe URL, and the
places of the preheader (first in <body>) and the unsubscribe footer (last, before the pixel).
mail.campaigns.render fills the slots for each recipient.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator, Sequence

import msgspec
from selectolax.lexbor import LexborHTMLParser

from mail.campaigns.personalize import UNSUBSCRIBE_URL, Mode, Part, Placeholder, Template, header_safe, parse
from mail.campaigns.wire import Body
from mail.tracking.instrument import instrument_html
from mail.tracking.tokens import MIN_MAC_KEY_BYTES, TokenSigner, TrackingToken

PREHEADER_STYLE = (
    "display:none!important;visibility:hidden;mso-hide:all;font-size:1px;line-height:1px;"
    "max-height:0;max-width:0;opacity:0;overflow:hidden;color:transparent"
)
# Zero-width filler after the preview text, so clients show nothing of the body after it.
PREHEADER_PADDING = "&#847;&zwnj;&nbsp;" * 24
FOOTER_STYLE = "margin:24px 0 0;font-size:12px;line-height:18px;color:#777777;text-align:center"
UNSUBSCRIBE_TEXT = "Unsubscribe"

_RAW_TEXT = "script|style|xmp|iframe|noembed|noframes|noscript"
# Lexbor's serialization quotes every attribute value with " and escapes " < > inside it, so a
# `>` always ends a tag here; comments and raw-text elements are skipped as wholes.
_MARKUP = re.compile(
    rf"<!--.*?-->|<({_RAW_TEXT})\b[^>]*>.*?</\1\s*>|<([A-Za-z][A-Za-z0-9-]*)[^>]*>", re.S | re.I
)
_URL_ATTRIBUTE = re.compile(
    r'\s(?:href|src|action|formaction|background|cite|poster|longdesc|usemap|data)="([^"]*)"', re.I
)
_BLANK_LINES = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t\f\u00a0]+")
_LINE_BREAKING = frozenset({"br", "li", "tr"})
_PARAGRAPHS = frozenset(
    {"p", "div", "table", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "ul", "ol"}
)
_NOT_VISIBLE = frozenset({"script", "style", "template", "head", "title"})


class Click(msgspec.Struct, frozen=True):
    position: int


class Open(msgspec.Struct, frozen=True):
    pass


class Unsubscribe(msgspec.Struct, frozen=True):
    """The unsubscribe URL, escaped for `mode` (never percent-encoded: it is a whole URL)."""

    mode: Mode


OPEN = Open()


class _MarkerSigner(TokenSigner):
    """Writes a recognizable marker where instrument_html puts a token."""

    def __init__(self) -> None:
        super().__init__({1: bytes(MIN_MAC_KEY_BYTES)})

    def sign(self, token: TrackingToken) -> str:
        return "o" if token.link is None else f"c{token.link}"


class LinkTemplate(msgspec.Struct, frozen=True):
    position: int
    url: Template
    text: Template


class _Mark(msgspec.Struct, frozen=True):
    """Where the preheader or the footer goes, before they are expanded."""

    what: str


_PREHEADER = _Mark("preheader")
_FOOTER = _Mark("footer")


def header_template(text: str) -> Template:
    return Template(
        header_safe(part) if isinstance(part, str) else part
        for part in _with_unsubscribe(parse(text, Mode.HEADER), Mode.HEADER)
    )


def _with_unsubscribe(parts: Sequence[Part], mode: Mode) -> list[object]:
    """`parts` with `{{unsubscribeUrl}}` as the unsubscribe slot, escaped for `mode`."""
    return [
        Unsubscribe(mode) if isinstance(part, Placeholder) and part.name == UNSUBSCRIBE_URL else part
        for part in parts
    ]


def compile_text(text: str, *, unsubscribe: bool) -> Body:
    """The text body: placeholders as written, the unsubscribe URL at the end unless placed."""
    parts = _with_unsubscribe(parse(text, Mode.TEXT), Mode.TEXT)
    if unsubscribe and _UNSUBSCRIBE_TEXT_SLOT not in parts:
        parts += [f"\n\n{UNSUBSCRIBE_TEXT}: ", _UNSUBSCRIBE_TEXT_SLOT, "\n"]
    elif not unsubscribe:
        parts = ["" if part == _UNSUBSCRIBE_TEXT_SLOT else part for part in parts]
    return Body(parts)


_UNSUBSCRIBE_TEXT_SLOT = Unsubscribe(Mode.TEXT)
_UNSUBSCRIBE_HTML_SLOT = Unsubscribe(Mode.HTML)


def compile_html(
    source: str, preview_text: str | None, *, track_opens: bool, track_clicks: bool, unsubscribe: bool
) -> tuple[Body, tuple[LinkTemplate, ...]]:
    """The HTML body, and its tracked links' targets and texts (by position) as templates."""
    nonce = secrets.token_hex(8)  # so no template can spell a marker
    instrumented = instrument_html(
        source,
        email_id=1,
        recipient_id=None,
        signer=_MarkerSigner(),
        base_url=f"https://m{nonce}.invalid",
        track_opens=track_opens,
        track_clicks=track_clicks,
    )
    markup = _with_marks(instrumented.html, nonce)
    marker = re.compile(rf"https://m{nonce}\.invalid/t/(?:c/c([0-9]+)|o/o\.gif)|\x00{nonce}([PF])\x00")
    parts: list[object] = []
    for segment, mode, whole_url in _segments(markup):
        at = 0
        for match in marker.finditer(segment):
            parts += _markup_parts(segment[at : match.start()], mode, whole_url and at == 0)
            if match.group(1) is not None:
                parts.append(Click(int(match.group(1))))
            elif match.group(2) is not None:
                parts.append(_PREHEADER if match.group(2) == "P" else _FOOTER)
            else:
                parts.append(OPEN)
            at = match.end()
        parts += _markup_parts(segment[at:], mode, whole_url and at == 0)

    if not unsubscribe:
        parts = ["" if part == _UNSUBSCRIBE_HTML_SLOT else part for part in parts]
    has_unsubscribe_link = _UNSUBSCRIBE_HTML_SLOT in parts
    expanded: list[object] = []
    for part in parts:
        if part == _PREHEADER:
            expanded += _preheader(preview_text)
        elif part == _FOOTER:
            if unsubscribe and not has_unsubscribe_link:
                expanded += _footer()
        else:
            expanded.append(part)
    links = tuple(
        LinkTemplate(
            position=link.position,
            url=Template(_with_unsubscribe(parse(link.url, Mode.URL), Mode.URL)),
            text=Template(parse(link.text, Mode.TEXT)),
        )
        for link in instrumented.links
    )
    return Body(expanded), links


def _with_marks(markup: str, nonce: str) -> str:
    """`markup` with the preheader's mark first in <body> and the footer's last (before the pixel).

    A fragment gets them at its start and end; a document without a body (a frameset) none.
    """
    body_start = pixel_start = None
    is_document = False
    for match in _MARKUP.finditer(markup):
        tag = (match.group(2) or "").lower()
        if tag == "body" and body_start is None:
            body_start = match.end()
        elif tag in ("html", "frameset"):
            is_document = True
        elif tag == "img" and pixel_start is None and f"m{nonce}.invalid/t/o/" in match.group():
            pixel_start = match.start()
    if body_start is None and is_document:
        return markup
    if body_start is None:  # a fragment
        body_start, body_end = 0, len(markup)
    else:
        body_end = markup.rfind("</body>")
        if body_end < body_start:
            body_end = len(markup)
    if pixel_start is not None:
        body_end = pixel_start
    return "".join(
        (
            markup[:body_start],
            f"\x00{nonce}P\x00",
            markup[body_start:body_end],
            f"\x00{nonce}F\x00",
            markup[body_end:],
        )
    )


def _segments(markup: str) -> Iterator[tuple[str, Mode, bool]]:
    """`markup` cut into runs of HTML and of URL attribute values (True: the whole value)."""
    at = 0
    for match in _MARKUP.finditer(markup):
        if match.start() > at:
            yield markup[at : match.start()], Mode.HTML, False
        token = match.group()
        if token.startswith("<!--"):
            yield token, Mode.HTML, False
        else:
            tag_end = token.index(">") + 1  # a raw-text element: its start tag, then its text
            tag = token[:tag_end]
            tag_at = 0
            for attribute in _URL_ATTRIBUTE.finditer(tag):
                yield tag[tag_at : attribute.start(1)], Mode.HTML, False
                yield attribute.group(1), Mode.URL, True
                tag_at = attribute.end(1)
            yield tag[tag_at:], Mode.HTML, False
            if tag_end < len(token):
                yield token[tag_end:], Mode.HTML, False
        at = match.end()
    if at < len(markup):
        yield markup[at:], Mode.HTML, False


def _markup_parts(text: str, mode: Mode, url_start: bool) -> list[object]:
    """Literals and placeholders of a run of serialized HTML (defaults stay as the HTML has them)."""
    if not text:
        return []
    parts = _with_unsubscribe(parse(text, mode), Mode.HTML)
    first = parts[0]
    if url_start and isinstance(first, Placeholder):
        # `href="{{attr.site}}"`: the value is the URL itself, not a piece of one.
        parts[0] = msgspec.structs.replace(first, mode=Mode.HTML)
    return parts


def _preheader(preview_text: str | None) -> list[object]:
    if not preview_text or not preview_text.strip():
        return []
    parts: list[object] = [f'<span style="{PREHEADER_STYLE}">']
    for part in _with_unsubscribe(parse(preview_text, Mode.HTML), Mode.HTML):
        if isinstance(part, str):
            parts.append(html.escape(part))  # the preview is plain text
        elif isinstance(part, Placeholder):
            parts.append(msgspec.structs.replace(part, default=html.escape(part.default)))
        else:
            parts.append(part)
    parts.append(f"{PREHEADER_PADDING}</span>")
    return parts


def _footer() -> list[object]:
    return [
        f'<p style="{FOOTER_STYLE}"><a href="',
        _UNSUBSCRIBE_HTML_SLOT,
        f'" data-mailray-unsubscribe="" style="color:#777777">{UNSUBSCRIBE_TEXT}</a></p>',
    ]


def text_from_html(source: str) -> str:
    """The visible text of `source`, block elements on lines of their own (placeholders kept)."""
    if not source:
        return ""
    tree = LexborHTMLParser(source)
    root = tree.body or tree.root
    if root is None:
        return ""
    pieces: list[str] = []
    for node in root.traverse(include_text=True):
        tag = node.tag
        if tag == "-text":
            parent = node.parent
            if parent is None or parent.tag not in _NOT_VISIBLE:
                pieces.append(node.text_content or "")
        elif tag in _PARAGRAPHS:
            pieces.append("\n\n")
        elif tag in _LINE_BREAKING:
            pieces.append("\n")
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(pieces).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
