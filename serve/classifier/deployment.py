"""The `Classifier` Serve deployment: the MiniLM encoder and the trained heads (mail.ai.classifier)
behind dynamic batching, for handles (the AnalysisWorker, the API, the reprocess job) and HTTP.

Handle methods: `classify(text)` for one message, `classify_many(texts)`, `embed(sentences)` for
sentence embeddings (the extractive summary and reply retrieval), `info()`. Every call goes
through one `@serve.batch` queue per kind, sized in messages (`batch_size_fn`), so concurrent
callers with one message each and callers with a list share batches alike.

The model runs in a worker thread, so the replica's event loop keeps taking requests (and
forming the next batch) while a batch is computed; one lock keeps the encoder single-threaded.
The device is detected (CUDA when the replica was given a GPU, else the CPU; half precision on
CUDA): `num_gpus` is in configs/serve.yaml, nothing here names a device. `reconfigure` (the
user_config in configs/serve.yaml or `serve deploy`) swaps heads and batch sizes without a restart.

HTTP, under the application's route prefix (/ai): `POST /ai/classify` with one message
({"subject", "sender", "body"}) or {"emails": [...]}, answering the classification(s) as JSON.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import torch
from ray import serve
from ray.serve import Application
from starlette.requests import Request
from starlette.responses import Response

from mail.ai.classifier import Classifier
from mail.errors import ValidationError
from models.ai import Classification, EmailText

DEFAULT_MAX_BATCH = 64
DEFAULT_WAIT_S = 0.005
# The next batch is formed and waiting for the model while one computes: no idle gap between them.
CONCURRENT_BATCHES = 2
MAX_HTTP_EMAILS = 1000
MAX_BODY_BYTES = 16 * 1024 * 1024

_encoder = msgspec.json.Encoder()


class _Many(msgspec.Struct, forbid_unknown_fields=True):
    emails: list[EmailText]


def _messages(items: list[list[Any]]) -> int:
    return sum(len(item) for item in items)


class ClassifierInfo(msgspec.Struct, frozen=True, kw_only=True):
    device: str
    dtype: str
    heads_version: str
    max_batch_size: int
    batch_wait_timeout_s: float
    # Batches this replica has run, and their sizes in messages (how well callers are grouped).
    batches: int
    largest_batch: int
    messages: int
    pid: int


class ClassifierModel:
    """The deployment's class, usable without Serve's decorator (tests call it directly too)."""

    def __init__(self, heads_path: str = "", device: str = "", torch_threads: int = 0) -> None:
        # Ray gives a fractional-CPU actor OMP_NUM_THREADS=1; the model is this replica's whole work,
        # so it uses `torch_threads` threads (0: every core this process may run on).
        torch.set_num_threads(torch_threads or len(os.sched_getaffinity(0)))
        self._model = Classifier.load(Path(heads_path) if heads_path else None, device or None)
        self._lock = threading.Lock()
        self._batches = self._largest = self._messages = 0

    def reconfigure(self, config: dict[str, Any]) -> None:
        heads_path = config.get("heads_path")
        if heads_path:
            self._model.set_heads(Path(str(heads_path)))
        if "max_batch_size" in config:
            size = int(config["max_batch_size"])
            if size < 1:
                raise ValidationError("max_batch_size must be at least 1", field="max_batch_size")
            self._classify_batch.set_max_batch_size(size)  # type: ignore[attr-defined]
            self._embed_batch.set_max_batch_size(size)  # type: ignore[attr-defined]
        if "batch_wait_timeout_s" in config:
            wait = float(config["batch_wait_timeout_s"])
            self._classify_batch.set_batch_wait_timeout_s(wait)  # type: ignore[attr-defined]
            self._embed_batch.set_batch_wait_timeout_s(wait)  # type: ignore[attr-defined]

    def info(self) -> ClassifierInfo:
        return ClassifierInfo(
            device=str(self._model.device),
            dtype=str(self._model.encoder.dtype).removeprefix("torch."),
            heads_version=self._model.metadata.version,
            max_batch_size=self._max_batch(),
            batch_wait_timeout_s=self._classify_batch._get_batch_wait_timeout_s(),  # type: ignore[attr-defined]
            batches=self._batches,
            largest_batch=self._largest,
            messages=self._messages,
            pid=os.getpid(),
        )

    def _max_batch(self) -> int:
        return int(self._classify_batch._get_max_batch_size())  # type: ignore[attr-defined]

    # -- the model, in a worker thread ----------------------------------------------------------

    def _run_classify(self, texts: list[EmailText]) -> list[Classification]:
        self._batches += 1
        self._largest = max(self._largest, len(texts))
        self._messages += len(texts)
        with self._lock:
            return self._model.classify(texts, batch_size=max(len(texts), 1))

    def _run_embed(self, sentences: list[str]) -> list[list[float]]:
        with self._lock:
            vectors = self._model.encoder.encode(sentences, batch_size=max(len(sentences), 1))
        return [[float(x) for x in row] for row in vectors.float().cpu().tolist()]

    @serve.batch(
        max_batch_size=DEFAULT_MAX_BATCH,
        batch_wait_timeout_s=DEFAULT_WAIT_S,
        max_concurrent_batches=CONCURRENT_BATCHES,
        batch_size_fn=_messages,
    )
    async def _classify_batch(self, items: list[list[EmailText]]) -> list[list[Classification]]:
        flat = [text for item in items for text in item]
        results = await asyncio.to_thread(self._run_classify, flat)
        return _split(results, items)

    @serve.batch(
        max_batch_size=DEFAULT_MAX_BATCH,
        batch_wait_timeout_s=DEFAULT_WAIT_S,
        max_concurrent_batches=CONCURRENT_BATCHES,
        batch_size_fn=_messages,
    )
    async def _embed_batch(self, items: list[list[str]]) -> list[list[list[float]]]:
        flat = [sentence for item in items for sentence in item]
        results = await asyncio.to_thread(self._run_embed, flat)
        return _split(results, items)

    # -- handle methods ---------------------------------------------------------------------------

    async def classify(self, text: EmailText) -> Classification:
        [result] = await self._classify_batch([_checked(text)])
        return result

    async def classify_many(self, texts: Sequence[EmailText]) -> list[Classification]:
        checked = [_checked(text) for text in texts]
        if not checked:
            return []
        chunks = _chunks(checked, self._max_batch())
        answers = await asyncio.gather(*(self._classify_batch(chunk) for chunk in chunks))
        return [result for answer in answers for result in answer]

    async def embed(self, sentences: Sequence[str]) -> list[list[float]]:
        if not all(isinstance(sentence, str) for sentence in sentences):
            raise ValidationError("embed takes a list of strings", field="sentences")
        if not sentences:
            return []
        chunks = _chunks(list(sentences), self._max_batch())
        answers = await asyncio.gather(*(self._embed_batch(chunk) for chunk in chunks))
        return [vector for answer in answers for vector in answer]

    async def __call__(self, request: Request) -> Response:
        if request.method != "POST" or request.url.path.rstrip("/").rsplit("/", 1)[-1] != "classify":
            return _error(404, "NotFound", "POST /ai/classify is the route here")
        try:
            answer = await self._http(await request.body())
        except ValidationError as error:
            return _error(422, "ValidationError", error.message)
        return Response(_encoder.encode(answer), media_type="application/json")

    async def _http(self, raw: bytes) -> Any:
        if len(raw) > MAX_BODY_BYTES:
            raise ValidationError(f"body over {MAX_BODY_BYTES} bytes", field="body")
        try:
            fields = msgspec.json.decode(raw or b"{}", type=dict[str, Any])
            value: _Many | EmailText = (
                msgspec.convert(fields, _Many) if "emails" in fields else msgspec.convert(fields, EmailText)
            )
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            raise ValidationError(f"request body: {error}", field="body") from None
        if isinstance(value, _Many):
            if len(value.emails) > MAX_HTTP_EMAILS:
                raise ValidationError(f"at most {MAX_HTTP_EMAILS} emails per request", field="emails")
            return {"results": await self.classify_many(value.emails)}
        return await self.classify(value)

    def check_health(self) -> None:
        self._model.heads  # noqa: B018 - loaded, or __init__ would have raised


def _error(status: int, code: str, message: str) -> Response:
    body = {"error": {"code": code, "message": message}}
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")


def _checked(text: Any) -> EmailText:
    if not isinstance(text, EmailText):
        raise ValidationError(f"expected an EmailText, got {type(text).__name__}", field="text")
    return text


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _split(results: list[Any], items: list[list[Any]]) -> list[list[Any]]:
    answers, start = [], 0
    for item in items:
        answers.append(results[start : start + len(item)])
        start += len(item)
    return answers


ClassifierDeployment = serve.deployment(name="Classifier")(ClassifierModel)


def build(args: dict[str, Any]) -> Application:
    """Application builder named by configs/serve.yaml (`import_path: serve.classifier.deployment:build`)."""
    return ClassifierDeployment.bind(
        heads_path=str(args.get("heads_path", "")),
        device=str(args.get("device", "")),
        torch_threads=int(args.get("torch_threads", 0)),
    )
