"""Sentences, questions and action items (mail.ai.sentences)."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mail.ai.sentences import (
    MAX_SENTENCE_CHARS,
    assignee,
    find_action_items,
    find_questions,
    is_action_item,
    is_question,
    split_sentences,
)

MONDAY = datetime(2025, 6, 2, 9, 0)

KICKOFF = """Hi Ana,

Thanks for the demo yesterday. Dr. Smith from Acme Inc. liked it, e.g. the reporting part, and
version 3.5 at https://acme.io/v3.5?x=1 is great. Can you send the pricing sheet to
ops@acme.io by Friday? Also, what is the timeline for the SSO integration

Next steps:
- Ben, please review the MSA before June 10.
- @carol book a room for next Tuesday at 3pm
- Ana to draft the security questionnaire by end of week.
Update: we shipped the fix.
Let me know if you have any questions!
Looking forward to it. How are you doing?

> Can you also check the quoted question?
> Please ignore this.

Best,
Sarah
"""


def test_split_an_email_into_its_sentences() -> None:
    assert [sentence.clean for sentence in split_sentences(KICKOFF)] == [
        "Hi Ana,",
        "Thanks for the demo yesterday.",
        "Dr. Smith from Acme Inc. liked it, e.g. the reporting part, and version 3.5 at "
        "https://acme.io/v3.5?x=1 is great.",
        "Can you send the pricing sheet to ops@acme.io by Friday?",
        "Also, what is the timeline for the SSO integration",
        "Next steps:",
        "Ben, please review the MSA before June 10.",
        "@carol book a room for next Tuesday at 3pm",
        "Ana to draft the security questionnaire by end of week.",
        "Update: we shipped the fix.",
        "Let me know if you have any questions!",
        "Looking forward to it.",
        "How are you doing?",
        "Best,",
        "Sarah",
    ]


def test_sentences_are_spans_of_the_text() -> None:
    sentences = split_sentences(KICKOFF)

    for sentence in sentences:
        assert KICKOFF[sentence.start : sentence.end] == sentence.text
    assert [sentence.start for sentence in sentences] == sorted(sentence.start for sentence in sentences)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It costs $3.50. That is fine.", ["It costs $3.50.", "That is fine."]),
        ("Mr. J. R. Smith called. He left.", ["Mr. J. R. Smith called.", "He left."]),
        ("See www.acme.io. Then call.", ["See www.acme.io.", "Then call."]),
        ("Is it done? yes it is.", ["Is it done?", "yes it is."]),
        ("Wait... Really? Yes!", ["Wait...", "Really?", "Yes!"]),
        ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
        ("The U.S. team agreed. Great.", ["The U.S. team agreed.", "Great."]),
        ("Meet at 3 p.m. tomorrow.", ["Meet at 3 p.m. tomorrow."]),
        ("a wrapped line\ncontinues here.", ["a wrapped line continues here."]),
        ("1. First item\n2. Second item", ["First item", "Second item"]),
        ("Agenda:\nbudget review", ["Agenda:", "budget review"]),
        ("", []),
        ("> only a quote", []),
        ("...", []),
    ],
)
def test_splitting_rules(text: str, expected: list[str]) -> None:
    assert [sentence.clean for sentence in split_sentences(text)] == expected


def test_a_run_on_sentence_is_cut_into_bounded_pieces() -> None:
    text = " ".join(["word"] * 2000)

    pieces = split_sentences(text)

    assert len(pieces) > 1
    assert all(len(piece.text) <= MAX_SENTENCE_CHARS for piece in pieces)
    assert " ".join(piece.text for piece in pieces) == text


def test_questions_with_and_without_a_question_mark() -> None:
    assert find_questions(KICKOFF) == [
        "Can you send the pricing sheet to ops@acme.io by Friday?",
        "Also, what is the timeline for the SSO integration",
    ]


@pytest.mark.parametrize(
    ("sentence", "question"),
    [
        ("Do you support SCIM provisioning", True),
        ("I was wondering if you could share the deck.", True),
        ("Any update on the contract?", True),
        ("Where is customer data stored?", True),
        ("When you get a chance, send it over.", False),
        ("What a great quarter!", False),
        ("How are you?", False),
        ("Hope you're well?", False),
        ("The contract is signed.", False),
    ],
)
def test_is_question(sentence: str, question: bool) -> None:
    assert is_question(sentence) is question


def test_action_items_with_due_dates_assignees_and_priorities() -> None:
    items = find_action_items(KICKOFF, reference_date=MONDAY)

    assert [(item.text, item.assignee, item.due, item.priority) for item in items] == [
        ("Can you send the pricing sheet to ops@acme.io by Friday?", None, "2025-06-06", "medium"),
        ("Ben, please review the MSA before June 10.", "Ben", "2025-06-10", "medium"),
        ("@carol book a room for next Tuesday at 3pm", "Carol", "2025-06-03", "high"),
        ("Ana to draft the security questionnaire by end of week.", "Ana", "2025-06-06", "medium"),
    ]


@pytest.mark.parametrize(
    "sentence",
    [
        "Please send me the signed NDA.",
        "Could you share the slides from Tuesday?",
        "Make sure the invoice has our PO number.",
        "Don't forget to renew the domain.",
        "Send the final deck to the board.",
        "Also, review the pricing page.",
        "We need you to confirm the headcount.",
        "Let me know what you think.",
        "Can we move the call to Thursday?",
        "John will send the revised quote.",
        "The report is due by Friday, June 13, so we should start now.",
    ],
)
def test_requests_are_action_items(sentence: str) -> None:
    assert is_action_item(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "Please find attached the invoice.",
        "Let me know if you have any questions.",
        "Feel free to reach out.",
        "Update: we shipped the fix.",
        "Order #1234 has shipped.",
        "Looking forward to meeting you.",
        "Thanks for the quick turnaround.",
        "Happy to help with the rollout.",
        "The meeting went well.",
        "If you have any questions, please call me.",
    ],
)
def test_statements_and_boilerplate_are_not_action_items(sentence: str) -> None:
    assert not is_action_item(sentence)


@pytest.mark.parametrize(
    ("sentence", "due", "priority"),
    [
        ("Please send it by EOD.", "2025-06-02", "high"),
        ("Please send it ASAP.", None, "high"),
        ("Please send it tomorrow.", "2025-06-03", "high"),
        ("Please send it by end of month.", "2025-06-30", "medium"),
        ("Please send it in 2 weeks.", "2025-06-16", "medium"),
        ("No rush, but please send it when you get a chance.", None, "low"),
    ],
)
def test_due_dates_and_priorities(sentence: str, due: str | None, priority: str) -> None:
    [item] = find_action_items(sentence, reference_date=MONDAY)

    assert (item.due, item.priority) == (due, priority)


@pytest.mark.parametrize(
    ("sentence", "name"),
    [
        ("@dana please check the logs.", "Dana"),
        ("Ana, can you send the deck?", "Ana"),
        ("Also, Ben, please review this.", "Ben"),
        ("Maria Lopez to book the venue.", "Maria Lopez"),
        ("Thanks, please review this.", None),
        ("Please review this.", None),
    ],
)
def test_assignee(sentence: str, name: str | None) -> None:
    assert assignee(sentence) == name


def test_quoted_lines_give_no_questions_or_action_items() -> None:
    text = "Sounds good.\n\n> Can you send the deck?\n> Please sign by Friday."

    assert find_questions(text) == []
    assert find_action_items(text, reference_date=MONDAY) == []


_PIECES = st.sampled_from(
    [
        "Hi Ana,",
        "\n",
        "\n\n",
        "> ",
        "- ",
        "1. ",
        "Dr.",
        "e.g.",
        " ",
        ".",
        "?",
        "!",
        "...",
        "3.5",
        "www.a.io",
        "Ok",
        "x",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(
        st.text(max_size=400), st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=40).map("".join)
    )
)
def test_splitting_never_raises_and_spans_are_ordered_substrings(text: str) -> None:
    sentences = split_sentences(text)

    previous_end = 0
    for sentence in sentences:
        assert text[sentence.start : sentence.end] == sentence.text
        assert sentence.text.strip() == sentence.text and sentence.text
        assert sentence.start >= previous_end
        previous_end = sentence.end
    find_questions(sentences)
    find_action_items(sentences, reference_date=MONDAY)
