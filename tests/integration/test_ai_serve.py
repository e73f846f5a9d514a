"""The Classifier deployment on the session's Serve stack (configs/serve.yaml, real Ray): answered
through a handle and over HTTP behind the ingress, concurrent callers grouped into batches,
heads swapped by reconfigure without a restart, the device detected (the CPU here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import torch

from cluster.bootstrap import deploy_serve
from mail.ai.classifier import DEFAULT_HEADS_PATH
from mail.ai.heads import Heads
from models.ai import CATEGORIES, Classification, EmailText
from tests.fix_serve import ServeStack

pytestmark = [pytest.mark.integration, pytest.mark.storage, pytest.mark.slow]

INVOICE = EmailText(
    subject="Invoice 4471 is overdue",
    sender="Billing <billing@acme.test>",
    body="Hello, our records show invoice 4471 for $1,250.00 is 30 days overdue. Please arrange payment.",
)


@pytest.fixture
async def classifier(api_url: str) -> AsyncIterator[Any]:
    from ray import serve
    from ray.serve.context import _get_global_client

    yield serve.get_deployment_handle("Classifier", app_name="ai")
    # Handles live on the test's event loop: close them with it, not at the session's end.
    client = _get_global_client()
    assert client is not None
    await client.shutdown_cached_handles_async()  # type: ignore[no-untyped-call]


async def test_the_deployment_answers_through_a_handle_on_the_detected_device(classifier: Any) -> None:
    result = await classifier.classify.remote(INVOICE)
    assert isinstance(result, Classification)
    assert result.category in CATEGORIES and result.primary_intent in result.intents
    assert -1.0 <= result.sentiment_score <= 1.0
    assert abs(sum(result.category_scores.values()) - 1.0) < 1e-4
    info = await classifier.info.remote()
    assert info.device == ("cuda:0" if torch.cuda.is_available() else "cpu")
    many = await classifier.classify_many.remote([INVOICE, EmailText(subject="Lunch?"), INVOICE])
    assert many[0].category == many[2].category == result.category
    vectors = await classifier.embed.remote(["a sentence", "another one"])
    assert len(vectors) == 2 and len(vectors[0]) == 384


async def test_concurrent_callers_are_grouped_into_batches(classifier: Any) -> None:
    before = await classifier.info.remote()
    texts = [
        EmailText(subject=f"Order {index} shipped", body="Your order is on its way.") for index in range(96)
    ]
    results = await asyncio.gather(*(classifier.classify.remote(text) for text in texts))
    after = await classifier.info.remote()
    assert len(results) == 96
    calls = after.messages - before.messages
    batches = after.batches - before.batches
    assert calls == 96
    assert batches < 96 // 4  # many callers per batch, not one each
    assert after.largest_batch > 1


async def test_over_http_behind_the_ingress(api_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{api_url}/ai/classify", json={"subject": INVOICE.subject, "body": INVOICE.body}
        ) as one:
            assert one.status == 200
            body = await one.json()
            assert body["category"] in CATEGORIES
        emails = [{"subject": "Can we meet Tuesday?"}, {"subject": "50% off everything"}]
        async with http.post(f"{api_url}/ai/classify", json={"emails": emails}) as many:
            assert many.status == 200
            assert len((await many.json())["results"]) == 2
        async with http.post(f"{api_url}/ai/classify", json={"subject": 3}) as bad:
            assert bad.status == 422
            assert "subject" in (await bad.json())["error"]["message"]
        async with http.get(f"{api_url}/ai/classify") as wrong:
            assert wrong.status == 404


async def test_reconfigure_swaps_heads_without_a_restart(
    classifier: Any, serve_stack: ServeStack, tmp_path: Path
) -> None:
    heads = Heads.load(DEFAULT_HEADS_PATH)
    with torch.no_grad():  # heads that always say "finance"
        heads.category.weight.zero_()
        heads.category.bias.fill_(-10.0)
        heads.category.bias[CATEGORIES.index("finance")] = 10.0
    path = tmp_path / "finance.safetensors"
    heads.save(path)
    before = await classifier.info.remote()
    swapped = {"heads_path": str(path), "max_batch_size": 16, "batch_wait_timeout_s": 0.002}
    try:
        deploy_serve(serve_stack.settings, user_configs={("ai", "Classifier"): swapped})
        result = await classifier.classify.remote(EmailText(subject="Lunch on Friday?", body="Pizza?"))
        assert result.category == "finance"
        info = await classifier.info.remote()
        assert (info.pid, info.max_batch_size) == (before.pid, 16)  # the same replica, reconfigured
    finally:
        original = {
            "heads_path": str(DEFAULT_HEADS_PATH),
            "max_batch_size": 64,
            "batch_wait_timeout_s": 0.005,
        }
        deploy_serve(serve_stack.settings, user_configs={("ai", "Classifier"): original})
    restored = await classifier.classify.remote(INVOICE)
    assert restored.category_scores["finance"] < 0.999
