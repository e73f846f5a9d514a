"""mail.ai heads, decoding, training data and fitting, without the encoder (no model is loaded)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
import torch
from safetensors.torch import save_file

from mail.ai.classifier import decode, select_intents
from mail.ai.dataset import corpus_category, first_per_group, load_written, split
from mail.ai.heads import METADATA_KEY, HeadOutputs, Heads, HeadsMetadata
from mail.ai.train import EmbeddingCache, _figures, fit_heads, targets_of
from mail.errors import ConfigError, ValidationError
from models.ai import CATEGORIES, INTENTS, PRIORITIES, SENTIMENTS, EmailText


def random_heads(seed: int = 0, **metadata: object) -> Heads:
    torch.manual_seed(seed)
    return Heads(msgspec.structs.replace(HeadsMetadata(version="test"), **metadata))


def test_heads_round_trip_through_a_file(tmp_path: Path) -> None:
    heads = random_heads(training={"category_macro_f1": 0.75, "seed": 3, "data_sha256": "ab"})
    path = tmp_path / "sub" / "heads.safetensors"
    heads.save(path)
    loaded = Heads.load(path)
    assert loaded.metadata == heads.metadata
    for name, tensor in heads.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left behind


def test_loading_a_missing_or_foreign_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        Heads.load(tmp_path / "absent.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ConfigError, match="cannot read"):
        Heads.load(garbage)
    bare = tmp_path / "bare.safetensors"
    save_file({"category.weight": torch.zeros(8, 384)}, str(bare))
    with pytest.raises(ConfigError, match=r"no mailray\.heads metadata"):
        Heads.load(bare)


def test_heads_for_other_labels_or_shapes_do_not_load(tmp_path: Path) -> None:
    path = tmp_path / "heads.safetensors"
    heads = random_heads()
    tensors = {name: tensor.contiguous() for name, tensor in heads.state_dict().items()}
    foreign = msgspec.json.encode({"categories": ["ham", "spam"]}).decode()
    save_file(tensors, str(path), metadata={METADATA_KEY: foreign})
    with pytest.raises(ConfigError, match="categories"):
        Heads.load(path)
    tensors["intent.weight"] = torch.zeros(5, 384)
    save_file(tensors, str(path), metadata={METADATA_KEY: msgspec.json.encode(heads.metadata).decode()})
    with pytest.raises(ConfigError, match="tensors"):
        Heads.load(path)


def test_probabilities_refuse_embeddings_of_the_wrong_shape() -> None:
    with pytest.raises(ValidationError):
        random_heads().probabilities(torch.zeros(2, 128))
    with pytest.raises(ValidationError):
        random_heads().probabilities(torch.zeros(384))


def outputs(
    category: list[float], intent: list[float], sentiment: Sequence[float] = (0.2, 0.3, 0.5)
) -> HeadOutputs:
    return HeadOutputs(
        torch.tensor([category]),
        torch.tensor([[0.1, 0.7, 0.2]]),
        torch.tensor([list(sentiment)]),
        torch.tensor([intent]),
    )


def test_decode_reads_labels_in_the_metadata_order() -> None:
    category = [0.02, 0.03, 0.05, 0.1, 0.1, 0.1, 0.5, 0.1]
    [result] = decode(outputs(category, [0.9, 0.1, 0.6, 0.2, 0.5, 0.0]), HeadsMetadata())
    assert result.category == "finance"
    assert result.confidence == pytest.approx(0.5)
    assert result.category_scores == pytest.approx(dict(zip(CATEGORIES, category, strict=True)))
    assert result.priority == "medium"
    assert result.sentiment == "negative"
    assert result.sentiment_score == pytest.approx(0.2 - 0.5)
    assert result.intents == ["inquiry", "request", "scheduling"]
    assert result.primary_intent == "inquiry"


def test_decode_follows_a_file_s_own_label_order() -> None:
    reordered = HeadsMetadata(categories=tuple(reversed(CATEGORIES)))
    [result] = decode(outputs([0.9, 0.1, 0, 0, 0, 0, 0, 0], [0.9] * 6), reordered)
    assert result.category == "spam"


def test_intents_always_hold_the_primary_one() -> None:
    assert select_intents([0.1, 0.2, 0.3, 0.05, 0.4, 0.0], HeadsMetadata()) == ["scheduling"]
    assert select_intents([0.1, 0.2, 0.3, 0.05, 0.4, 0.0], HeadsMetadata(intent_threshold=0.25)) == [
        "scheduling",
        "request",
    ]


def test_figures_count_precision_recall_and_f1() -> None:
    truth = [{"a"}, {"a"}, {"b"}, {"b"}]
    predicted = [{"a"}, {"b"}, {"b"}, {"b"}]
    figures = _figures("head", truth, predicted, ["a", "b", "c"], 0.1)
    by_label = {label.label: label for label in figures.labels}
    assert (by_label["a"].precision, by_label["a"].recall) == (1.0, 0.5)
    assert (by_label["b"].precision, by_label["b"].recall) == (0.6667, 1.0)  # rounded to 4 places
    assert by_label["c"].support == 0
    # c appears in neither truth nor predictions: it does not count in the macro average.
    assert figures.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2, abs=1e-4)
    assert figures.accuracy == 0.75


def test_the_written_set_has_every_label_and_40_emails_per_category() -> None:
    examples = load_written()
    categories = Counter(example.category for example in examples)
    assert set(categories) == set(CATEGORIES)
    assert min(categories.values()) >= 40
    assert {example.priority for example in examples} == set(PRIORITIES)
    assert {example.sentiment for example in examples} == set(SENTIMENTS)
    assert {intent for example in examples for intent in example.intents or []} == set(INTENTS)
    assert len({example.key for example in examples}) == len(examples)


def test_a_bad_line_in_the_written_set_is_named(tmp_path: Path) -> None:
    line = '{"id": "x-1", "subject": "s", "sender": "a", "body": "b", "category": "sales", '
    (tmp_path / "bad.jsonl").write_text(
        line + '"priority": "urgent", "sentiment": "neutral", "intents": ["request"]}\n'
    )
    with pytest.raises(ValidationError, match=r"bad\.jsonl:1"):
        load_written(tmp_path)
    good = line + '"priority": "high", "sentiment": "neutral", "intents": ["request"]}\n'
    (tmp_path / "bad.jsonl").write_text(good + good)
    with pytest.raises(ValidationError, match="duplicate id"):
        load_written(tmp_path)


def test_the_held_out_split_is_stratified_and_stable() -> None:
    examples = load_written()
    first, again = split(examples), split(list(reversed(examples)))
    held = {example.key for example in first if example.held_out}
    assert held == {example.key for example in again if example.held_out}
    per_category = Counter(example.category for example in first if example.held_out)
    assert set(per_category.values()) == {9}
    other = {example.key for example in split(examples, salt="validation") if example.held_out}
    assert other != held


def test_a_subset_per_group_is_stable() -> None:
    examples = load_written()
    subset = first_per_group(examples, 3)
    assert Counter(example.category for example in subset) == dict.fromkeys(CATEGORIES, 3)
    again = first_per_group(list(reversed(examples)), 3)
    assert {example.key for example in subset} == {example.key for example in again}


@pytest.mark.parametrize(
    ("folder", "headers", "expected"),
    [
        ("spam-1", "Subject: hi\n", "spam"),
        ("easy-ham-1", "Subject: hi\nList-Id: <exmh-users.example.org>\n", "newsletter"),
        ("easy-ham-1", "Subject: hi\nPrecedence: bulk\n", "newsletter"),
        ("easy-ham-1", "Subject: Re: [Spambayes] test sets?\n", "newsletter"),
        ("easy-ham-1", "From: boingboing <rssfeeds@example.org>\nSubject: A story\n", "newsletter"),
        ("easy-ham-1", "From: Dan <dan@example.org>\nSubject: FYI - gone this weekend\n", None),
        ("hard-ham-1", "Subject: Save an extra $50 on the PDA\n", "promotion"),
        ("hard-ham-1", "From: ZDNet Buyer's Alert <a@example.org>\nSubject: Sneak peek\n", "promotion"),
        ("hard-ham-1", "Subject: CNET NEWS.COM: Cable companies and Wi-Fi\n", "newsletter"),
    ],
)
def test_corpus_labelling_rules(folder: str, headers: str, expected: str | None) -> None:
    assert corpus_category(folder, (headers + "\nbody\n").encode()) == expected


def test_fitting_is_deterministic_and_learns() -> None:
    generator = torch.Generator().manual_seed(7)
    centres = torch.nn.functional.normalize(torch.randn(len(CATEGORIES), 384, generator=generator), dim=1)
    labels = torch.arange(len(CATEGORIES)).repeat(6)
    embeddings = torch.nn.functional.normalize(
        centres[labels] + 0.05 * torch.randn(len(labels), 384, generator=generator), dim=1
    )
    targets = targets_of([])._replace(
        category=labels,
        priority=labels % 3,
        sentiment=torch.full_like(labels, -1),  # unlabelled: left out of the loss
        intent=torch.nn.functional.one_hot(labels % 6, 6).float(),
        intent_mask=torch.ones(len(labels), dtype=torch.bool),
    )
    l2 = dict.fromkeys(("category", "priority", "sentiment", "intent"), 1e-2)
    first = fit_heads(embeddings, targets, HeadsMetadata(), l2, seed=3)
    second = fit_heads(embeddings, targets, HeadsMetadata(), l2, seed=3)
    for name, tensor in first.state_dict().items():
        assert torch.equal(second.state_dict()[name], tensor), name
    predicted = first.probabilities(embeddings).category.argmax(dim=1)
    assert torch.equal(predicted, labels)


class CountingEncoder:
    dimension = 4
    max_tokens = 256

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        self.seen += texts
        return torch.tensor([[float(len(text)), 1.0, 0.0, 0.0] for text in texts])


def test_the_embedding_cache_embeds_each_text_once(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.safetensors")
    encoder = CountingEncoder()
    rows, embedded = cache.embed(encoder, ["a", "bbb", "a"])  # type: ignore[arg-type]
    assert embedded == 2
    assert rows[:, 0].tolist() == [1.0, 3.0, 1.0]
    rows, embedded = EmbeddingCache(cache.path).embed(encoder, ["bbb", "cc", "a"])  # type: ignore[arg-type]
    assert embedded == 1
    assert rows[:, 0].tolist() == [3.0, 2.0, 1.0]
    assert sorted(encoder.seen) == ["a", "bbb", "cc"]


def test_a_damaged_embedding_cache_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "cache.safetensors"
    path.write_bytes(b"\x00" * 64)
    rows, embedded = EmbeddingCache(path).embed(CountingEncoder(), ["xyz"])  # type: ignore[arg-type]
    assert (embedded, rows[:, 0].tolist()) == (1, [3.0])


def test_targets_leave_unlabelled_heads_out() -> None:
    from mail.ai.dataset import LabelledEmail

    examples = [
        LabelledEmail(key="a", source="spamassassin", text=EmailText(), category="spam", priority="low"),
        LabelledEmail(
            key="b",
            source="written",
            text=EmailText(),
            category="sales",
            priority="high",
            sentiment="positive",
            intents=["inquiry", "follow-up"],
        ),
    ]
    targets = targets_of(examples)
    assert targets.category.tolist() == [CATEGORIES.index("spam"), CATEGORIES.index("sales")]
    assert targets.sentiment.tolist() == [-1, 0]
    assert targets.intent_mask.tolist() == [False, True]
    assert targets.intent[1].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
