"""The sentence-embedding function the text analyses take as a parameter.

In production it is `mail.ai.encoder.Encoder(...).encode` (all-MiniLM-L6-v2: 384 floats a text,
unit norm); tests pass a deterministic stand-in. Anything that maps texts to one row each works:
rows are normalised here before they are compared, so a stand-in need not normalise.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as functional

Embed = Callable[[Sequence[str]], torch.Tensor]


def cosine_similarity(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Cosine similarities of every row of `left` with every row of `right`: shape (n, m).

    A single vector counts as one row; a zero row is similar to nothing (0).
    """
    left = _rows(left)
    right = _rows(right)
    if left.shape[0] == 0 or right.shape[0] == 0:
        return torch.zeros(left.shape[0], right.shape[0])
    return functional.normalize(left, dim=-1) @ functional.normalize(right, dim=-1).T


def _rows(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().float().cpu()
    return tensor.unsqueeze(0) if tensor.dim() == 1 else tensor


def memoized(embed: Embed) -> Embed:
    """`embed` remembering the row of every text it has embedded, for the parts of one analysis
    that embed the same sentences. `unwrapped` gives back `embed` (what caches key on)."""
    rows: dict[str, torch.Tensor] = {}

    @functools.wraps(embed)
    def cached(texts: Sequence[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(text for text in texts if text not in rows))
        if missing:
            for text, row in zip(missing, embed(missing).detach().float().cpu(), strict=True):
                rows[text] = row
        if not texts:
            return embed(texts)
        return torch.stack([rows[text] for text in texts])

    return cached


def unwrapped(embed: Embed) -> Embed:
    """The embedding function under any `memoized` layers."""
    innermost: Embed = inspect.unwrap(embed)
    return innermost
