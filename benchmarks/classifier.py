"""Classifier throughput: the Serve deployment under many concurrent callers vs a raw in-process loop
of the same model over the same texts at its best batch size, on the same device, in one run.

    .venv/bin/python benchmarks/classifier.py [--emails 1000] [--callers 128] [--batch-sizes 8,16,32,64,128]

Texts are SpamAssassin corpus messages (subject, sender, body, as the AnalysisWorker sends them).
`raw`: mail.ai.classifier.Classifier.classify over the texts in batches of each size; the best
rate counts. `serve`: the Classifier deployment (serve/classifier) on a local Ray, called through
its handle by `--callers` concurrent callers with one email per call, so dynamic batching must
group them; its max_batch_size is the raw loop's best size. Prints JSON lines: the raw rate of
each batch size, the Serve rate, the ratio (goal >= 0.90) and the device.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mail.ai.classifier import Classifier  # noqa: E402
from mail.ai.text import from_parsed  # noqa: E402
from mail.mime import parse_message, read_corpus_message  # noqa: E402
from models.ai import EmailText  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "spamassassin"


def corpus_texts(count: int) -> list[EmailText]:
    paths = sorted(CORPUS.glob("*/*"))
    texts = [from_parsed(parse_message(read_corpus_message(path))) for path in paths[: max(count, 1)]]
    while len(texts) < count:  # a small corpus is repeated
        texts += texts[: count - len(texts)]
    return texts


def raw_rates(classifier: Classifier, texts: list[EmailText], sizes: list[int]) -> dict[int, float]:
    classifier.classify(texts[:32], batch_size=32)  # warm up
    rates = {}
    for size in sizes:
        started = time.perf_counter()
        for start in range(0, len(texts), size):
            classifier.classify(texts[start : start + size], batch_size=size)
        rates[size] = len(texts) / (time.perf_counter() - started)
        print(json.dumps({"raw_batch_size": size, "emails_per_s": round(rates[size], 1)}), flush=True)
    return rates


async def serve_rate(texts: list[EmailText], callers: int, batch_size: int) -> float:
    from ray import serve

    from serve.classifier.deployment import ClassifierDeployment

    app = ClassifierDeployment.options(
        max_ongoing_requests=max(callers * 2, batch_size * 2),
        user_config={"max_batch_size": batch_size, "batch_wait_timeout_s": 0.005},
        ray_actor_options={"num_cpus": 0.25, "num_gpus": 1 if _gpus() else 0},
    ).bind()
    handle = serve.run(app, name="ai", route_prefix="/ai")
    await handle.classify.remote(texts[0])  # warm up
    queue = iter(texts)

    async def caller() -> int:
        done = 0
        for text in queue:
            await handle.classify.remote(text)
            done += 1
        return done

    started = time.perf_counter()
    done = sum(await asyncio.gather(*(caller() for _ in range(callers))))
    elapsed = time.perf_counter() - started
    serve.delete("ai")
    return done / elapsed


def _gpus() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--callers", type=int, default=128)
    parser.add_argument("--batch-sizes", default="8,16,32,64,128")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    arguments = parser.parse_args()
    texts = corpus_texts(arguments.emails)
    classifier = Classifier.load()
    device = str(classifier.device)
    rates = raw_rates(classifier, texts, [int(size) for size in arguments.batch_sizes.split(",")])
    best_size = max(rates, key=rates.__getitem__)
    del classifier  # the replica loads its own; one model in memory at a time on a small machine

    import ray

    ray.init(num_cpus=arguments.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        served = asyncio.run(serve_rate(texts, arguments.callers, best_size))
    finally:
        ray.shutdown()
    result = {
        "device": device,
        "emails": len(texts),
        "raw_best_batch_size": best_size,
        "raw_emails_per_s": round(rates[best_size], 1),
        "serve_callers": arguments.callers,
        "serve_emails_per_s": round(served, 1),
        "ratio": round(served / rates[best_size], 3),
        "goal": 0.90,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
