"""mail.tracking.instrument: which links are rewritten, the open pixel, fragments and documents, the corpus."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from mail.mime import parse_message, read_corpus_message
from mail.tracking.instrument import (
    MAX_LINK_TEXT,
    Instrumented,
    TrackedLink,
    instrument_html,
    original_links,
)
from mail.tracking.tokens import TokenKind, TokenSigner, TrackingToken

BASE = "https://t.mailray.test"
SIGNER = TokenSigner({3: os.urandom(32)})
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "spamassassin"
CLICK_HREF = re.compile(re.escape(BASE) + r"/t/c/([A-Za-z0-9_-]+)")
PIXEL = re.compile(
    r'<img src="' + re.escape(BASE) + r'/t/o/([A-Za-z0-9_-]+)\.gif" width="1" height="1" alt="" '
    r'style="display:none!important;border:0;width:1px;height:1px">'
)
HREF_ATTRIBUTE = re.compile(r'( href="[^"]*")')

fuzz = hypothesis_settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _instrument(html: str, **options: object) -> Instrumented:
    return instrument_html(
        html,
        email_id=options.pop("email_id", 77),  # type: ignore[arg-type]
        recipient_id=options.pop("recipient_id", 1234),  # type: ignore[arg-type]
        signer=SIGNER,
        base_url=options.pop("base_url", BASE),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


def _plain(html: str) -> str:
    """The input as the parser serializes it: what instrumenting must leave of everything else."""
    return _instrument(html, track_opens=False, track_clicks=False).html


def _click(href: str) -> TrackingToken:
    match = CLICK_HREF.fullmatch(href)
    assert match, href
    return SIGNER.verify(match.group(1))


def _hrefs(html: str) -> list[str]:
    return [href for href, _ in original_links(html)]


# --- which links ----------------------------------------------------------------------------------


def test_absolute_http_links_are_rewritten_in_order() -> None:
    html = (
        '<p>Read <a href="https://example.com/a?x=1&amp;y=2">the <b>post</b></a>, '
        '<a href="mailto:ana@example.com">write</a> or '
        '<a class="btn" href="http://example.org/b" target="_blank">buy</a>.</p>'
        '<a href="https://example.com/a?x=1&amp;y=2">again</a>'
    )
    result = _instrument(html, track_opens=False)
    assert result.links == [
        TrackedLink(position=0, url="https://example.com/a?x=1&y=2", text="the post"),
        TrackedLink(position=1, url="http://example.org/b", text="buy"),
        TrackedLink(position=2, url="https://example.com/a?x=1&y=2", text="again"),
    ]
    hrefs = _hrefs(result.html)
    assert hrefs[1] == "mailto:ana@example.com"
    tokens = [_click(hrefs[index]) for index in (0, 2, 3)]
    assert [(t.kind, t.email_id, t.recipient_id, t.link, t.key_id) for t in tokens] == [
        (TokenKind.CLICK, 77, 1234, position, 3) for position in range(3)
    ]
    assert '<a class="btn" href="' + BASE + "/t/c/" in result.html  # other attributes stay, in order
    assert ' target="_blank">buy</a>.</p>' in result.html


@pytest.mark.parametrize(
    "href",
    [
        "mailto:ana@example.com",
        "MAILTO:ana@example.com",
        "tel:+15551234567",
        "sms:+15551234567",
        "#top",
        "javascript:alert(1)",
        "data:text/html,<b>x</b>",
        "",
        "/relative/path",
        "page.html",
        "//cdn.example.com/protocol-relative",
        "ftp://files.example.com/x",
        "http:/one-slash.example.com",
        "http://",
        "https:///no-host",
        BASE + "/u/AQEDBQ",
        BASE + "/t/c/already-tracked",
    ],
)
def test_links_that_are_left_alone(href: str) -> None:
    html = f'<p><a href="{href}">x</a></p>'
    result = _instrument(html, track_opens=False)
    assert result.links == []
    assert result.html == _plain(html)
    assert _hrefs(result.html) == [href]


@pytest.mark.parametrize(
    "anchor",
    [
        '<a href="https://example.com/unsubscribe?u=9">stop</a>',
        '<a href=" https://example.com/unsubscribe?u=9 ">stop</a>',
        '<a href="https://example.com/prefs" data-mailray-unsubscribe>stop</a>',
        '<a href="https://example.com/prefs" data-mailray-notrack="">do not track me</a>',
        '<a href="https://example.com/prefs" DATA-MAILRAY-NOTRACK>do not track me</a>',
        "<a>no href</a>",
        "<a href>empty href</a>",
    ],
)
def test_unsubscribe_and_marked_links_are_left_alone(anchor: str) -> None:
    html = f'<div>{anchor}<a href="https://example.com/shop">shop</a></div>'
    result = _instrument(html, track_opens=False, unsubscribe_url="https://example.com/unsubscribe?u=9")
    assert [(link.position, link.url) for link in result.links] == [(0, "https://example.com/shop")]
    untouched, _ = result.html.split('<a href="' + BASE + "/t/c/")
    assert untouched == _plain(html).split('<a href="https://example.com/shop"')[0]
    assert _hrefs(result.html)[:-1] == _hrefs(html)[:-1]


def test_an_unsubscribe_url_only_skips_that_url() -> None:
    html = '<a href="https://example.com/unsubscribe?u=10">other</a>'
    assert len(_instrument(html, unsubscribe_url="https://example.com/unsubscribe?u=9").links) == 1


def test_scheme_case_and_surrounding_whitespace() -> None:
    html = '<a href="HTTPS://Example.com/A">a</a><a href="\n  http://example.com/b  ">b</a>'
    result = _instrument(html, track_opens=False)
    # The url is kept as written; the redirector, like a browser, strips the whitespace.
    assert [link.url for link in result.links] == ["HTTPS://Example.com/A", "\n  http://example.com/b  "]
    assert [_click(href).link for href in _hrefs(result.html)] == [0, 1]


def test_positions_count_rewritten_links_only() -> None:
    anchors = []
    for index in range(30):
        anchors.append(f'<a href="#s{index}">skip</a>')
        anchors.append(f'<a href="https://example.com/{index}">go {index}</a>')
    result = _instrument("<ul><li>" + "</li><li>".join(anchors) + "</li></ul>", track_opens=False)
    assert [(link.position, link.url, link.text) for link in result.links] == [
        (index, f"https://example.com/{index}", f"go {index}") for index in range(30)
    ]
    hrefs = _hrefs(result.html)
    assert hrefs[0::2] == [f"#s{index}" for index in range(30)]
    assert [_click(href).link for href in hrefs[1::2]] == list(range(30))


def test_link_text_is_what_a_reader_sees() -> None:
    html = (
        '<a href="http://a.example">  Big\n\t<b>sale</b>&nbsp;today<br>only </a>'
        '<a href="http://b.example">J<b>oh</b>n<script>var x = 1;</script><style>a{}</style></a>'
        '<a href="http://c.example"><img src="logo.png" alt="Logo"></a>'
        f'<a href="http://d.example">{"word " * 200}</a>'
    )
    links = _instrument(html).links
    assert [link.text for link in links[:3]] == ["Big sale today only", "John", ""]
    assert links[3].text == " ".join(["word"] * 100)  # cut at 500 characters, then stripped
    assert len(links[3].text) == MAX_LINK_TEXT - 1
    long_word = _instrument(f'<a href="http://e.example">{"x" * 600}</a>').links[0].text
    assert long_word == "x" * MAX_LINK_TEXT


def test_tracking_off() -> None:
    html = '<html><body><a href="https://example.com">x</a></body></html>'
    assert _instrument(html, track_clicks=False, track_opens=False).html == _plain(html)
    no_clicks = _instrument(html, track_clicks=False)
    assert no_clicks.links == [] and _hrefs(no_clicks.html) == ["https://example.com"]
    assert len(PIXEL.findall(no_clicks.html)) == 1
    no_opens = _instrument(html, track_opens=False)
    assert len(no_opens.links) == 1 and "/t/o/" not in no_opens.html


def test_instrumenting_twice_does_not_wrap_twice() -> None:
    html = '<p><a href="https://example.com">x</a> <a href="#a">a</a></p>'
    once = _instrument(html, track_opens=False)
    twice = _instrument(once.html, track_opens=False)
    assert twice.links == [] and twice.html == once.html


# --- the open pixel, fragments and documents ------------------------------------------------------


def test_fragment_stays_a_fragment_with_the_pixel_at_the_end() -> None:
    html = '<style>p { color: red }</style><p>Hi <a href="https://example.com">there</a></p> bye'
    result = _instrument(html, email_id=5, recipient_id=None)
    body, pixel_token = PIXEL.split(result.html)[:2]
    assert PIXEL.split(result.html)[2] == ""  # the pixel is the very end
    assert body.startswith("<style>p { color: red }</style><p>Hi <a href=")
    assert body.endswith(">there</a></p> bye")
    assert not re.search(r"<(html|head|body)\b", result.html)
    assert SIGNER.verify(pixel_token) == TrackingToken(kind=TokenKind.OPEN, email_id=5, key_id=3)


@pytest.mark.parametrize("html", ["", "plain text, no tags", "<table><td>cell", "<!-- just a comment -->"])
def test_small_fragments(html: str) -> None:
    result = _instrument(html)
    assert result.html == _plain(html) + PIXEL.search(result.html).group()  # type: ignore[union-attr]
    assert "<body" not in result.html


def test_document_gets_the_pixel_as_last_child_of_body() -> None:
    html = (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.0 Transitional//EN">\n'
        "<html><head><title>News</title></head>"
        '<body bgcolor="#ffffff"><table><tr><td><a href="http://example.com/x">x</a></td></tr></table>'
        "<p>footer</body></html>"
    )
    result = _instrument(html, email_id=9, recipient_id=10)
    # The doctype is the source's: lexbor alone would write <!DOCTYPE html> (no quirks mode).
    assert result.html.startswith('<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.0 Transitional//EN"><html>')
    tree = LexborHTMLParser(result.html)
    assert tree.body is not None
    last = tree.body.last_child
    assert last is not None and last.tag == "img"
    assert last.attributes == {
        "src": last.attributes["src"],
        "width": "1",
        "height": "1",
        "alt": "",
        "style": "display:none!important;border:0;width:1px;height:1px",
    }
    token = SIGNER.verify(PIXEL.search(result.html).group(1))  # type: ignore[union-attr]
    assert (token.kind, token.email_id, token.recipient_id, token.link) == (TokenKind.OPEN, 9, 10, None)
    assert result.html.endswith("<p>footer</p>" + PIXEL.search(result.html).group() + "</body></html>")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "html",
    [
        "<body><p>x</p>",
        "<HTML><p>x</p></HTML>",
        "<head><title>t</title></head><p>x</p>",
        "<!doctype html><p>x</p>",
        "<!-- c --><!DOCTYPE html SYSTEM 'about:legacy-compat'>\n<p>x</p>",
    ],
)
def test_documents_come_back_whole(html: str) -> None:
    result = _instrument(html)
    assert result.html.startswith(("<html>", "<!-- c --><!DOCTYPE html SYSTEM", "<!doctype html>"))
    assert result.html.endswith("</body></html>")
    assert result.html.count("</body>") == 1 and len(PIXEL.findall(result.html)) == 1
    if "SYSTEM" in html:
        assert "<!DOCTYPE html SYSTEM 'about:legacy-compat'>" in result.html


def test_a_frameset_document_gets_no_pixel() -> None:
    html = '<html><frameset><frame src="https://example.com"></frameset></html>'
    assert _instrument(html).html == _plain(html)


def test_base_url_with_or_without_trailing_slash() -> None:
    html = '<a href="https://example.com">x</a>'
    assert _instrument(html, base_url=BASE + "/").html == _instrument(html).html
    local = _instrument(html, base_url="http://localhost:8000/", track_opens=False).html
    assert re.fullmatch(r'<a href="http://localhost:8000/t/c/[A-Za-z0-9_-]+">x</a>', local)
    for bad in ("t.mailray.test", "/t", "ftp://t.mailray.test", ""):
        with pytest.raises(ValueError, match="base_url"):
            _instrument(html, base_url=bad)


# --- invalid HTML ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "html",
    [
        "<a href=",
        '<a href="http://x.example>unclosed',
        "<<<>>></a></a></body></html>",
        '</body></html><a href="http://late.example">late</a>',
        '<a href="http://x.example"><a href="http://y.example">nested</a></a>',
        'a\x00b<a href="http://nul\x00.example">q</a>',
        'lone \ud800 surrogate <a href="http://s\udfff.example">s</a>',
        "<table><a href='http://in-table.example'>t</a><tr><td>x</td></table>",
        "<svg><a href='http://svg.example'><text>s</text></a></svg>",
        "<template><a href='http://template.example'>t</a></template>",
        "<" * 10_000,
    ],
)
def test_invalid_html_does_not_raise(html: str) -> None:
    result = _instrument(html)
    assert isinstance(result.html, str)
    for link in result.links:
        assert link.url in html or "\x00" in html or "\ud800" in html
    assert len(PIXEL.findall(result.html)) == 1


@fuzz
@given(
    html=st.text(max_size=300)
    | st.lists(
        st.sampled_from(
            [
                "<a href='http://x.example/?a=1&b=2'>",
                '<a href="#top">',
                "</a>",
                "<p>",
                "</p>",
                "<table><tr><td>",
                "</td></tr></table>",
                "<body>",
                "</body>",
                "<html>",
                "<!--",
                "-->",
                "<!DOCTYPE html>",
                "<script>",
                "</script>",
                "text &amp; more",
                "<a",
                " href=",
                '"',
                "<br>",
            ]
        ),
        max_size=25,
    ).map("".join)
)
def test_any_input_is_instrumented_without_raising(html: str) -> None:
    result = _instrument(html)
    assert len(PIXEL.findall(result.html)) <= 1
    hrefs = _hrefs(result.html)
    clicks = [_click(href) for href in hrefs if CLICK_HREF.fullmatch(href)]
    assert [token.link for token in clicks] == list(range(len(result.links)))
    assert [text for _, text in original_links(html)] == [text for _, text in original_links(result.html)]


# --- the corpus -----------------------------------------------------------------------------------


def _corpus_html() -> list[tuple[str, str]]:
    bodies = []
    for folder in ("easy-ham-1", "hard-ham-1"):
        for path in sorted((CORPUS / folder).iterdir()):
            html = parse_message(read_corpus_message(path)).html_body
            if html is not None:
                bodies.append((f"{folder}/{path.name}", html))
    return bodies


def test_corpus_ham_html_keeps_every_link_and_everything_else() -> None:
    if not all((CORPUS / folder).is_dir() for folder in ("easy-ham-1", "hard-ham-1")):
        pytest.skip(f"no SpamAssassin corpus under {CORPUS}")
    bodies = _corpus_html()
    assert len(bodies) >= 100
    links = rewritten = 0
    for name, html in bodies:
        result = _instrument(html, email_id=len(name), recipient_id=7)
        before, after = original_links(html), original_links(result.html)
        # Every link is still there, in order, with the same text.
        assert [text for _, text in after] == [text for _, text in before], name
        tracked = iter(result.links)
        for (original, _), (written, _) in zip(before, after, strict=True):
            if CLICK_HREF.fullmatch(written):
                token, link = _click(written), next(tracked)
                assert (token.email_id, token.recipient_id, token.link) == (len(name), 7, link.position)
                assert link.url == original, name
                rewritten += 1
            else:
                assert written == original, name
        assert next(tracked, None) is None, name
        # Everything but the rewritten hrefs and the pixel is as the parser writes it.
        pixels = PIXEL.findall(result.html)
        assert len(pixels) == 1, name
        assert SIGNER.verify(pixels[0]).kind is TokenKind.OPEN
        plain = HREF_ATTRIBUTE.split(_plain(html))
        written_parts = HREF_ATTRIBUTE.split(PIXEL.sub("", result.html))
        assert len(written_parts) == len(plain), name
        changed = [index for index, (a, b) in enumerate(zip(plain, written_parts, strict=True)) if a != b]
        assert len(changed) == len(result.links), name
        assert all(CLICK_HREF.search(written_parts[index]) for index in changed), name
        links += len(before)
    print(f"corpus: {len(bodies)} HTML messages, {links} links, {rewritten} rewritten")
    assert rewritten > 1000
