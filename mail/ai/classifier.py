"""Classify email in process: the encoder, then the trained heads (mail/ai/model/heads.safetensors).

    classifier = Classifier.load()                      # encoder + shipped heads, CUDA when there is one
    [result] = classifier.classify([EmailText(subject="Invoice 1043 overdue", body="...")])
    result.category, result.priority, result.intents    # "finance", "high", ["request", "follow-up"]

The heads can be swapped while the classifier serves (`set_heads`): a call reads the heads once, so
it sees either the old or the new ones, never a mix. The encoder is not safe to call from two
threads at once (its tokenizer is not); a Serve replica calls it from one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch

from mail.ai.encoder import DEFAULT_BATCH_SIZE, Encoder
from mail.ai.heads import HeadOutputs, Heads, HeadsMetadata
from mail.ai.text import model_input
from mail.errors import ValidationError
from models.ai import Category, Classification, EmailText, Intent, Priority, Sentiment

DEFAULT_HEADS_PATH = Path(__file__).resolve().parent / "model" / "heads.safetensors"


class Classifier:
    def __init__(self, encoder: Encoder, heads: Heads) -> None:
        self._encoder = encoder
        self._heads = heads
        self.set_heads(heads)

    @classmethod
    def load(cls, heads_path: Path | None = None, device: str | None = None) -> Classifier:
        """The encoder and the heads at `heads_path` (default: the shipped ones) on `device` (default: detected)."""
        encoder = Encoder(device=device)
        heads = Heads.load(heads_path or DEFAULT_HEADS_PATH, device=encoder.device)
        return cls(encoder, heads)

    @property
    def device(self) -> torch.device:
        return self._encoder.device

    @property
    def encoder(self) -> Encoder:
        return self._encoder

    @property
    def heads(self) -> Heads:
        return self._heads

    @property
    def metadata(self) -> HeadsMetadata:
        return self._heads.metadata

    def set_heads(self, heads: Heads | Path) -> None:
        """Use other heads from now on (a file path is loaded); the encoder stays."""
        if isinstance(heads, Path):
            heads = Heads.load(heads, device=self._encoder.device)
        heads = heads.to(self._encoder.device).eval()
        # Embeddings must be cut where the heads' training data was cut.
        self._encoder.max_tokens = heads.metadata.max_tokens
        self._heads = heads

    def embed(self, texts: Sequence[EmailText], batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
        """(len(texts), 384) float32 embeddings of the messages, on this classifier's device."""
        return self._encoder.encode([model_input(text) for text in texts], batch_size=batch_size)

    def classify(
        self, texts: Sequence[EmailText], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> list[Classification]:
        return self.classify_embeddings(self.embed(texts, batch_size=batch_size))

    def classify_embeddings(self, embeddings: torch.Tensor) -> list[Classification]:
        """Classifications of embeddings `embed` made (of this encoder: other vectors mean nothing here)."""
        heads = self._heads  # once: a concurrent set_heads cannot mix two sets in one answer
        return decode(heads.probabilities(embeddings), heads.metadata)


def decode(probabilities: HeadOutputs, metadata: HeadsMetadata) -> list[Classification]:
    """Classifications from the heads' probabilities (rows are messages)."""
    categories = probabilities.category.detach().float().cpu().tolist()
    priorities = probabilities.priority.detach().float().cpu().tolist()
    sentiments = probabilities.sentiment.detach().float().cpu().tolist()
    intents = probabilities.intent.detach().float().cpu().tolist()
    if not len(categories) == len(priorities) == len(sentiments) == len(intents):
        raise ValidationError("the heads' outputs disagree on the number of messages", field="probabilities")
    return [
        _classification(category, priority, sentiment, intent, metadata)
        for category, priority, sentiment, intent in zip(
            categories, priorities, sentiments, intents, strict=True
        )
    ]


def _classification(
    category: list[float],
    priority: list[float],
    sentiment: list[float],
    intent: list[float],
    metadata: HeadsMetadata,
) -> Classification:
    best = _argmax(category)
    sentiment_by_label = dict(zip(metadata.sentiments, sentiment, strict=True))
    return Classification(
        category=cast(Category, metadata.categories[best]),
        category_scores=dict(zip(metadata.categories, category, strict=True)),
        priority=cast(Priority, metadata.priorities[_argmax(priority)]),
        sentiment=cast(Sentiment, metadata.sentiments[_argmax(sentiment)]),
        sentiment_score=max(-1.0, min(1.0, sentiment_by_label["positive"] - sentiment_by_label["negative"])),
        intents=select_intents(intent, metadata),
        primary_intent=cast(Intent, metadata.intents[_argmax(intent)]),
        confidence=category[best],
    )


def select_intents(scores: list[float], metadata: HeadsMetadata) -> list[Intent]:
    """Intents at or over the threshold, most likely first; the most likely one when none is."""
    order = sorted(range(len(scores)), key=lambda index: scores[index], reverse=True)
    chosen = [index for index in order if scores[index] >= metadata.intent_threshold] or order[:1]
    return [cast(Intent, metadata.intents[index]) for index in chosen]


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)
