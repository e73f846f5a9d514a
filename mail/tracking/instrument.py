"""Instrument outgoing HTML: links through the click redirector, an open pixel at the end.

Rewritten: every `<a href>` whose href is an absolute http(s) URL (ASCII whitespace around it
aside, as browsers read it) becomes `{base_url}/t/c/{click token}`; `links[position]` keeps the
href as the parser gives it (entities decoded, nothing else touched) and the link's visible text.
Positions count rewritten links only, in document order. Left exactly as they are: `mailto:`,
`tel:`, `sms:`, `javascript:`, `data:` and every other scheme, in-page anchors, relative and empty
hrefs, links marked `data-mailray-notrack`, and unsubscribe links (href equal to
`unsubscribe_url`, marked `data-mailray-unsubscribe`, or under `{base_url}/u/`). Links already
under `{base_url}/t/` are left too, so instrumenting twice does not wrap a link twice.

The open pixel (a 1x1 `<img>`, written as HTML5 writes void elements: no ` />`) is the last child
of `<body>`; a `<frameset>` document has no body and gets none. The input is a document when it
has a doctype or an `<html>`, `<head>` or `<body>` tag anywhere (a plain text search, so such a
tag inside a comment counts too); then a full document comes back. Anything else is a fragment
(what an editor or a template usually gives): it is parsed as the content of a `<body>`, and comes
back as a fragment with the pixel appended, without an `<html>` or `<body>` added around it.

Parsing is lexbor's (selectolax.lexbor, the engine mail.mime uses; the older selectolax.parser
backend is removed in selectolax 1.0), without DOM mutation events (`WO_EVENTS`), so the tree
holds what the source says. Output is lexbor's serialization of that tree: the browser's reading
of the markup, so invalid HTML never raises but comes back repaired (end tags closed, attributes
quoted, `<tbody>` where a browser adds one). One thing is put back by hand: lexbor writes every
doctype as `<!DOCTYPE html>`, and the original one decides whether mail clients render in quirks
mode, so the original doctype text is kept.
"""

from __future__ import annotations

import re

import msgspec
from selectolax.lexbor import LexborDocumentOptions, LexborHTMLParser, LexborNode

from mail.tracking.tokens import TokenKind, TokenSigner, TrackingToken

MAX_LINK_TEXT = 500
OPEN_PIXEL_STYLE = "display:none!important;border:0;width:1px;height:1px"

_HTML_SPACE = "\t\n\f\r "
_LEADING_SPACE = frozenset(_HTML_SPACE + "\ufeff")
_HTTP_URL = re.compile(r"[\t\n\f\r ]*https?://[^\t\n\f\r /?#\\]", re.IGNORECASE)
_DOCUMENT_TAG = re.compile(r"<(?:!doctype|html|head|body)[\t\n\f\r />]", re.IGNORECASE)
_DOCTYPE = re.compile(r"<!doctype[^>]*>", re.IGNORECASE)
_NOT_VISIBLE = frozenset({"script", "style", "template"})
_BREAKS_TEXT = frozenset(
    {"br", "p", "div", "li", "tr", "td", "th", "table", "hr", "h1", "h2", "h3", "h4", "h5", "h6"}
)


class TrackedLink(msgspec.Struct, frozen=True, kw_only=True):
    """A rewritten link: its click token carries `position`; `url` is where the click goes."""

    position: int
    url: str
    text: str


class Instrumented(msgspec.Struct, frozen=True, kw_only=True):
    html: str
    links: list[TrackedLink]


def instrument_html(
    html: str,
    *,
    email_id: int,
    recipient_id: int | None,
    signer: TokenSigner,
    base_url: str,
    track_opens: bool = True,
    track_clicks: bool = True,
    unsubscribe_url: str | None = None,
) -> Instrumented:
    """`html` with its links rewritten to the click redirector and the open pixel added."""
    base = _base(base_url)
    tree, is_document = _parse(html)
    links: list[TrackedLink] = []
    if track_clicks:
        unsubscribe = unsubscribe_url.strip(_HTML_SPACE) if unsubscribe_url else None
        untracked_prefixes = (f"{base}/u/", f"{base}/t/")
        for anchor in tree.css("a[href]"):
            attributes = anchor.attributes
            href = attributes.get("href") or ""
            if not _HTTP_URL.match(href) or "data-mailray-notrack" in attributes:
                continue
            stripped = href.strip(_HTML_SPACE)
            if (
                "data-mailray-unsubscribe" in attributes
                or stripped == unsubscribe
                or stripped.startswith(untracked_prefixes)
            ):
                continue
            position = len(links)
            token = TrackingToken(
                kind=TokenKind.CLICK, email_id=email_id, recipient_id=recipient_id, link=position
            )
            anchor.attrs["href"] = f"{base}/t/c/{signer.sign(token)}"
            links.append(TrackedLink(position=position, url=href, text=_visible_text(anchor)))

    pixel: LexborNode | None = None
    if track_opens:
        token = TrackingToken(kind=TokenKind.OPEN, email_id=email_id, recipient_id=recipient_id)
        pixel = tree.create_node("img")
        for name, value in (
            ("src", f"{base}/t/o/{signer.sign(token)}.gif"),
            ("width", "1"),
            ("height", "1"),
            ("alt", ""),
            ("style", OPEN_PIXEL_STYLE),
        ):
            pixel.attrs[name] = value

    if is_document:
        if pixel is not None and tree.body is not None:  # a <frameset> document has no body
            tree.body.insert_child(pixel)
        out = _keep_doctype(html, tree.html or "")
    else:
        out = tree.html or ""
        if pixel is not None:
            out += pixel.html or ""
    return Instrumented(html=out, links=links)


def original_links(html: str) -> list[tuple[str, str]]:
    """(href, visible text) of every `<a href>`, in document order, read as `instrument_html` reads."""
    tree, _ = _parse(html)
    return [(anchor.attributes.get("href") or "", _visible_text(anchor)) for anchor in tree.css("a[href]")]


def _base(base_url: str) -> str:
    base = base_url.strip().rstrip("/")
    if not _HTTP_URL.match(base):
        raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
    return base


def _parse(html: str) -> tuple[LexborHTMLParser, bool]:
    """The tree, and whether `html` is a whole document (else a fragment in a body)."""
    if _DOCUMENT_TAG.search(html):
        return LexborHTMLParser(html, options=LexborDocumentOptions.WO_EVENTS), True
    tree = LexborHTMLParser(
        html, is_fragment=True, fragment_tag="body", options=LexborDocumentOptions.WO_EVENTS
    )
    return tree, False


def _visible_text(anchor: LexborNode) -> str:
    """The link's text as a reader sees it: scripts and styles left out, line breaks as spaces."""
    parts: list[str] = []
    for node in anchor.traverse(include_text=True):
        tag = node.tag
        if tag == "-text":
            parent = node.parent
            if parent is None or parent.tag not in _NOT_VISIBLE:
                parts.append(node.text_content or "")
        elif tag in _BREAKS_TEXT:
            parts.append(" ")
    return " ".join("".join(parts).split())[:MAX_LINK_TEXT].rstrip()


def _after_comments(text: str) -> int:
    """Where `text` goes on after leading whitespace and comments (where a doctype may stand)."""
    at = _skip_space(text, 0)
    while text.startswith("<!--", at):
        close = text.find("-->", at + 4)
        if close < 0:
            break
        at = _skip_space(text, close + 3)
    return at


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in _LEADING_SPACE:
        at += 1
    return at


def _keep_doctype(source: str, serialized: str) -> str:
    """`serialized` with the source's own doctype in place of lexbor's `<!DOCTYPE name>`."""
    original = _DOCTYPE.match(source, _after_comments(source))
    if original is None:
        return serialized
    written = _DOCTYPE.match(serialized, _after_comments(serialized))
    if written is None or written.group() == original.group():
        return serialized
    return serialized[: written.start()] + original.group() + serialized[written.end() :]
