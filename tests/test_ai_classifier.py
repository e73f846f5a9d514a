"""The email classifier with the real model (all-MiniLM-L6-v2 from its package, on the CPU) and the shipped heads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mail.ai.classifier import DEFAULT_HEADS_PATH, Classifier
from mail.ai.dataset import DEFAULT_CORPUS_DIR
from mail.ai.encoder import EMBEDDING_DIM, Encoder
from mail.ai.heads import Heads
from mail.ai.text import from_parsed
from mail.ai.train import train
from mail.errors import ValidationError
from mail.mime import parse_message, read_corpus_message
from models.ai import CATEGORIES, INTENTS, PRIORITIES, SENTIMENTS, EmailText

# Held out from training (mail.ai.dataset's split): an advance-fee fraud letter.
CLEAR_SPAM = DEFAULT_CORPUS_DIR / "spam-1" / "00082.0341a767bbaca01fd89b6236ef681257.txt"

EMAILS = [
    EmailText(
        subject="Invoice 1043 is 30 days overdue",
        sender="Credit Control <credit@harbour-supplies.test>",
        body="Our records show invoice 1043 for $4,200 is now 30 days overdue. Please arrange payment this week.",
    ),
    EmailText(
        subject="Dinner on Saturday?",
        sender="Emma <emma@home.test>",
        body="Hey! Want to come over for dinner on Saturday around 7? Jake is cooking.",
    ),
    EmailText(subject="", sender="", body=""),
]


@pytest.fixture(scope="module")
def classifier() -> Iterator[Classifier]:
    yield Classifier.load(device="cpu")


@pytest.fixture(scope="module")
def encoder(classifier: Classifier) -> Encoder:
    return classifier.encoder


def test_embeddings_are_384_floats_of_unit_norm(encoder: Encoder) -> None:
    embeddings = encoder.encode(["The invoice is attached.", "See you on Saturday!", ""])
    assert embeddings.shape == (3, EMBEDDING_DIM)
    assert embeddings.dtype == torch.float32
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)
    assert encoder.encode([]).shape == (0, EMBEDDING_DIM)


def test_similar_texts_are_closer_than_unrelated_ones(encoder: Encoder) -> None:
    invoice, overdue, picnic = encoder.encode(
        [
            "Please pay the attached invoice.",
            "Your payment for the invoice is overdue.",
            "We had a picnic by the lake.",
        ]
    )
    assert float(invoice @ overdue) > float(invoice @ picnic)


def test_a_batch_agrees_with_one_text_at_a_time(encoder: Encoder) -> None:
    texts = [
        "short",
        "a somewhat longer sentence about a delayed shipment and a refund",
        "middle length text here",
    ]
    batch = encoder.encode(texts, batch_size=2)
    one_by_one = torch.cat([encoder.encode([text]) for text in texts])
    assert torch.allclose(batch, one_by_one, atol=1e-5)


def test_a_100_kb_body_is_truncated(classifier: Classifier) -> None:
    huge = EmailText(subject="Long", body="lorem ipsum dolor sit amet " * 4000)
    assert len(huge.body) > 100_000
    [embedding] = classifier.embed([huge])
    assert float(embedding.norm()) == pytest.approx(1.0, abs=1e-5)
    assert classifier.encoder.encode(["x" * 100_000]).shape == (1, EMBEDDING_DIM)


def test_encode_refuses_a_bare_string_and_a_bad_batch_size(encoder: Encoder) -> None:
    with pytest.raises(ValidationError):
        encoder.encode("not a list")
    with pytest.raises(ValidationError):
        encoder.encode(["text"], batch_size=0)


def test_classifications_hold_valid_labels(classifier: Classifier) -> None:
    results = classifier.classify(EMAILS)
    assert len(results) == len(EMAILS)
    for result in results:
        assert result.category in CATEGORIES
        assert set(result.category_scores) == set(CATEGORIES)
        assert sum(result.category_scores.values()) == pytest.approx(1.0, abs=1e-4)
        assert result.confidence == pytest.approx(max(result.category_scores.values()))
        assert result.priority in PRIORITIES
        assert result.sentiment in SENTIMENTS
        assert -1.0 <= result.sentiment_score <= 1.0
        assert result.intents and set(result.intents) <= set(INTENTS)
        assert result.primary_intent == result.intents[0]
    assert classifier.classify([]) == []


def test_classify_agrees_with_classify_embeddings(classifier: Classifier) -> None:
    assert classifier.classify(EMAILS) == classifier.classify_embeddings(classifier.embed(EMAILS))


@pytest.mark.skipif(not CLEAR_SPAM.is_file(), reason="the shared corpora are not next to this checkout")
def test_a_clear_spam_from_the_corpus_is_spam(classifier: Classifier) -> None:
    message = from_parsed(parse_message(read_corpus_message(CLEAR_SPAM)))
    [result] = classifier.classify([message])
    assert result.category == "spam"
    assert result.confidence > 0.5


def test_the_shipped_heads_carry_their_figures(classifier: Classifier) -> None:
    training = classifier.metadata.training
    assert {"seed", "data_sha256", "category_macro_f1", "spam_f1"} <= set(training)
    assert classifier.metadata.version.startswith("seed")


def test_heads_round_trip_keeps_classifications(classifier: Classifier, tmp_path: Path) -> None:
    path = tmp_path / "heads.safetensors"
    classifier.heads.save(path)
    assert Heads.load(path).metadata == classifier.metadata
    copy = Classifier(classifier.encoder, Heads.load(path))
    assert copy.classify(EMAILS) == classifier.classify(EMAILS)


def test_set_heads_swaps_behaviour(classifier: Classifier) -> None:
    shipped = classifier.heads
    always_finance = Heads.load(DEFAULT_HEADS_PATH)
    with torch.no_grad():
        always_finance.category.weight.zero_()
        always_finance.category.bias.fill_(-10.0)
        always_finance.category.bias[always_finance.metadata.categories.index("finance")] = 10.0
    try:
        classifier.set_heads(always_finance)
        assert {result.category for result in classifier.classify(EMAILS)} == {"finance"}
        classifier.set_heads(DEFAULT_HEADS_PATH)
        assert [result.category for result in classifier.classify(EMAILS)][1] != "finance"
    finally:
        classifier.set_heads(shipped)
    assert classifier.heads is shipped


def test_training_a_tiny_subset_is_deterministic(encoder: Encoder, tmp_path: Path) -> None:
    def run(name: str, seed: int) -> bytes:
        report = train(
            tmp_path / name,
            seed=seed,
            cache_dir=tmp_path / "cache",
            corpus_dir=None,
            limit_per_group=5,
            encoder=encoder,
        )
        assert report.examples_train + report.examples_held_out == 40
        assert Path(report.model_card_path).read_text().startswith("# mailray email classifier")
        return Path(report.heads_path).read_bytes()

    first = run("first", seed=5)
    second = run("second", seed=5)
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()
    heads = Heads.load(tmp_path / "first" / "heads.safetensors")
    assert heads.metadata.training["seed"] == 5
    run("other", seed=6)
    other = Heads.load(tmp_path / "other" / "heads.safetensors")
    assert not torch.equal(other.category.weight, heads.category.weight)
