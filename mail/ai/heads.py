"""The trained heads: small linear layers over a message's 384-float embedding.

category, priority and sentiment are softmax layers (one label each); intent is a sigmoid layer
(any number of labels). They live in one safetensors file: the eight tensors (`<head>.weight`,
`<head>.bias`) and, in its header, the metadata as JSON under the key `mailray.heads`: label orders,
the encoder they were trained on, the intent threshold and the training figures. A file that
names other labels than models.ai's, or another encoder, does not load (ConfigError).

safetensors, unlike pickle, cannot run code when read; the file is small (about 40 KB).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import msgspec
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mail.ai.encoder import DEFAULT_MAX_TOKENS, EMBEDDING_DIM, MODEL_NAME
from mail.errors import ConfigError, ValidationError
from models.ai import CATEGORIES, INTENTS, PRIORITIES, SENTIMENTS

FORMAT_VERSION = 1
METADATA_KEY = "mailray.heads"
DEFAULT_INTENT_THRESHOLD = 0.5
HEAD_NAMES = ("category", "priority", "sentiment", "intent")


class HeadsMetadata(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format_version: int = FORMAT_VERSION
    version: str = "untrained"  # names a trained set, e.g. "2026.07-seed0-1a2b3c4d"
    embedding_model: str = MODEL_NAME
    embedding_dim: int = EMBEDDING_DIM
    max_tokens: int = DEFAULT_MAX_TOKENS  # the encoder's truncation the heads were trained with
    categories: tuple[str, ...] = CATEGORIES
    priorities: tuple[str, ...] = PRIORITIES
    sentiments: tuple[str, ...] = SENTIMENTS
    intents: tuple[str, ...] = INTENTS
    intent_threshold: float = DEFAULT_INTENT_THRESHOLD
    # Figures from training (held-out macro F1 per head, spam F1, example counts, seed, data hash).
    training: dict[str, float | int | str] = msgspec.field(default_factory=dict)


_metadata_decoder = msgspec.json.Decoder(HeadsMetadata)


class HeadOutputs(NamedTuple):
    """Per message (rows), per label (columns, in the metadata's order): logits or probabilities."""

    category: torch.Tensor
    priority: torch.Tensor
    sentiment: torch.Tensor
    intent: torch.Tensor  # independent probabilities: rows do not sum to 1


class Heads(torch.nn.Module):
    """The four heads; `forward` gives logits, `probabilities` what a classification reads."""

    def __init__(self, metadata: HeadsMetadata | None = None) -> None:
        super().__init__()
        self.metadata = metadata or HeadsMetadata()
        _check_labels(self.metadata)
        dim = self.metadata.embedding_dim
        self.category = torch.nn.Linear(dim, len(self.metadata.categories))
        self.priority = torch.nn.Linear(dim, len(self.metadata.priorities))
        self.sentiment = torch.nn.Linear(dim, len(self.metadata.sentiments))
        self.intent = torch.nn.Linear(dim, len(self.metadata.intents))

    def forward(self, embeddings: torch.Tensor) -> HeadOutputs:
        """Logits of every head (named like the probabilities, but not normalised)."""
        return HeadOutputs(
            self.category(embeddings),
            self.priority(embeddings),
            self.sentiment(embeddings),
            self.intent(embeddings),
        )

    def probabilities(self, embeddings: torch.Tensor) -> HeadOutputs:
        if embeddings.dim() != 2 or embeddings.shape[1] != self.metadata.embedding_dim:
            raise ValidationError(
                f"embeddings must be (n, {self.metadata.embedding_dim}), got {tuple(embeddings.shape)}",
                field="embeddings",
            )
        with torch.inference_mode():
            weight = self.category.weight
            logits = self(embeddings.to(device=weight.device, dtype=weight.dtype))
            return HeadOutputs(
                torch.softmax(logits.category, dim=1),
                torch.softmax(logits.priority, dim=1),
                torch.softmax(logits.sentiment, dim=1),
                torch.sigmoid(logits.intent),
            )

    @property
    def device(self) -> torch.device:
        return self.category.weight.device

    def save(self, path: Path) -> None:
        """Write the heads to `path` (safetensors), atomically: a reader never sees half a file."""
        tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in self.state_dict().items()}
        metadata = {METADATA_KEY: msgspec.json.encode(self.metadata).decode()}
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        try:
            save_file(tensors, temporary, metadata=metadata)
            os.chmod(temporary, 0o644)  # mkstemp's 0600 would make a shipped file unreadable to others
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, device: str | torch.device = "cpu") -> Heads:
        """Heads from a file `save` wrote; ConfigError when it is missing, unreadable or for other labels."""
        try:
            with safe_open(str(path), framework="pt", device="cpu") as reader:
                header = reader.metadata() or {}
                tensors = {name: reader.get_tensor(name) for name in reader.keys()}  # noqa: SIM118
        except FileNotFoundError as error:
            raise ConfigError(f"heads: no such file: {path}") from error
        except (SafetensorError, OSError) as error:
            raise ConfigError(f"heads: cannot read {path}: {error}") from error
        if METADATA_KEY not in header:
            raise ConfigError(f"heads: {path} has no {METADATA_KEY} metadata; not a mailray heads file")
        try:
            metadata = _metadata_decoder.decode(header[METADATA_KEY])
        except msgspec.ValidationError as error:
            raise ConfigError(f"heads: {path}: bad metadata: {error}") from error
        if metadata.format_version != FORMAT_VERSION:
            raise ConfigError(f"heads: {path}: format {metadata.format_version}, expected {FORMAT_VERSION}")
        heads = cls(metadata)
        expected = {name: tuple(tensor.shape) for name, tensor in heads.state_dict().items()}
        found = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
        if found != expected:
            raise ConfigError(f"heads: {path}: tensors {found}, expected {expected}")
        heads.load_state_dict(tensors)
        return heads.to(device).eval()


def _check_labels(metadata: HeadsMetadata) -> None:
    """The label sets must be models.ai's (any order): a Classification can only name those."""
    for name, labels, known in (
        ("categories", metadata.categories, CATEGORIES),
        ("priorities", metadata.priorities, PRIORITIES),
        ("sentiments", metadata.sentiments, SENTIMENTS),
        ("intents", metadata.intents, INTENTS),
    ):
        if sorted(labels) != sorted(known):
            raise ConfigError(f"heads: {name} {list(labels)} are not mailray's {list(known)}")
    if metadata.embedding_model != MODEL_NAME or metadata.embedding_dim != EMBEDDING_DIM:
        raise ConfigError(
            f"heads: trained on {metadata.embedding_model} ({metadata.embedding_dim} floats); "
            f"this encoder is {MODEL_NAME} ({EMBEDDING_DIM})"
        )
    if not 0.0 < metadata.intent_threshold < 1.0:
        raise ConfigError(f"heads: intent_threshold must lie in (0, 1), got {metadata.intent_threshold}")
