"""Locally written templates (mail.ai.templates) and the request's validation."""

from __future__ import annotations

import re
from typing import get_args

import msgspec
import pytest

from mail.ai.templates import PURPOSES, generate_template
from mail.campaigns.personalize import Mode, Recipient, Template
from mail.errors import ValidationError
from models.ai_analysis import TemplateLength, TemplateRequest, Tone

EXAMPLE = {
    "recipientName": "John",
    "companyName": "Acme Corp",
    "lastInteraction": "Demo call on Monday",
    "nextStep": "Proposal review",
}
TONES: tuple[Tone, ...] = get_args(Tone)
LENGTHS: tuple[TemplateLength, ...] = get_args(TemplateLength)
_UNFILLED = re.compile(r"(?<!\{)\{\w+\}(?!\})")


def _paragraphs(body: str) -> list[str]:
    return [paragraph for paragraph in body.strip().split("\n\n") if paragraph.strip()]


def test_the_design_documents_example() -> None:
    request = msgspec.json.decode(
        msgspec.json.encode(
            {"purpose": "follow_up", "context": EXAMPLE, "tone": "professional", "length": "medium"}
        ),
        type=TemplateRequest,
    )

    template = generate_template(request)

    assert template.subject == "Following up: Proposal review"
    assert template.body_text.startswith("Hi John,\n\n")
    assert "our demo call on Monday" in template.body_text
    assert "Acme Corp" in template.body_text
    assert "the proposal review" in template.body_text
    assert template.body_text.rstrip().endswith("Best regards,")
    assert len(_paragraphs(template.body_text)) == 5  # greeting, three paragraphs, sign-off
    encoded = msgspec.json.decode(msgspec.json.encode(template))
    assert set(encoded) == {"subject", "bodyHtml", "bodyText", "variations"}
    assert set(encoded["variations"]) == {"formal", "casual", "enthusiastic"}


@pytest.mark.parametrize("purpose", [*PURPOSES, "quarterly_business_review"])
@pytest.mark.parametrize("tone", TONES)
def test_every_purpose_and_tone_fills_every_slot(purpose: str, tone: Tone) -> None:
    for length in LENGTHS:
        template = generate_template(
            TemplateRequest(purpose=purpose, context=EXAMPLE, tone=tone, length=length)
        )
        for text in (
            template.subject,
            template.body_text,
            template.body_html,
            *msgspec.structs.astuple(template.variations),
        ):
            assert text.strip()
            assert _UNFILLED.search(text) is None, text
            assert "  " not in text and " ." not in text and ".." not in text


@pytest.mark.parametrize("purpose", list(PURPOSES))
def test_length_changes_the_paragraph_count(purpose: str) -> None:
    counts = [
        len(
            _paragraphs(
                generate_template(TemplateRequest(purpose=purpose, context=EXAMPLE, length=length)).body_text
            )
        )
        for length in LENGTHS
    ]

    assert counts[0] < counts[1] < counts[2]
    assert counts[0] == 3  # greeting, one paragraph, sign-off


def test_tone_changes_greeting_sign_off_and_contractions() -> None:
    formal = generate_template(TemplateRequest(purpose="meeting_request", context=EXAMPLE, tone="formal"))
    casual = generate_template(TemplateRequest(purpose="meeting_request", context=EXAMPLE, tone="casual"))
    enthusiastic = generate_template(
        TemplateRequest(purpose="meeting_request", context=EXAMPLE, tone="enthusiastic")
    )

    assert formal.body_text.startswith("Dear John,")
    assert "Kind regards," in formal.body_text
    assert re.search(r"\b\w+'(?:m|d|ll|re|ve|s|t)\b", formal.body_text) is None
    assert casual.body_text.startswith("Hey John,")
    assert "Cheers," in casual.body_text
    assert enthusiastic.body_text.count("!") > formal.body_text.count("!")


def test_variations_are_full_bodies_in_their_tone() -> None:
    template = generate_template(TemplateRequest(purpose="proposal", context=EXAMPLE, tone="friendly"))
    variations = template.variations

    assert len({variations.formal, variations.casual, variations.enthusiastic, template.body_text}) == 4
    assert variations.formal.startswith("Dear John,") and "Kind regards," in variations.formal
    assert variations.casual.startswith("Hey John,") and "Cheers," in variations.casual
    assert variations.enthusiastic.startswith("Hi John!")


def test_context_values_are_escaped_in_html() -> None:
    context = {
        "recipientName": "Jo<script>alert(1)</script>",
        "companyName": 'Acme "Tools" & <b>Co</b>',
        "link": "https://acme.io/deck?a=1&b=2",
        "topic": "pricing\r\nBcc: evil@example.com",
    }

    template = generate_template(TemplateRequest(purpose="meeting_request", context=context, length="long"))

    assert "<script" not in template.body_html and "<b>" not in template.body_html
    assert "Acme &quot;Tools&quot; &amp; &lt;b&gt;Co&lt;/b&gt;" in template.body_html
    assert (
        '<a href="https://acme.io/deck?a=1&amp;b=2">https://acme.io/deck?a=1&amp;b=2</a>'
        in template.body_html
    )
    assert re.fullmatch(r"(?:<p>(?:[^<]|<br>|<a href=\"[^\"]*\">|</a>)*</p>\n)+", template.body_html)
    assert "\n" not in template.subject and "\r" not in template.subject
    assert template.subject == "Meeting request: Pricing Bcc: evil@example.com"


def test_a_link_that_is_not_http_is_not_written() -> None:
    template = generate_template(
        TemplateRequest(purpose="follow_up", context={"link": "javascript:alert(1)"}, length="long")
    )

    assert "javascript" not in template.body_text and "<a " not in template.body_html


def test_missing_names_become_campaign_placeholders() -> None:
    template = generate_template(TemplateRequest(purpose="check_in", context={}, tone="professional"))

    assert template.body_text.startswith("Hi {{firstName | there}},")
    rendered = Template.compile(template.body_text, Mode.TEXT).personalize(
        Recipient(email="ana@acme.test", first_name="Ana", company="Acme")
    )
    assert rendered.startswith("Hi Ana,")
    assert "at Acme" in rendered
    anonymous = Template.compile(template.body_text, Mode.TEXT).personalize(Recipient(email="x@y.test"))
    assert anonymous.startswith("Hi there,") and "at your team" in anonymous


def test_context_cannot_inject_placeholders() -> None:
    template = generate_template(
        TemplateRequest(purpose="thank_you", context={"reason": "the {{unsubscribeUrl}}"})
    )

    assert "{{unsubscribeUrl}}" not in template.body_text


@pytest.mark.parametrize(
    ("purpose", "subject"),
    [
        ("Follow-up", "Following up: Proposal review"),
        ("follow up", "Following up: Proposal review"),
        ("intro", "Introduction from our company"),
        ("partnership_update", "Partnership update: Working together"),
    ],
)
def test_purposes_are_normalised_and_unknown_ones_are_generic(purpose: str, subject: str) -> None:
    assert generate_template(TemplateRequest(purpose=purpose, context=EXAMPLE)).subject == subject


def test_details_replace_the_generic_detail_paragraph() -> None:
    context = {**EXAMPLE, "details": "The pilot covers 40 seats for 90 days."}

    template = generate_template(TemplateRequest(purpose="proposal", context=context, length="long"))

    assert "The pilot covers 40 seats for 90 days." in template.body_text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"purpose": ""}', "purpose"),
        (b'{"purpose": "follow_up; DROP TABLE"}', "purpose"),
        (b'{"purpose": "' + b"x" * 80 + b'"}', "purpose"),
        (b'{"purpose": "follow_up", "context": {"bad key": "x"}}', "context"),
        (b'{"purpose": "follow_up", "context": {"note": "' + b"x" * 600 + b'"}}', "context"),
    ],
)
def test_bad_requests_are_validation_errors(body: bytes, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        msgspec.json.decode(body, type=TemplateRequest)

    assert raised.value.field == field


def test_tone_and_length_are_checked_by_type() -> None:
    with pytest.raises(msgspec.ValidationError, match="tone"):
        msgspec.json.decode(b'{"purpose": "follow_up", "tone": "angry"}', type=TemplateRequest)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"purpose": "follow_up", "length": "epic"}', type=TemplateRequest)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"purpose": "follow_up", "extra": 1}', type=TemplateRequest)
