"""Extractive summary and key points (mail.ai.summary), with the hashed bag-of-words stand-in."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mail.ai.sentences import split_sentences
from mail.ai.summary import MAX_SUMMARY_CHARS, is_content, summarize
from tests.ai_helpers import hashed_embed

MIGRATION = """Hi team,

Hope you're all well.
The customer database migration to the new Postgres cluster is scheduled for Saturday, July 12.
During the database migration the CRM will be read-only for about four hours.
We ran the database migration twice on staging and both runs finished without data loss.
Please save all open deals before Friday evening.
The parking garage will also be closed on Saturday for repainting.
If the migration fails, we will roll back to the old database cluster within an hour.

Thanks,
Maria
"""


def test_the_central_sentence_is_the_summary() -> None:
    result = summarize(MIGRATION, hashed_embed, subject="Database migration on Saturday")

    assert result.summary.startswith(
        "The customer database migration to the new Postgres cluster is scheduled for Saturday, July 12."
    )


def test_key_points_are_content_sentences_in_email_order() -> None:
    sentences = [sentence.clean for sentence in split_sentences(MIGRATION)]

    result = summarize(MIGRATION, hashed_embed, subject="Database migration on Saturday")

    assert 3 <= len(result.key_points) <= 5
    assert all(point in sentences for point in result.key_points)
    assert result.key_points == sorted(result.key_points, key=sentences.index)
    assert result.summary.split(". ")[0].rstrip(".") + "." in result.key_points
    assert not {"Hi team,", "Hope you're all well.", "Thanks,", "Maria"} & set(result.key_points)
    assert "The parking garage will also be closed on Saturday for repainting." not in result.key_points


def test_near_duplicates_are_not_both_key_points() -> None:
    body = (
        "The invoice for May is attached. The May invoice is attached. Payment is due in 30 days. "
        "Our bank details changed last month. The new account number is on the invoice. "
        "Please update your records."
    )

    result = summarize(body, hashed_embed, subject="May invoice")

    assert (
        len({"The invoice for May is attached.", "The May invoice is attached."} & set(result.key_points))
        == 1
    )


def test_a_short_email_is_its_own_summary() -> None:
    result = summarize(
        "Hi Ana,\n\nSounds good, see you at 3pm. I'll bring the contract.\n\nBest,\nSam", hashed_embed
    )

    assert result.summary == "Sounds good, see you at 3pm. I'll bring the contract."
    assert result.key_points == ["Sounds good, see you at 3pm.", "I'll bring the contract."]


def test_an_empty_body_is_summarised_by_its_subject() -> None:
    calls: list[Sequence[str]] = []

    def counting(texts: Sequence[str]) -> torch.Tensor:
        calls.append(texts)
        return hashed_embed(texts)

    assert summarize("", counting, subject="Re: Fwd: Lunch on Friday?").summary == "Lunch on Friday?"
    assert summarize("\n\nThanks,\nAna\n", counting).summary == ""
    assert summarize("", counting).key_points == []
    assert calls == []  # nothing to embed


def test_a_long_sentence_is_cut_at_a_word() -> None:
    long_sentence = "We reviewed " + " ".join(f"item{number}" for number in range(200)) + "."
    body = f"{long_sentence} Second point about items."

    result = summarize(body, hashed_embed)

    assert len(result.summary) <= MAX_SUMMARY_CHARS
    assert result.summary.endswith("…")


def test_content_sentences() -> None:
    assert is_content("The contract is signed.")
    assert not is_content("Hi Ana,")
    assert not is_content("Best regards,")
    assert not is_content("Let me know if you have any questions.")
    assert not is_content("Sarah Connor")
    assert not is_content("Ok")
