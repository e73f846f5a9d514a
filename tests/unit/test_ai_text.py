"""mail.ai.text: what of an email the model reads."""

from __future__ import annotations

import msgspec
import pytest

from mail.ai.text import (
    MAX_BODY_CHARS,
    MAX_SUBJECT_CHARS,
    clean_body,
    from_parsed,
    html_to_text,
    looks_like_html,
    model_input,
)
from models.ai import EmailText
from models.mail import Address, ParsedMessage


def parsed(**fields: object) -> ParsedMessage:
    base: dict[str, object] = {
        "message_id": None,
        "in_reply_to": None,
        "references": [],
        "subject": "Hello",
        "from_address": None,
        "to": [],
        "cc": [],
        "bcc": [],
        "reply_to": [],
        "date": None,
        "text_body": None,
        "html_body": None,
        "snippet": "",
        "attachments": [],
        "raw_size": 0,
    }
    base.update(fields)
    return msgspec.convert(base, ParsedMessage)


def test_quoted_lines_are_dropped() -> None:
    body = "Sounds good to me.\n> Can we meet Tuesday?\n> -- Ana\nSee you then."
    assert clean_body(body) == "Sounds good to me. See you then."


@pytest.mark.parametrize(
    "header",
    [
        "On Tue, 3 Jun 2025 at 10:02, Ana Ruiz <ana@acme.test> wrote:",
        "On Tue, 3 Jun 2025 at 10:02, Ana Ruiz\n<ana@acme.test> wrote:",
        "-----Original Message-----",
        "----- Original Message -----",
        "From: Ana Ruiz\nSent: Tuesday, June 3, 2025 10:02 AM\nTo: Ben",
        "________________________________\nFrom: Ana Ruiz <ana@acme.test>\nSent: Tuesday",
        "*From:* Ana Ruiz\n*Date:* Tuesday",
    ],
)
def test_reply_headers_cut_the_quoted_message(header: str) -> None:
    body = f"Yes, Thursday works.\n\n{header}\nCan we move the call?\nThe whole old thread."
    assert clean_body(body) == "Yes, Thursday works."


def test_a_from_line_without_outlook_fields_is_content() -> None:
    body = "From: the warehouse team\nThe pallets ship on Monday and arrive Wednesday."
    assert clean_body(body) == body.replace("\n", " ")


def test_a_sentence_starting_with_on_is_content() -> None:
    body = "On Monday we ship the order.\nThe invoice follows."
    assert clean_body(body) == "On Monday we ship the order. The invoice follows."


def test_signature_after_dash_dash_space_is_cut() -> None:
    body = "Please send the report.\n-- \nAna Ruiz\nHead of Sales, Acme\n+1 555 0100"
    assert clean_body(body) == "Please send the report."


def test_sign_off_with_a_short_block_is_cut() -> None:
    body = "The invoice is attached.\n\nBest regards,\nAna Ruiz\nAcme Corp\nwww.acme.test"
    assert clean_body(body) == "The invoice is attached."


def test_sign_off_followed_by_a_long_block_is_content() -> None:
    after = "\n".join(f"Point {number} of the agenda." for number in range(10))
    body = f"Here is the agenda.\nThanks,\n{after}"
    assert "Point 9 of the agenda." in clean_body(body)


def test_a_sign_off_alone_is_kept() -> None:
    assert clean_body("Thanks!") == "Thanks!"
    assert clean_body("Thanks, that fixed it.\nAna") == "Thanks, that fixed it. Ana"


def test_sent_from_my_phone_is_dropped() -> None:
    assert clean_body("On my way.\n\nSent from my iPhone") == "On my way."


def test_a_body_of_nothing_but_quotes_keeps_the_quoted_words() -> None:
    assert clean_body("> Please call me back.\n> Ana") == "Please call me back. Ana"


def test_html_becomes_visible_text_without_quotes_or_scripts() -> None:
    html = (
        "<html><head><title>t</title><style>p {color: red}</style></head><body>"
        "<p>Your invoice is ready.</p><div>Pay by Friday.<br>Call me</div>"
        "<script>alert('x')</script>"
        '<div class="gmail_quote">On Mon, Ana wrote:<blockquote>old text</blockquote></div>'
        "</body></html>"
    )
    assert looks_like_html(html)
    assert clean_body(html) == "Your invoice is ready. Pay by Friday. Call me"
    assert "old text" not in html_to_text(html)


def test_plain_text_with_angle_brackets_is_not_html() -> None:
    assert not looks_like_html("I <3 this, and 2 < 3 > 1.")
    assert clean_body("I <3 this, and 2 < 3 > 1.") == "I <3 this, and 2 < 3 > 1."


def test_whitespace_collapses_and_invisible_characters_go() -> None:
    assert clean_body("  Hello\u200b\t\tthere \r\n\r\n  friend  ") == "Hello there friend"


def test_urls_keep_only_their_host() -> None:
    body = "Click https://track.example.net/c/abc123?u=ana%40acme.test&x=1 now"
    assert clean_body(body) == "Click https://track.example.net now"


def test_a_100_kb_body_is_capped_at_a_word_boundary() -> None:
    body = "word " * 20_000 + "\n> quoted"
    cleaned = clean_body(body)
    assert len(cleaned) <= MAX_BODY_CHARS
    assert cleaned.endswith("word")


def test_a_huge_single_line_without_spaces_is_capped() -> None:
    assert len(clean_body("x" * 1_000_000)) == MAX_BODY_CHARS


def test_model_input_names_subject_and_sender() -> None:
    text = EmailText(subject="  Invoice\n 1043 ", sender="Ana <ana@acme.test>", body="Due Friday.\n-- \nAna")
    assert model_input(text) == "Subject: Invoice 1043\nFrom: Ana <ana@acme.test>\nDue Friday."


def test_model_input_caps_the_subject() -> None:
    line = model_input(EmailText(subject="s" * 10_000)).split("\n")[0]
    assert len(line) == len("Subject: ") + MAX_SUBJECT_CHARS


def test_email_text_refuses_unknown_fields() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"subject": "x", "priority": "high"}', type=EmailText)
    assert msgspec.json.decode(b'{"body": "hi"}', type=EmailText) == EmailText(body="hi")


def test_from_parsed_prefers_the_text_body_and_formats_the_sender() -> None:
    message = parsed(
        from_address=Address(email="ana@acme.test", name="Ana Ruiz"),
        text_body="plain words",
        html_body="<p>html words</p>",
    )
    assert from_parsed(message) == EmailText(
        subject="Hello", sender="Ana Ruiz <ana@acme.test>", body="plain words"
    )


def test_from_parsed_falls_back_to_html_and_a_bare_address() -> None:
    message = parsed(
        from_address=Address(email="ana@acme.test"), text_body="  \n", html_body="<p>html words</p>"
    )
    assert from_parsed(message) == EmailText(
        subject="Hello", sender="ana@acme.test", body="<p>html words</p>"
    )
    assert from_parsed(parsed()).body == ""
