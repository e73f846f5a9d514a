"""Where the model runs, seen from its callers: the Classifier Serve deployment (a handle), or a
Classifier in this process (the API outside Ray, the reprocess job's actors, tests).

Both give `classify_many` and `embed`, asynchronously; `blocking_embed` turns `embed` into the
synchronous `Embed` function the text analyses take, for use from a worker thread while the
event loop keeps running.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from mail.ai.embedding import Embed
from models.ai import Classification, EmailText
from models.settings import AiSettings


class AiBackend(Protocol):
    async def classify_many(self, texts: Sequence[EmailText]) -> list[Classification]: ...
    async def embed(self, sentences: Sequence[str]) -> list[list[float]]: ...
    async def model_version(self) -> str: ...


class LocalBackend:
    """A Classifier in this process; calls run in a worker thread, one at a time."""

    def __init__(self, classifier: Any) -> None:
        self._classifier = classifier
        self._lock = threading.Lock()

    @classmethod
    def load(cls) -> LocalBackend:
        from mail.ai.classifier import Classifier

        return cls(Classifier.load())

    def _classify(self, texts: Sequence[EmailText]) -> list[Classification]:
        with self._lock:
            return list(self._classifier.classify(list(texts)))

    def embed_now(self, sentences: Sequence[str]) -> torch.Tensor:
        with self._lock:
            vectors: torch.Tensor = self._classifier.encoder.encode(list(sentences))
        return vectors.float().cpu()

    async def classify_many(self, texts: Sequence[EmailText]) -> list[Classification]:
        if not texts:
            return []
        return await asyncio.to_thread(self._classify, texts)

    async def embed(self, sentences: Sequence[str]) -> list[list[float]]:
        if not sentences:
            return []
        vectors = await asyncio.to_thread(self.embed_now, sentences)
        return [list(map(float, row)) for row in vectors.tolist()]

    async def model_version(self) -> str:
        return str(self._classifier.metadata.version)


class ServeBackend:
    """The Classifier deployment, through a handle (inside a Ray cluster running Serve)."""

    def __init__(self, settings: AiSettings) -> None:
        from ray import serve

        self._handle = serve.get_deployment_handle(
            settings.classifier_deployment, app_name=settings.classifier_app
        )
        self._version: str | None = None

    async def classify_many(self, texts: Sequence[EmailText]) -> list[Classification]:
        if not texts:
            return []
        result: list[Classification] = await self._handle.classify_many.remote(list(texts))
        return result

    async def embed(self, sentences: Sequence[str]) -> list[list[float]]:
        if not sentences:
            return []
        result: list[list[float]] = await self._handle.embed.remote(list(sentences))
        return result

    async def model_version(self) -> str:
        info = await self._handle.info.remote()
        return str(info.heads_version)


def blocking_embed(backend: AiBackend, loop: asyncio.AbstractEventLoop) -> Embed:
    """`backend.embed` as a plain function, for a thread other than `loop`'s."""

    def embed(sentences: Sequence[str]) -> torch.Tensor:
        if not sentences:
            return torch.zeros(0, 384)
        if isinstance(backend, LocalBackend):
            return backend.embed_now(sentences)
        rows = asyncio.run_coroutine_threadsafe(backend.embed(sentences), loop).result()
        return torch.tensor(rows, dtype=torch.float32)

    return embed
