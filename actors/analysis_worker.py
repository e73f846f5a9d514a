"""The AnalysisWorker actor: one named, detached worker that analyzes newly synced mail through
the Classifier deployment and stores the results (mail.ai.pipeline), restarted by Ray.

It works while there is unanalyzed mail (the newest first), then waits for sync's doorbell
(mail.ai.doorbell) or its poll interval. A restart loses nothing: an email is marked analyzed in
the transaction that stores its analysis.
"""

from __future__ import annotations

import logging
from typing import Any

import ray

from actors.lookup import start_detached
from actors.looping import LoopingActor
from mail.ai import doorbell

log = logging.getLogger(__name__)

WORKER_NAME = "analysis-worker"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class AnalysisWorker(LoopingActor):
    def __init__(self) -> None:
        self._analyzed = 0
        super().__init__()

    async def _loop(self) -> None:
        from mail.ai.backend import ServeBackend
        from mail.ai.pipeline import analyze_pending

        services = await self._open()
        settings = services.settings.ai
        backend = ServeBackend(settings)
        while True:
            done = await analyze_pending(services, backend, settings.worker_batch)
            self._analyzed += done
            if not done:
                await doorbell.wait(services.redis, settings.poll_interval_s)

    async def totals(self) -> dict[str, Any]:
        return {"analyzed": self._analyzed}


def start_analysis_worker(namespace: str, env: dict[str, str]) -> Any:
    return start_detached(AnalysisWorker, WORKER_NAME, namespace, env)
