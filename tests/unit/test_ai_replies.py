"""Smart replies (mail.ai.replies) with the hashed bag-of-words stand-in for the encoder."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
import torch

from mail.ai.embedding import memoized
from mail.ai.replies import (
    BANK_PATH,
    SLOTS,
    BankEntry,
    ResponseBank,
    asks_for_meeting,
    calibrated,
    first_name,
    reply_type,
    suggest_replies,
)
from mail.errors import ValidationError
from models.ai_analysis import RESPONSE_TYPES, ReplyContext
from tests.ai_helpers import hashed_embed

MEETING = (
    "Hi, thanks for the demo. Could we schedule a meeting next Tuesday at 3pm to talk about the rollout? "
    "Our IT lead would join the call."
)
CONTRACT = (
    "Hi, attached is the final version of the contract for the agreement. "
    "Could you sign the contract and send it back by Friday?"
)
BUG = "The export is broken and shows an error every time. It is not working since the update. Please fix the bug."


def _texts(suggestions: Sequence[object]) -> str:
    return "\n".join(getattr(suggestion, "text", "") for suggestion in suggestions)


def test_the_bank_has_enough_replies_of_every_type() -> None:
    bank = ResponseBank.load()

    assert len(bank.entries) >= 60
    assert len({entry.id for entry in bank.entries}) == len(bank.entries)
    for response_type in RESPONSE_TYPES:
        assert sum(entry.type == response_type for entry in bank.entries) >= 12
    for entry in bank.entries:
        assert set(re.findall(r"\{(\w+)\}", entry.text)) <= SLOTS
    assert ResponseBank.load() is bank


def test_bank_embeddings_are_computed_once_per_embed_function() -> None:
    bank = ResponseBank([BankEntry(id="one", type="positive", situations=["asks for help"], text="Sure.")])
    calls: list[int] = []

    def counting(texts: Sequence[str]) -> torch.Tensor:
        calls.append(len(texts))
        return hashed_embed(texts)

    context = ReplyContext()
    suggest_replies("Can you help me?", "", "Ana", context, counting, bank=bank)
    suggest_replies("Can you help me again?", "", "Ana", context, memoized(counting), bank=bank)

    assert calls.count(1) >= 1
    assert sum(1 for _ in bank._embeddings) == 1  # the memoized wrapper shares its function's entry


def test_a_meeting_request_gets_a_schedule_reply_first() -> None:
    suggestions = suggest_replies(
        MEETING, "Rollout", "Priya Raman", ReplyContext(relationship="prospect"), hashed_embed
    )

    assert [suggestion.type for suggestion in suggestions] == ["schedule", "positive", "question"]
    assert suggestions[0].text.startswith("Hello Priya,\n\n")
    assert "next tuesday at 3pm" in _texts(suggestions).lower()


def test_other_emails_get_positive_question_and_negative() -> None:
    suggestions = suggest_replies(
        CONTRACT,
        "Contract",
        "Ana Ruiz",
        ReplyContext(relationship="customer", interaction_count=4),
        hashed_embed,
    )

    assert [suggestion.type for suggestion in suggestions] == ["positive", "question", "negative"]
    assert all("contract" in suggestion.text.lower() for suggestion in suggestions[:2])
    assert all(suggestion.text.startswith("Hi Ana,\n\n") for suggestion in suggestions)


def test_the_scheduling_intent_asks_for_a_time() -> None:
    suggestions = suggest_replies(BUG, "", "Tom", ReplyContext(), hashed_embed, intents=["scheduling"])

    assert suggestions[0].type == "schedule"


def test_replies_answer_the_situation() -> None:
    suggestions = suggest_replies(
        BUG, "Export broken", "Tom", ReplyContext(relationship="customer"), hashed_embed
    )

    question = next(suggestion for suggestion in suggestions if suggestion.type == "question")
    assert "steps to reproduce" in question.text


def test_confidences_are_calibrated_similarities() -> None:
    suggestions = suggest_replies(CONTRACT, "Contract", "Ana", ReplyContext(), hashed_embed)

    assert all(0.0 <= suggestion.confidence <= 1.0 for suggestion in suggestions)
    assert (
        calibrated(-1.0)
        < calibrated(0.1)
        < calibrated(0.35)
        == 0.5
        < calibrated(0.6)
        < calibrated(1.0)
        <= 1.0
    )


def test_the_relationship_sets_the_register() -> None:
    colleague = suggest_replies(
        CONTRACT, "Contract", "Ana", ReplyContext(relationship="Colleague"), hashed_embed
    )
    prospect = suggest_replies(
        CONTRACT, "Contract", "Ana", ReplyContext(relationship="prospect"), hashed_embed
    )
    stranger = suggest_replies(CONTRACT, "Contract", "Ana", ReplyContext(relationship="vendor"), hashed_embed)

    assert all(suggestion.text.startswith("Hi Ana,") for suggestion in colleague)
    assert "reaching out" not in _texts(colleague)
    assert all(suggestion.text.startswith("Hello Ana,") for suggestion in prospect)
    assert "nice to meet you" in _texts(prospect).lower()
    assert "Looking forward to hearing from you." in _texts(prospect)
    assert all(suggestion.text.startswith("Hello Ana,") for suggestion in stranger)  # unknown


def test_a_first_contact_is_thanked_but_a_reply_thread_is_not() -> None:
    first = suggest_replies(CONTRACT, "Contract", "Ana", ReplyContext(interaction_count=0), hashed_embed)
    thread = suggest_replies(CONTRACT, "Re: Contract", "Ana", ReplyContext(interaction_count=0), hashed_embed)
    known = suggest_replies(CONTRACT, "Contract", "Ana", ReplyContext(interaction_count=9), hashed_embed)

    assert "Nice to meet you." in _texts(first)  # after the bank's own thanks
    assert "Thanks for reaching out." in _texts(
        suggest_replies(BUG, "Export", "Ana", ReplyContext(), hashed_embed)
    )
    for texts in (_texts(thread), _texts(known)):
        assert "Nice to meet you." not in texts and "reaching out" not in texts


def test_an_active_deal_the_email_names_is_mentioned() -> None:
    email = (
        "We reviewed the Acme renewal and want to move forward with the purchase. What are the next steps?"
    )
    context = ReplyContext(
        relationship="customer", interaction_count=3, active_deals=["Globex pilot", "Acme renewal"]
    )

    suggestions = suggest_replies(email, "Renewal", "Bob", context, hashed_embed)

    assert "Acme renewal" in _texts(suggestions)
    assert "Globex pilot" not in _texts(suggestions)


def test_no_slot_is_left_empty_or_unfilled() -> None:
    for email in (MEETING, CONTRACT, BUG, "", "ok"):
        for relationship in ("colleague", "customer", "prospect", "unknown"):
            context = ReplyContext(relationship=relationship)
            text = _texts(suggest_replies(email, "", "", context, hashed_embed))
            assert "{" not in text and "}" not in text
            assert "  " not in text.replace("\n\n", "\n")
            assert not re.search(r"\s[,.?!]", text)


def test_the_users_own_past_reply_is_preferred_and_readdressed() -> None:
    context = ReplyContext(
        relationship="customer",
        interaction_count=5,
        user_past_replies=[
            "Hi Carl, thanks! I'll sign the contract and send the signed agreement back today.",
            "Happy birthday!",
        ],
    )

    suggestions = suggest_replies(CONTRACT, "Contract", "Ana Ruiz", context, hashed_embed)

    positive = next(suggestion for suggestion in suggestions if suggestion.type == "positive")
    assert positive.text == "Hi Ana, thanks! I'll sign the contract and send the signed agreement back today."


def test_dissimilar_past_replies_are_not_used() -> None:
    context = ReplyContext(user_past_replies=["Happy birthday!", "See you at the game tonight."])

    suggestions = suggest_replies(CONTRACT, "Contract", "Ana", context, hashed_embed)

    assert "birthday" not in _texts(suggestions) and "game" not in _texts(suggestions)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Unfortunately we can't offer a discount this year.", "negative"),
        ("Tuesday at 3pm works for a call.", "schedule"),
        ("Could you send the order number?", "question"),
        ("Great, I'll send the order form today.", "positive"),
    ],
)
def test_the_type_of_a_past_reply(reply: str, expected: str) -> None:
    assert reply_type(reply) == expected


@pytest.mark.parametrize(
    ("email", "meeting"),
    [
        (MEETING, True),
        ("Does Thursday at 10am work for you?", True),
        ("Can you share your availability for a demo?", True),
        ("We had a great meeting yesterday.", False),
        (CONTRACT, False),
    ],
)
def test_asks_for_meeting(email: str, meeting: bool) -> None:
    assert asks_for_meeting(email) is meeting


@pytest.mark.parametrize(
    ("display_name", "name"),
    [
        ("Ana Ruiz", "Ana"),
        ("Ruiz, Ana", "Ana"),
        ("Dr. Jane Doe", "Jane"),
        ("JOHN SMITH", "John"),
        ("", ""),
        ("a@b.c", ""),
    ],
)
def test_first_name(display_name: str, name: str) -> None:
    assert first_name(display_name) == name


def test_a_bank_entry_with_an_unknown_slot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    entry = {"id": "bad", "type": "positive", "situations": ["anything"], "text": "Hi {nickname}"}
    path.write_text(json.dumps(entry) + "\n", encoding="utf-8")

    with pytest.raises(ValidationError, match=r"bank\.jsonl:1: .*unknown slots"):
        ResponseBank.load(path)


def test_the_packaged_bank_decodes_strictly() -> None:
    for line in BANK_PATH.read_text(encoding="utf-8").splitlines():
        msgspec.json.decode(line, type=BankEntry)


def test_a_reply_context_is_validated() -> None:
    with pytest.raises(ValidationError, match="interactionCount"):
        msgspec.json.decode(b'{"interactionCount": -1}', type=ReplyContext)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"relationShip": "customer"}', type=ReplyContext)
    context = msgspec.json.decode(b'{"senderName": "Ana", "activeDeals": ["Acme"]}', type=ReplyContext)
    assert (context.sender_name, context.active_deals, context.register) == ("Ana", ["Acme"], "unknown")
