"""mail.campaigns.personalize and mail.campaigns.render: placeholders, escaping by context, header
injection, the MIME structure, tracking, unsubscribing, Message-IDs, and the corpus."""

from __future__ import annotations

import email
import os
import re
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.policy import default as default_policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mail.campaigns import render, wire
from mail.campaigns.personalize import Mode, Placeholder, Recipient, Template, header_safe, parse
from mail.campaigns.render import (
    MessageContent,
    RenderedMessage,
    RenderOptions,
    TokenTrackingPlan,
    compile_message,
    message_id,
    render_message,
)
from mail.errors import ValidationError
from mail.mime import parse_message, read_corpus_message
from mail.tracking.instrument import TrackedLink
from mail.tracking.tokens import TokenKind, TokenSigner

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "spamassassin"
CAMPAIGN = uuid.UUID("0b7e6c2d-9e10-4f7a-9a51-6f1d2a5e3c4b")
WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
ANN = Recipient(
    email="ann@example.com",
    first_name="Ann",
    last_name="Lee",
    company="Initech",
    attributes={"plan": "pro", "seats": 12, "trial": False, "ratio": 0.5},
)

fuzz = hypothesis_settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


class FixedPlan:
    """Tracking URLs that say what they are for, so tests can find them."""

    def __init__(self, mailto: str | None = "mailto:unsubscribe@acme.test?subject=unsubscribe") -> None:
        self.mailto = mailto

    def open_url(self) -> str:
        return "https://t.acme.test/t/o/OPEN.gif"

    def click_url(self, position: int) -> str:
        return f"https://t.acme.test/t/c/CLICK{position}"

    def unsubscribe_url(self) -> str:
        return "https://t.acme.test/u/UNSUB"

    def unsubscribe_mailto(self) -> str | None:
        return self.mailto


def _content(**fields: object) -> MessageContent:
    defaults: dict[str, object] = {
        "subject": "Hello {{firstName|there}}",
        "from_name": "Acme News",
        "from_email": "news@acme.test",
        "body_html": "<p>Hi {{firstName|there}}</p>",
        "body_text": "Hi {{firstName|there}}",
    }
    return MessageContent(**{**defaults, **fields})  # type: ignore[arg-type]


def _render(
    content: MessageContent | None = None,
    recipient: Recipient = ANN,
    options: RenderOptions | None = None,
    plan: render.TrackingPlan | None = None,
) -> RenderedMessage:
    return render_message(
        content or _content(),
        recipient,
        options or RenderOptions(),
        plan if plan is not None else FixedPlan(),
        campaign_id=CAMPAIGN,
        date=WHEN,
    )


def _parsed(rendered: RenderedMessage) -> EmailMessage:
    message = email.message_from_bytes(rendered.message, policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def _part(rendered: RenderedMessage, content_type: str) -> str:
    message = _parsed(rendered)
    for part in message.walk():
        if part.get_content_type() == content_type and not part.is_multipart():
            assert isinstance(part, EmailMessage)
            content = part.get_content()
            assert isinstance(content, str)
            return content.replace("\r\n", "\n")
    raise AssertionError(f"no {content_type} part")


def _header_names(raw: bytes) -> list[str]:
    block = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = []
    for line in block.split("\r\n"):
        if line[:1] in (" ", "\t"):
            continue
        names.append(line.split(":", 1)[0])
    return names


# --- placeholders -------------------------------------------------------------------------------


def test_fields_attributes_and_bare_names_fall_back_to_attributes() -> None:
    template = Template.compile(
        "{{firstName}} {{lastName}} {{company}} {{email}} {{attr.plan}} {{plan}} {{seats}} {{trial}} {{ratio}}",
        Mode.TEXT,
    )
    assert template.personalize(ANN) == "Ann Lee Initech ann@example.com pro pro 12 false 0.5"


def test_builtins_win_a_clash_and_attr_reaches_the_attribute() -> None:
    recipient = Recipient(email="a@x.test", first_name="Real", attributes={"firstName": "Shadow"})
    template = Template.compile("{{firstName}}/{{attr.firstName}}", Mode.TEXT)
    assert template.personalize(recipient) == "Real/Shadow"


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        (Recipient(email="a@x.test"), "Hi there, from your team at ."),
        (Recipient(email="a@x.test", first_name="", company="  "), "Hi there, from your team at ."),
        (
            Recipient(email="a@x.test", first_name="Bo", company="Umbrella"),
            "Hi Bo, from your team at Umbrella.",
        ),
    ],
)
def test_missing_or_empty_values_give_the_default_or_nothing(recipient: Recipient, expected: str) -> None:
    template = Template.compile(
        "Hi {{ firstName | there }}, from your team at {{company}}{{nope}}.", Mode.TEXT
    )
    assert template.personalize(recipient) == expected


@pytest.mark.parametrize("text", ["{{}}", "{{ two words }}", "{{ {{", "{firstName}", "{{attr.}}", "}} {{"])
def test_anything_not_a_placeholder_is_literal(text: str) -> None:
    assert Template.compile(text, Mode.TEXT).personalize(ANN) == text


def test_braces_in_literals_survive_compilation() -> None:
    text = "a {x} {{firstName}} }b{ {0} {{"
    assert Template.compile(text, Mode.TEXT).personalize(ANN) == "a {x} Ann }b{ {0} {{"


def test_equal_placeholders_share_one_slot() -> None:
    template = Template(parse("{{firstName}} and {{firstName}} and {{ firstName }}", Mode.TEXT))
    assert len(template.slots) == 1
    assert template.render(["X"]) == "X and X and X"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (Mode.TEXT, "<b>\"Tom\" & 'Jerry'</b>\r\nx"),
        (Mode.HTML, "&lt;b&gt;&quot;Tom&quot; &amp; &#x27;Jerry&#x27;&lt;/b&gt;\r\nx"),
        (Mode.URL, "%3Cb%3E%22Tom%22%20%26%20%27Jerry%27%3C%2Fb%3E%0D%0Ax"),
        (Mode.HEADER, "<b>\"Tom\" & 'Jerry'</b> x"),
    ],
)
def test_values_are_escaped_for_their_context(mode: Mode, expected: str) -> None:
    recipient = Recipient(email="a@x.test", first_name="<b>\"Tom\" & 'Jerry'</b>\r\nx")
    assert Template.compile("{{firstName}}", mode).personalize(recipient) == expected


@given(st.text())
@fuzz
def test_header_values_never_hold_a_line_break_or_control(text: str) -> None:
    safe = header_safe(text)
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", safe)


def test_a_placeholder_knows_what_it_reads() -> None:
    (placeholder,) = parse("{{attr.Plan Type|basic}}", Mode.HTML)
    assert placeholder == Placeholder(
        name="attr.Plan Type", field=None, attribute="Plan Type", default="basic", mode=Mode.HTML
    )


# --- escaping in the message --------------------------------------------------------------------


def test_html_values_are_escaped_in_text_and_attributes_and_text_is_not() -> None:
    content = _content(
        body_html='<p title="{{company}}">Hi {{firstName}}</p><img src="https://cdn.acme.test/a.png" alt="{{company}}">',
        body_text="Hi {{firstName}} from {{company}}",
    )
    evil = Recipient(email="e@x.test", first_name="<script>alert(1)</script>", company='"><b>x</b>')
    rendered = _render(
        content, evil, RenderOptions(track_opens=False, track_clicks=False, enable_unsubscribe=False)
    )
    html = _part(rendered, "text/html")
    assert "<script>" not in html and "<b>x</b>" not in html
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'title="&quot;&gt;&lt;b&gt;x&lt;/b&gt;"' in html
    assert _part(rendered, "text/plain") == 'Hi <script>alert(1)</script> from "><b>x</b>'


def test_a_placeholder_inside_a_url_is_percent_encoded_and_one_that_starts_it_is_the_url() -> None:
    content = _content(
        body_html=(
            '<a href="mailto:help@acme.test?subject=Hi%20{{firstName}}">mail</a>'
            '<a href="{{attr.site}}">site</a>'
        )
    )
    recipient = Recipient(
        email="a+b@x.test", first_name="Jo & Al", attributes={"site": "https://x.test/?a=1&b=2"}
    )
    html = _part(_render(content, recipient, RenderOptions(track_opens=False)), "text/html")
    assert 'href="mailto:help@acme.test?subject=Hi%20Jo%20%26%20Al"' in html
    assert 'href="https://x.test/?a=1&amp;b=2"' in html


def test_defaults_are_template_text_in_their_context() -> None:
    content = _content(
        body_html="<p>{{firstName|Tom &amp; Jerry}}</p>", body_text="{{firstName|Tom & Jerry}}"
    )
    rendered = _render(
        content, Recipient(email="a@x.test"), RenderOptions(enable_unsubscribe=False, track_opens=False)
    )
    assert "<p>Tom &amp; Jerry</p>" in _part(rendered, "text/html")
    assert _part(rendered, "text/plain") == "Tom & Jerry"


# --- headers ------------------------------------------------------------------------------------


def test_a_name_with_a_line_break_cannot_add_a_header() -> None:
    intruder = Recipient(
        email="ann@example.com", first_name="Ann\r\nBcc: victim@x", last_name="Lee\nX-Evil: 1"
    )
    content = _content(subject="Hi {{firstName}}\r\nCc: other@x", from_name="{{firstName}}\nSender: x@y")
    rendered = _render(content, intruder)
    assert _header_names(rendered.message) == [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "X-Campaign-ID",
        "MIME-Version",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Content-Type",
    ]
    parsed = _parsed(rendered)
    assert parsed["Bcc"] is None and parsed["Cc"] is None and parsed["X-Evil"] is None
    assert parsed["Subject"] == "Hi Ann Bcc: victim@x Cc: other@x"
    assert [address.addr_spec for address in parsed["To"].addresses] == ["ann@example.com"]
    assert parsed["To"].addresses[0].display_name == "Ann Bcc: victim@x Lee X-Evil: 1"
    assert [address.addr_spec for address in parsed["From"].addresses] == ["news@acme.test"]
    assert rendered.subject == "Hi Ann Bcc: victim@x Cc: other@x"


def test_exactly_the_headers_we_set_with_reply_to_and_without_unsubscribe() -> None:
    rendered = _render(
        _content(reply_to="help@acme.test"),
        options=RenderOptions(enable_unsubscribe=False),
    )
    assert _header_names(rendered.message) == [
        "From",
        "To",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "X-Campaign-ID",
        "MIME-Version",
        "Content-Type",
    ]
    assert [name for name, _ in rendered.headers] == _header_names(rendered.message)
    assert _parsed(rendered)["Reply-To"] == "help@acme.test"


def test_non_ascii_names_and_subjects_are_rfc2047_encoded() -> None:
    content = _content(subject="Grüße, {{firstName}} ☃", from_name="Zoë from Acme")
    recipient = Recipient(email="jose@example.com", first_name="José", last_name="Núñez")
    rendered = _render(content, recipient)
    block = rendered.message.split(b"\r\n\r\n", 1)[0]
    assert block.isascii()
    assert b"=?utf-8?" in block
    parsed = _parsed(rendered)
    assert parsed["Subject"] == "Grüße, José ☃"
    assert parsed["From"].addresses[0].display_name == "Zoë from Acme"
    assert parsed["To"].addresses[0].display_name == "José Núñez"


def test_every_line_ends_in_crlf_and_header_lines_fold() -> None:
    content = _content(subject="A long subject line " * 8, from_name="Acme")
    rendered = _render(content)
    raw = rendered.message
    assert b"\n" not in raw.replace(b"\r\n", b"")
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in header_block.split(b"\r\n")) <= 78
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


printable_ascii = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=90)
names = st.sampled_from(["Subject", "To", "From", "Reply-To"])


@given(name=st.sampled_from(["Subject", "X-Test"]), value=printable_ascii)
@fuzz
def test_subject_lines_are_written_as_the_smtp_policy_writes_them(name: str, value: str) -> None:
    assert wire.unstructured_line(name, value) == SMTP.header_factory(name, value).fold(policy=SMTP)


@given(
    name=names.filter(lambda name: name != "Subject"),
    display=st.one_of(
        st.just(""),
        st.from_regex(r"[A-Za-z][A-Za-z0-9'.!# -]{0,40}", fullmatch=True),
        printable_ascii.map(lambda text: text.strip()),
    ),
    local=st.from_regex(r"[a-z0-9]{1,8}(?:[.+_-][a-z0-9]{1,8}){0,3}", fullmatch=True),
)
@fuzz
def test_address_lines_are_written_as_the_smtp_policy_writes_them(
    name: str, display: str, local: str
) -> None:
    from email.headerregistry import Address

    address = f"{local}@example.com"
    expected = SMTP.header_factory(name, [Address(display_name=display, addr_spec=address)]).fold(policy=SMTP)
    assert wire.address_line(name, display, address) == expected


def test_addresses_must_be_ascii_and_an_international_domain_is_written_as_idna() -> None:
    rendered = _render(recipient=Recipient(email="ann@bücher.example"))
    assert _parsed(rendered)["To"].addresses[0].addr_spec == "ann@xn--bcher-kva.example"
    with pytest.raises(ValidationError) as raised:
        _render(recipient=Recipient(email="zoë@example.com"))
    assert raised.value.field == "email"
    with pytest.raises(ValidationError):
        _render(recipient=Recipient(email="a@b.test>, evil@x.test"))
    with pytest.raises(ValidationError):
        compile_message(_content(from_email="news@acme.test\r\nBcc: x@y"), RenderOptions())


# --- structure ----------------------------------------------------------------------------------


def test_multipart_alternative_text_then_html_with_the_rendered_bodies() -> None:
    rendered = _render(
        _content(body_text="Hi {{firstName}}!\nBye"), options=RenderOptions(enable_unsubscribe=False)
    )
    parsed = _parsed(rendered)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert _part(rendered, "text/plain") == "Hi Ann!\nBye"
    assert parsed["MIME-Version"] == "1.0"
    assert b"\r\nDate: Wed, 04 Mar 2026 05:06:07 +0000\r\n" in rendered.message
    assert not parsed.defects


def test_a_content_without_html_is_one_text_part() -> None:
    rendered = _render(_content(body_html="  "), options=RenderOptions(track_opens=True, track_clicks=True))
    parsed = _parsed(rendered)
    assert parsed.get_content_type() == "text/plain"
    assert _part(rendered, "text/plain").startswith("Hi Ann")
    assert "Content-Transfer-Encoding" in _header_names(rendered.message)


def test_an_empty_text_body_is_made_from_the_html() -> None:
    content = _content(
        body_html="<html><head><style>p{}</style></head><body><h1>News</h1><p>Hi {{firstName}},</p>"
        "<p>see <a href='https://acme.test'>this</a>.</p><script>x()</script></body></html>",
        body_text="",
    )
    text = _part(_render(content, options=RenderOptions(enable_unsubscribe=False)), "text/plain")
    assert text == "News\n\nHi Ann,\n\nsee this."


@pytest.mark.parametrize(
    ("body", "recipient", "encoding"),
    [
        ("<p>plain ascii {{firstName}}</p>", ANN, "7bit"),
        ("<p>caf\u00e9 {{firstName}}</p>", ANN, "quoted-printable"),
        ("<p>{{firstName}}</p>", Recipient(email="a@x.test", first_name="Zoë"), "quoted-printable"),
        ("<p>" + "x" * 1200 + "</p>", ANN, "quoted-printable"),
        (
            "<p>" + "x" * 900 + "{{firstName}}</p>",
            Recipient(email="a@x.test", first_name="y" * 200),
            "quoted-printable",
        ),
        ("<p>{{firstName}}</p>", Recipient(email="a@x.test", first_name="a\nb"), "quoted-printable"),
    ],
)
def test_bodies_are_7bit_where_that_is_safe_and_quoted_printable_otherwise(
    body: str, recipient: Recipient, encoding: str
) -> None:
    rendered = _render(
        _content(body_html=body), recipient, RenderOptions(track_opens=False, enable_unsubscribe=False)
    )
    parsed = _parsed(rendered)
    html_part = list(parsed.iter_parts())[1]
    assert html_part["Content-Transfer-Encoding"] == encoding
    assert max(len(line) for line in rendered.message.split(b"\r\n")) <= 998
    expected = body.replace("{{firstName}}", recipient.first_name or "")
    assert expected in _part(rendered, "text/html").replace("\r\n", "\n").replace("\n", "\n")


def test_the_boundary_cannot_occur_in_a_body() -> None:
    rendered = _render(_content(body_text="--=_ and =_ at line start\n=_x"))
    boundary = _parsed(rendered).get_boundary()
    assert boundary is not None and boundary.startswith("=_")
    assert rendered.message.count(f"--{boundary}".encode()) == 3
    # ASCII and short, but it holds `=_`: quoted-printable, which cannot.
    text_part = next(iter(_parsed(rendered).iter_parts()))
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"


# --- preheader, unsubscribing, tracking ------------------------------------------------------------


def test_the_preheader_is_a_hidden_span_first_in_the_body() -> None:
    content = _content(
        body_html="<!doctype html><html><head><title>t</title></head><body style='x'><p>Body</p></body></html>",
        preview_text="Only today, {{firstName}} & friends",
    )
    html = _part(_render(content, options=RenderOptions(track_opens=False)), "text/html")
    assert html.startswith("<!doctype html>")
    after_body = html.split('<body style="x">', 1)[1]
    assert after_body.startswith('<span style="display:none!important;')
    assert "Only today, Ann &amp; friends&#847;&zwnj;&nbsp;" in after_body
    assert after_body.index("</span>") < after_body.index("<p>Body</p>")


def test_a_fragment_gets_the_preheader_at_its_start() -> None:
    html = _part(
        _render(_content(preview_text="Soon"), options=RenderOptions(track_opens=False)), "text/html"
    )
    assert html.startswith('<span style="display:none!important;') and ">Soon&#847;" in html


def test_a_frameset_document_has_no_body_to_add_to() -> None:
    content = _content(
        body_html='<html><frameset><frame src="https://acme.test/f"></frameset></html>', preview_text="P"
    )
    html = _part(_render(content), "text/html")
    assert "<frameset>" in html and "display:none" not in html and "UNSUB" not in html


def test_unsubscribe_headers_and_a_visible_link_when_enabled() -> None:
    rendered = _render(options=RenderOptions(track_opens=False))
    parsed = _parsed(rendered)
    assert parsed["List-Unsubscribe"] == (
        "<https://t.acme.test/u/UNSUB>, <mailto:unsubscribe@acme.test?subject=unsubscribe>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = _part(rendered, "text/html")
    assert html.endswith(
        '<a href="https://t.acme.test/u/UNSUB" data-mailray-unsubscribe="" style="color:#777777">Unsubscribe</a></p>'
    )
    assert _part(rendered, "text/plain").endswith("\n\nUnsubscribe: https://t.acme.test/u/UNSUB\n")


def test_without_a_mailto_the_header_has_the_https_url_only() -> None:
    parsed = _parsed(_render(plan=FixedPlan(mailto=None)))
    assert parsed["List-Unsubscribe"] == "<https://t.acme.test/u/UNSUB>"


def test_an_unsubscribe_placeholder_in_the_body_replaces_the_footer() -> None:
    content = _content(
        body_html='<p>Hi</p><a href="{{unsubscribeUrl}}">Leave</a>',
        body_text="Hi. Leave: {{ unsubscribeUrl }}",
    )
    rendered = _render(content, options=RenderOptions(track_opens=False))
    html = _part(rendered, "text/html")
    assert html == '<p>Hi</p><a href="https://t.acme.test/u/UNSUB">Leave</a>'
    assert _part(rendered, "text/plain") == "Hi. Leave: https://t.acme.test/u/UNSUB"
    off = _render(content, options=RenderOptions(track_opens=False, enable_unsubscribe=False))
    assert _part(off, "text/html") == '<p>Hi</p><a href="">Leave</a>'
    assert "List-Unsubscribe" not in _header_names(off.message)


def test_links_go_through_the_plan_and_the_pixel_is_last_in_the_body() -> None:
    content = _content(
        body_html=(
            "<html><body><p>Hi {{firstName}}</p>"
            '<a href="https://acme.test/a">A</a> <a href="mailto:x@acme.test">mail</a> '
            '<a href="https://acme.test/b?who={{email}}">B for {{firstName}}</a>'
            '<a href="https://acme.test/c" data-mailray-notrack>C</a></body></html>'
        )
    )
    rendered = _render(content)
    html = _part(rendered, "text/html")
    assert re.findall(r'href="([^"]*)"', html) == [
        "https://t.acme.test/t/c/CLICK0",
        "mailto:x@acme.test",
        "https://t.acme.test/t/c/CLICK1",
        "https://acme.test/c",
        "https://t.acme.test/u/UNSUB",
    ]
    assert html.endswith(
        '<img src="https://t.acme.test/t/o/OPEN.gif" width="1" height="1" alt="" '
        'style="display:none!important;border:0;width:1px;height:1px"></body></html>'
    )
    assert html.index("Unsubscribe</a>") < html.index("OPEN.gif")
    assert rendered.links == (
        TrackedLink(position=0, url="https://acme.test/a", text="A"),
        TrackedLink(position=1, url="https://acme.test/b?who=ann%40example.com", text="B for Ann"),
    )


def test_tracking_off_leaves_links_and_adds_no_pixel() -> None:
    body = '<p><a href="https://acme.test/a">A</a></p>'
    options = RenderOptions(track_opens=False, track_clicks=False, enable_unsubscribe=False)
    rendered = render_message(_content(body_html=body), ANN, options, None, campaign_id=CAMPAIGN, date=WHEN)
    assert _part(rendered, "text/html") == body
    assert rendered.links == ()


def test_tracking_needs_a_plan() -> None:
    with pytest.raises(ValueError, match="TrackingPlan"):
        render_message(_content(), ANN, RenderOptions(), None, campaign_id=CAMPAIGN)


def test_a_plan_url_that_could_break_a_line_is_refused() -> None:
    class Broken(FixedPlan):
        def unsubscribe_url(self) -> str:
            return "https://t.acme.test/u/x\r\nBcc: a@b"

    with pytest.raises(ValueError, match="unsubscribe URL"):
        _render(plan=Broken())


def test_the_token_plan_signs_tokens_for_the_tracking_endpoints() -> None:
    signer = TokenSigner({1: os.urandom(32)})
    plan = TokenTrackingPlan(signer, "https://t.acme.test/", email_id=42, recipient_id=7)
    rendered = _render(_content(body_html='<a href="https://acme.test">x</a>'), plan=plan)
    html = _part(rendered, "text/html")
    click = re.search(r'href="https://t\.acme\.test/t/c/([A-Za-z0-9_-]+)"', html)
    pixel = re.search(r'src="https://t\.acme\.test/t/o/([A-Za-z0-9_-]+)\.gif"', html)
    unsubscribe = re.search(
        r"<https://t\.acme\.test/u/([A-Za-z0-9_-]+)>", _parsed(rendered)["List-Unsubscribe"]
    )
    assert click and pixel and unsubscribe
    assert signer.verify(click.group(1)).kind == TokenKind.CLICK
    assert signer.verify(click.group(1)).link == 0
    assert signer.verify(pixel.group(1)).kind == TokenKind.OPEN
    token = signer.verify(unsubscribe.group(1))
    assert (token.kind, token.email_id, token.recipient_id) == (TokenKind.UNSUBSCRIBE, 42, 7)


# --- identity -----------------------------------------------------------------------------------


def test_the_message_id_is_the_same_for_every_render_of_a_campaign_and_address() -> None:
    first = _render()
    again = render_message(
        _content(subject="changed"),
        Recipient(email="ANN@example.com"),
        RenderOptions(),
        FixedPlan(),
        campaign_id=CAMPAIGN,
    )
    assert first.message_id == again.message_id == message_id(CAMPAIGN, "ann@example.com", "news@acme.test")
    assert re.fullmatch(r"<[0-9a-f]{32}@acme\.test>", first.message_id)
    assert _parsed(first)["Message-ID"] == first.message_id
    other = render_message(_content(), ANN, RenderOptions(), FixedPlan(), campaign_id=uuid.uuid4())
    assert other.message_id != first.message_id
    assert _render(recipient=Recipient(email="bob@example.com")).message_id != first.message_id


def test_the_campaign_id_header_names_the_campaign_and_takes_only_a_uuid() -> None:
    assert _parsed(_render())["X-Campaign-ID"] == str(CAMPAIGN)
    with pytest.raises(TypeError, match="campaign_id must be a UUID, got str"):
        render_message(_content(), ANN, RenderOptions(), FixedPlan(), campaign_id="c\r\nBcc: x@y")  # type: ignore[arg-type]


def test_rendering_is_deterministic_for_a_given_date() -> None:
    assert _render().message == _render().message


def test_compiling_is_cached_per_content_and_options() -> None:
    content = _content(subject="cached {{firstName}}")
    assert compile_message(content, RenderOptions()) is compile_message(content, RenderOptions())
    assert compile_message(content, RenderOptions()) is not compile_message(
        content, RenderOptions(track_opens=False)
    )


def test_a_variant_overrides_the_campaigns_content() -> None:
    from models.campaigns import AbTestSettings, Campaign, RecipientFilter, Variant

    now = datetime.now(UTC)
    variant = Variant(
        id=uuid.uuid4(), name="B", percentage=50, subject="B subject", from_name=None, preview_text=None,
        body_html=None, body_text="B text", status="active", sent_count=0,
    )  # fmt: skip
    campaign = Campaign(
        id=CAMPAIGN, workspace_id=uuid.uuid4(), created_by=None, account_id=None, name="n", subject="A subject",
        preview_text="pre", from_name="Acme", from_email="news@acme.test", reply_to=None, body_html="<p>A</p>",
        body_text="A text", recipient_filter=RecipientFilter(), exclude_filter=None, recipient_count=0,
        track_opens=True, track_clicks=False, enable_unsubscribe=True, send_at_local_time=False, scheduled_at=None,
        sending_started_at=None, sending_completed_at=None, is_ab_test=True, ab_test=AbTestSettings(),
        variants=[variant], winning_variant=None, ab_decision=None, status="draft", pause_reason=None,
        sent_count=0, created_at=now, updated_at=now,
    )  # fmt: skip
    content = MessageContent.of(campaign, variant)
    assert (content.subject, content.body_html, content.body_text, content.preview_text) == (
        "B subject", "<p>A</p>", "B text", "pre",
    )  # fmt: skip
    assert MessageContent.of(campaign).subject == "A subject"
    assert RenderOptions.of(campaign) == RenderOptions(
        track_opens=True, track_clicks=False, enable_unsubscribe=True
    )


# --- the corpus ---------------------------------------------------------------------------------


def _corpus_html(limit: int) -> list[str]:
    bodies: list[str] = []
    for folder in ("easy-ham-1", "hard-ham-1"):
        directory = CORPUS / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            html = parse_message(read_corpus_message(path)).html_body
            if html:
                bodies.append(html)
            if len(bodies) >= limit:
                return bodies
    return bodies


@pytest.mark.skipif(not (CORPUS / "hard-ham-1").is_dir(), reason="no SpamAssassin corpus")
def test_corpus_html_renders_to_well_formed_messages() -> None:
    bodies = _corpus_html(40)
    assert bodies
    for html in bodies:
        content = _content(body_html="<p>Hi {{firstName}}</p>" + html, body_text="", preview_text="Preview")
        rendered = render_message(content, ANN, RenderOptions(), FixedPlan(), campaign_id=CAMPAIGN, date=WHEN)
        raw = rendered.message
        assert b"\n" not in raw.replace(b"\r\n", b"")
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        parsed = _parsed(rendered)
        assert not parsed.defects
        assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
        out = _part(rendered, "text/html")
        assert "Hi Ann" in out and "OPEN.gif" in out and "https://t.acme.test/u/UNSUB" in out
        assert out.count("https://t.acme.test/t/c/CLICK") >= len(rendered.links)
