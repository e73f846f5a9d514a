"""Train the heads, reproducibly: `mailray train` (or `train()`) writes heads.safetensors and MODEL_CARD.md.

1. Load the labelled examples (mail.ai.dataset) and their fixed held-out split.
2. Embed every example once; embeddings are cached under the data directory (.mailray/ai/), one
   row per SHA-256 of (encoder, max_tokens, model input), so a rerun embeds nothing it has seen.
3. Fit each head on the training part, full batch with L-BFGS: class-balanced cross-entropy (the
   corpus gives 2,700 newsletters and 45 written sales emails; each class weighs the same in the
   loss) plus an L2 penalty on the weights. The penalty's strength is chosen per head from a small
   grid on a validation fifth of the training part (another fixed hash split), then the head is
   refit on the whole training part. Unlabelled examples (a corpus message has no sentiment) are
   left out of that head's loss.
4. Measure on the held-out part: precision, recall and F1 per label, macro F1 per head, and
   spam-vs-ham on the held-out SpamAssassin messages.

The same data, cache and seed give the same heads file, byte for byte: fitting runs with
deterministic algorithms on the CPU, initialised from the seed, and the file holds no timestamps.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import NamedTuple

import msgspec
import torch
import torch.nn.functional as functional
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mail.ai.classifier import decode
from mail.ai.dataset import DEFAULT_CORPUS_DIR, LabelledEmail, first_per_group, load_all, split
from mail.ai.encoder import MODEL_NAME, Encoder
from mail.ai.heads import HEAD_NAMES, Heads, HeadsMetadata
from mail.ai.text import model_input
from mail.errors import ValidationError
from models.ai import CATEGORIES, INTENTS, PRIORITIES, SENTIMENTS, Classification

DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent / "model"
DEFAULT_CACHE_DIR = Path(".mailray") / "ai"
HEADS_FILE = "heads.safetensors"
MODEL_CARD_FILE = "MODEL_CARD.md"
DEFAULT_SEED = 0
L2_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
MAX_ITERATIONS = 300
_EMBED_CHUNK = 256  # texts per cache write and per progress report

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class LabelFigures(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    precision: float
    recall: float
    f1: float
    support: int  # held-out examples with this label


class HeadFigures(msgspec.Struct, frozen=True, kw_only=True):
    head: str  # category, priority, sentiment, intent; "category (written)": the written set only
    macro_f1: float  # mean F1 over the labels seen in the truth or the predictions
    accuracy: float  # single-label heads: share right; intent: share of exactly right label sets
    examples: int
    l2: float
    labels: list[LabelFigures]


class SpamFigures(msgspec.Struct, frozen=True, kw_only=True):
    precision: float
    recall: float
    f1: float
    examples: int  # held-out SpamAssassin messages
    spam: int  # of which spam


class TrainingReport(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    seed: int
    heads_path: str
    model_card_path: str
    data_sha256: str
    examples_train: int
    examples_held_out: int
    examples_by_group: dict[str, list[int]]  # "source/category": [train, held out]
    heads: list[HeadFigures]
    spam: SpamFigures | None  # None when the corpus was not used
    embedded: int  # texts embedded by this run (the rest came from the cache)
    embed_seconds: float
    fit_seconds: float


class Targets(NamedTuple):
    """Label indices per example; -1 (or a False intent_mask) where an example has no such label."""

    category: torch.Tensor
    priority: torch.Tensor
    sentiment: torch.Tensor
    intent: torch.Tensor  # (n, intents) of 0.0 / 1.0
    intent_mask: torch.Tensor  # (n,) bool


def train(
    output_dir: Path = DEFAULT_OUTPUT_DIR,
    seed: int = DEFAULT_SEED,
    *,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    corpus_dir: Path | None = DEFAULT_CORPUS_DIR,
    limit_per_group: int | None = None,
    encoder: Encoder | None = None,
    progress: Progress | None = None,
) -> TrainingReport:
    """Train on the written set and the corpus (None: the written set only); write heads and card.

    `limit_per_group` keeps that many examples per (source, category), a stable subset for quick runs.
    """
    validate_seed(seed)
    examples = load_all(corpus_dir)
    if limit_per_group is not None:
        examples = split(first_per_group(examples, limit_per_group))
    encoder = encoder or Encoder(device="cpu")
    inputs = [model_input(example.text) for example in examples]

    started = time.perf_counter()
    cache = EmbeddingCache(cache_dir / f"embeddings-{_slug(MODEL_NAME)}-{encoder.max_tokens}.safetensors")
    embeddings, embedded = cache.embed(encoder, inputs, progress)
    embed_seconds = time.perf_counter() - started

    started = time.perf_counter()
    train_mask = torch.tensor([not example.held_out for example in examples])
    targets = targets_of(examples)
    data_sha256 = _data_hash(examples, inputs)
    train_examples = [example for example in examples if not example.held_out]
    validation = torch.tensor([example.held_out for example in split(train_examples, salt="validation")])
    l2 = choose_l2(embeddings[train_mask], _select(targets, train_mask), validation, seed, progress)
    metadata = HeadsMetadata(version=f"seed{seed}-{data_sha256[:12]}", max_tokens=encoder.max_tokens)
    heads = fit_heads(embeddings[train_mask], _select(targets, train_mask), metadata, l2, seed)
    fit_seconds = time.perf_counter() - started

    held_out = ~train_mask
    figures = evaluate(heads, embeddings[held_out], _select(targets, held_out), l2)
    written = torch.tensor([example.source == "written" for example in examples]) & held_out
    figures.append(_category_figures(heads, embeddings[written], targets.category[written], l2["category"]))
    corpus = torch.tensor([example.source == "spamassassin" for example in examples]) & held_out
    spam = spam_figures(heads, embeddings[corpus], targets.category[corpus]) if bool(corpus.any()) else None

    training: dict[str, float | int | str] = {
        "seed": seed,
        "data_sha256": data_sha256,
        "examples_train": int(train_mask.sum()),
        "examples_held_out": int(held_out.sum()),
    }
    for head in figures:
        training[f"{head.head.replace(' (written)', '_written')}_macro_f1"] = round(head.macro_f1, 4)
    if spam is not None:
        training["spam_f1"] = round(spam.f1, 4)
    heads.metadata = msgspec.structs.replace(metadata, training=training)

    heads_path = output_dir / HEADS_FILE
    card_path = output_dir / MODEL_CARD_FILE
    heads.save(heads_path)
    report = TrainingReport(
        version=metadata.version,
        seed=seed,
        heads_path=str(heads_path),
        model_card_path=str(card_path),
        data_sha256=data_sha256,
        examples_train=int(train_mask.sum()),
        examples_held_out=int(held_out.sum()),
        examples_by_group=_group_counts(examples),
        heads=figures,
        spam=spam,
        embedded=embedded,
        embed_seconds=round(embed_seconds, 2),
        fit_seconds=round(fit_seconds, 2),
    )
    _write_text(card_path, model_card(report, heads.metadata, corpus_dir is not None, limit_per_group))
    return report


class EmbeddingCache:
    """Embeddings by SHA-256 of their input text, in one safetensors file (rows appended as needed)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def embed(
        self, encoder: Encoder, texts: Sequence[str], progress: Progress | None = None
    ) -> tuple[torch.Tensor, int]:
        """(len(texts), dim) float32 on the CPU, and how many texts had to be embedded now."""
        keys, rows = self._read(encoder.dimension)
        index = {bytes(key): position for position, key in enumerate(keys.tolist())}
        digests = [hashlib.sha256(text.encode("utf-8", "replace")).digest() for text in texts]
        missing = list(dict.fromkeys(digest for digest in digests if digest not in index))
        text_of = dict(zip(digests, texts, strict=True))
        # Similar lengths together: the encoder pads each batch to its longest text.
        missing.sort(key=lambda digest: len(text_of[digest]), reverse=True)
        for start in range(0, len(missing), _EMBED_CHUNK):
            chunk = missing[start : start + _EMBED_CHUNK]
            vectors = encoder.encode([text_of[digest] for digest in chunk]).float().cpu()
            chunk_keys = torch.tensor([list(digest) for digest in chunk], dtype=torch.uint8)
            index.update((digest, rows.shape[0] + offset) for offset, digest in enumerate(chunk))
            keys, rows = torch.cat([keys, chunk_keys]), torch.cat([rows, vectors])
            self._write(keys, rows)
            if progress is not None:
                progress("embed", min(start + _EMBED_CHUNK, len(missing)), len(missing))
        if not texts:
            return torch.empty((0, encoder.dimension)), 0
        return rows[torch.tensor([index[digest] for digest in digests])], len(missing)

    def _read(self, dimension: int) -> tuple[torch.Tensor, torch.Tensor]:
        empty = (torch.empty((0, 32), dtype=torch.uint8), torch.empty((0, dimension)))
        if not self.path.is_file():
            return empty
        try:
            stored = load_file(str(self.path))
        except (SafetensorError, OSError):
            return empty  # a damaged cache is rebuilt, never trusted
        keys, rows = stored.get("keys"), stored.get("embeddings")
        if keys is None or rows is None or rows.shape[1:] != (dimension,) or keys.shape[0] != rows.shape[0]:
            return empty
        return keys, rows.float()

    def _write(self, keys: torch.Tensor, rows: torch.Tensor) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        os.close(handle)
        try:
            save_file({"keys": keys.contiguous(), "embeddings": rows.contiguous()}, temporary)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def targets_of(examples: Sequence[LabelledEmail]) -> Targets:
    def indices(labels: Sequence[str | None], order: Sequence[str]) -> torch.Tensor:
        return torch.tensor([order.index(label) if label is not None else -1 for label in labels])

    intent = torch.zeros((len(examples), len(INTENTS)))
    for row, example in enumerate(examples):
        for label in example.intents or []:
            intent[row, INTENTS.index(label)] = 1.0
    return Targets(
        category=indices([example.category for example in examples], CATEGORIES),
        priority=indices([example.priority for example in examples], PRIORITIES),
        sentiment=indices([example.sentiment for example in examples], SENTIMENTS),
        intent=intent,
        intent_mask=torch.tensor([example.intents is not None for example in examples], dtype=torch.bool),
    )


def _select(targets: Targets, mask: torch.Tensor) -> Targets:
    return Targets(*(tensor[mask] for tensor in targets))


def fit_heads(
    embeddings: torch.Tensor, targets: Targets, metadata: HeadsMetadata, l2: dict[str, float], seed: int
) -> Heads:
    """Heads fit to the labelled rows of `embeddings`; the same inputs and seed give the same weights."""
    heads = Heads(metadata)
    with _deterministic():
        generator = torch.Generator().manual_seed(seed)
        fits = {
            "category": _fit_softmax(
                embeddings, targets.category, len(CATEGORIES), l2["category"], generator
            ),
            "priority": _fit_softmax(
                embeddings, targets.priority, len(PRIORITIES), l2["priority"], generator
            ),
            "sentiment": _fit_softmax(
                embeddings, targets.sentiment, len(SENTIMENTS), l2["sentiment"], generator
            ),
            "intent": _fit_sigmoid(
                embeddings[targets.intent_mask], targets.intent[targets.intent_mask], l2["intent"], generator
            ),
        }
    with torch.no_grad():
        for name, (weight, bias) in fits.items():
            layer: torch.nn.Linear = getattr(heads, name)
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
    return heads.eval()


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic kernels on one thread: sums then add up in one order, whatever the core count."""
    previous, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(previous)


def _fit_softmax(
    embeddings: torch.Tensor, labels: torch.Tensor, classes: int, l2: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    labelled = labels >= 0
    x, y = embeddings[labelled].float(), labels[labelled]
    weight = torch.randn((classes, x.shape[1]), generator=generator) * 0.01
    bias = torch.zeros(classes)
    if x.shape[0] == 0:
        return weight, bias
    counts = torch.bincount(y, minlength=classes).float()
    present = counts > 0
    # Class-balanced: every class present carries the same total weight in the loss.
    class_weight = torch.where(present, counts.sum() / (present.sum() * counts.clamp(min=1)), 0.0)

    def loss(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(x @ w.T + b, y, weight=class_weight) + l2 * (w * w).sum()

    return _minimise(loss, weight, bias)


def _fit_sigmoid(
    embeddings: torch.Tensor, labels: torch.Tensor, l2: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    x = embeddings.float()
    weight = torch.randn((labels.shape[1], x.shape[1]), generator=generator) * 0.01
    bias = torch.zeros(labels.shape[1])
    if x.shape[0] == 0:
        return weight, bias
    positives = labels.sum(dim=0)
    # Balanced per label: positives weigh as much in total as negatives.
    positive_weight = ((labels.shape[0] - positives) / positives.clamp(min=1)).clamp(min=1.0)

    def loss(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = x @ w.T + b
        return (
            functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=positive_weight)
            + l2 * (w * w).sum()
        )

    return _minimise(loss, weight, bias)


def _minimise(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    weight, bias = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=MAX_ITERATIONS,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = loss(weight, bias)
        value.backward()  # type: ignore[no-untyped-call]
        return value

    with torch.enable_grad():
        optimiser.step(closure)  # type: ignore[no-untyped-call]
    return weight.detach(), bias.detach()


def choose_l2(
    embeddings: torch.Tensor,
    targets: Targets,
    validation: torch.Tensor,
    seed: int,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Per head, the L2 strength of L2_GRID with the best validation macro F1 (the larger on a tie)."""
    fit_part, check_part = _select(targets, ~validation), _select(targets, validation)
    scores: dict[str, dict[float, float]] = {name: {} for name in HEAD_NAMES}
    for step, strength in enumerate(L2_GRID):
        heads = fit_heads(
            embeddings[~validation], fit_part, HeadsMetadata(), dict.fromkeys(HEAD_NAMES, strength), seed
        )
        for figures in evaluate(
            heads, embeddings[validation], check_part, dict.fromkeys(HEAD_NAMES, strength)
        ):
            scores[figures.head][strength] = figures.macro_f1
        if progress is not None:
            progress("fit", step + 1, len(L2_GRID))
    return {name: max(reversed(L2_GRID), key=lambda strength: scores[name][strength]) for name in HEAD_NAMES}


def evaluate(
    heads: Heads, embeddings: torch.Tensor, targets: Targets, l2: dict[str, float]
) -> list[HeadFigures]:
    """Figures of each head on the labelled rows, decoded as `Classifier.classify` decodes them."""
    results = decode(heads.probabilities(embeddings), heads.metadata) if embeddings.shape[0] else []
    figures = [
        _single_label("category", results, targets.category, CATEGORIES, l2["category"]),
        _single_label("priority", results, targets.priority, PRIORITIES, l2["priority"]),
        _single_label("sentiment", results, targets.sentiment, SENTIMENTS, l2["sentiment"]),
    ]
    rows = [row for row in range(len(results)) if bool(targets.intent_mask[row])]
    truth = [{INTENTS[k] for k in range(len(INTENTS)) if targets.intent[row, k] > 0} for row in rows]
    predicted = [set(results[row].intents) for row in rows]
    figures.append(_figures("intent", truth, predicted, INTENTS, l2["intent"]))
    return figures


def _single_label(
    head: str, results: list[Classification], labels: torch.Tensor, order: Sequence[str], l2: float
) -> HeadFigures:
    rows = [row for row in range(len(results)) if int(labels[row]) >= 0]
    truth = [{order[int(labels[row])]} for row in rows]
    predicted = [{getattr(results[row], head)} for row in rows]
    return _figures(head, truth, predicted, order, l2)


def _category_figures(heads: Heads, embeddings: torch.Tensor, labels: torch.Tensor, l2: float) -> HeadFigures:
    results = decode(heads.probabilities(embeddings), heads.metadata) if embeddings.shape[0] else []
    figures = _single_label("category", results, labels, CATEGORIES, l2)
    return msgspec.structs.replace(figures, head="category (written)")


def _figures(
    head: str,
    truth: Sequence[AbstractSet[str]],
    predicted: Sequence[AbstractSet[str]],
    order: Sequence[str],
    l2: float,
) -> HeadFigures:
    labels: list[LabelFigures] = []
    f1_scores: list[float] = []
    for label in order:
        true_positive = sum(
            1 for want, got in zip(truth, predicted, strict=True) if label in want and label in got
        )
        support = sum(1 for want in truth if label in want)
        guessed = sum(1 for got in predicted if label in got)
        precision = true_positive / guessed if guessed else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        labels.append(
            LabelFigures(
                label=label,
                precision=round(precision, 4),
                recall=round(recall, 4),
                f1=round(f1, 4),
                support=support,
            )
        )
        if support or guessed:
            f1_scores.append(f1)
    exact = sum(1 for want, got in zip(truth, predicted, strict=True) if want == got)
    return HeadFigures(
        head=head,
        macro_f1=round(sum(f1_scores) / len(f1_scores), 4) if f1_scores else 0.0,
        accuracy=round(exact / len(truth), 4) if truth else 0.0,
        examples=len(truth),
        l2=l2,
        labels=labels,
    )


def spam_figures(heads: Heads, embeddings: torch.Tensor, categories: torch.Tensor) -> SpamFigures:
    """Spam against everything else, on corpus messages (the folder says which are spam)."""
    results = decode(heads.probabilities(embeddings), heads.metadata)
    spam_index = CATEGORIES.index("spam")
    truth = [int(category) == spam_index for category in categories]
    predicted = [result.category == "spam" for result in results]
    true_positive = sum(1 for want, got in zip(truth, predicted, strict=True) if want and got)
    precision = true_positive / sum(predicted) if any(predicted) else 0.0
    recall = true_positive / sum(truth) if any(truth) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return SpamFigures(
        precision=round(precision, 4),
        recall=round(recall, 4),
        f1=round(f1, 4),
        examples=len(truth),
        spam=sum(truth),
    )


def _data_hash(examples: Sequence[LabelledEmail], inputs: Sequence[str]) -> str:
    """Names the training data: every example's key, model input, labels and split."""
    digest = hashlib.sha256()
    for example, text in zip(examples, inputs, strict=True):
        labels = (example.category, example.priority, example.sentiment, example.intents, example.held_out)
        digest.update(msgspec.json.encode([example.key, text, labels]))
    return digest.hexdigest()


def _group_counts(examples: Sequence[LabelledEmail]) -> dict[str, list[int]]:
    counts: dict[str, list[int]] = {}
    for example in examples:
        pair = counts.setdefault(f"{example.source}/{example.category}", [0, 0])
        pair[1 if example.held_out else 0] += 1
    return dict(sorted(counts.items()))


def _slug(name: str) -> str:
    return name.rsplit("/", 1)[-1].lower()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def model_card(
    report: TrainingReport, metadata: HeadsMetadata, with_corpus: bool, limit_per_group: int | None
) -> str:
    """MODEL_CARD.md: what the heads are, what they learnt from, how well they do, how to rebuild them."""
    command = f".venv/bin/mailray train --seed {report.seed}"
    if not with_corpus or limit_per_group is not None:
        command += "  # (this card came from a reduced run: written set only or a subset)"
    by_head = {figures.head: figures for figures in report.heads}
    lines = [
        "# mailray email classifier: model card",
        "",
        f"Heads version `{report.version}`, written by `mailray train` (mail/ai/train.py). "
        "Regenerated with the heads; edit the code, not this file.",
        "",
        "## What it is",
        "",
        f"Four linear heads over the {metadata.embedding_dim}-float sentence embedding of "
        f"`{metadata.embedding_model}` (mean pooling, L2-normalised; the text cut at "
        f"{metadata.max_tokens} tokens), stored in `{HEADS_FILE}` (safetensors, label order and these "
        "figures in its metadata):",
        "",
        "| head | kind | labels |",
        "|---|---|---|",
        f"| category | softmax | {', '.join(metadata.categories)} |",
        f"| priority | softmax | {', '.join(metadata.priorities)} |",
        f"| sentiment | softmax | {', '.join(metadata.sentiments)} |",
        f"| intent | sigmoid, threshold {metadata.intent_threshold} | {', '.join(metadata.intents)} |",
        "",
        "The model reads `Subject`, `From` and the body with quoted replies, signatures and markup "
        "removed (mail/ai/text.py), at most 3,000 characters of it.",
        "",
        "## Reproduce",
        "",
        "From the repository root, with the SpamAssassin corpus at `../shared/corpora/spamassassin`:",
        "",
        "```",
        command,
        "```",
        "",
        "Embeddings are cached in `.mailray/ai/` by content hash; with the same cache, data and seed the "
        "heads file and this card come out byte for byte the same (on another machine the embeddings "
        "may differ in the last float bits, and so may the last digits below).",
        "",
        "## Data",
        "",
        f"Data hash `{report.data_sha256[:16]}`; {report.examples_train} examples to train on, "
        f"{report.examples_held_out} held out (a fixed fifth of each source and category, chosen by a "
        "hash of the file name or example id). Provenance and labelling rules: "
        "`mail/ai/data/README.md`.",
        "",
        "| source / category | train | held out |",
        "|---|---:|---:|",
    ]
    lines += [f"| {group} | {train} | {held} |" for group, (train, held) in report.examples_by_group.items()]
    lines += [
        "",
        "Corpus messages carry a category (and priority low) only: sentiment and intent are learnt and "
        "measured on the written set alone.",
        "",
        "## Training",
        "",
        "Full-batch L-BFGS on class-balanced cross-entropy (sigmoid heads: positives weighted up to the "
        f"negatives) with an L2 penalty on the weights, seed {report.seed}. The penalty per head is the "
        f"best of {', '.join(str(value) for value in L2_GRID)} on a validation fifth of the training "
        "part: "
        + ", ".join(f"{figures.head} {figures.l2}" for figures in report.heads if "(" not in figures.head)
        + ".",
        "",
        "## Figures (held-out part)",
        "",
        "| head | macro F1 | accuracy | examples |",
        "|---|---:|---:|---:|",
    ]
    for figures in report.heads:
        lines.append(
            f"| {figures.head} | {figures.macro_f1:.3f} | {figures.accuracy:.3f} | {figures.examples} |"
        )
    if report.spam is not None:
        spam = report.spam
        lines += [
            "",
            f"Spam against ham on the held-out SpamAssassin messages ({spam.examples}, {spam.spam} spam): "
            f"precision {spam.precision:.3f}, recall {spam.recall:.3f}, **F1 {spam.f1:.3f}**.",
        ]
    lines.append("")
    lines.append("Intent accuracy counts exactly right label sets.")
    for name in ("category", "category (written)", "priority", "sentiment", "intent"):
        if name not in by_head:
            continue
        lines += [
            "",
            f"### {name}",
            "",
            "| label | precision | recall | F1 | support |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {label.label} | {label.precision:.3f} | {label.recall:.3f} | {label.f1:.3f} | {label.support} |"
            for label in by_head[name].labels
        ]
    lines += [
        "",
        "## Limits",
        "",
        "- Small data: about 45 written emails per category, and the corpus is 2002-2003 mail (mostly "
        "technical mailing lists as newsletters, spam of its day). Held-out figures on the written "
        "set rest on about 9 examples per category; read them as a smoke test, not a benchmark.",
        "- Priority, sentiment and intent are learnt from the written set only (about 290 emails), "
        "English only; complaint and follow-up have about 20 examples each.",
        "- Corpus labels come from rules (folder and headers, see the data README), not from reading "
        "each message: some hard-ham newsletters are really offers and the reverse.",
        "- The written set's emails are short and clean; long real threads, other languages and "
        "unusual formats will do worse. Priority is a guess from the words, with no knowledge of "
        "who the user is or what they care about.",
        "- Spam figures are on old spam; modern phishing looks different. Do not use the spam "
        "label to delete mail.",
        "",
    ]
    return "\n".join(lines)


def validate_seed(seed: int) -> int:
    if not 0 <= seed < 2**63:
        raise ValidationError(f"seed must be 0 to 2**63 - 1, got {seed}", field="seed")
    return seed
