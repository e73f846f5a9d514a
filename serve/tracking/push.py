"""The Gmail push webhook, `POST /push/gmail`, on a deployment of its own (low traffic, FastAPI),
with the providers' bounce webhooks beside it (serve.tracking.bounce_push).

A push only says "something changed in this mailbox": the account's actor is woken and reads
history from its stored cursor, so a lost, repeated or reordered push costs nothing but latency.
Pub/Sub retries any non-2xx answer, so a push for a mailbox nobody syncs is acknowledged (204).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response

from mail import accounts
from mail.gmail.push import PushVerifier, decode_push
from mail.sync import state as sync_state
from serve.api.deps import ServicesDep, ServicesFactory, ServicesHolder
from serve.errors import install_error_handlers
from serve.tracking.bounce_push import add_bounce_routes

log = logging.getLogger(__name__)


def create_push_app(services_factory: ServicesFactory) -> FastAPI:
    app = FastAPI(title="mailray push", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = ServicesHolder(services_factory)
    install_error_handlers(app)
    verifiers: dict[str, PushVerifier] = {}

    # Served under the application's route prefix /push (configs/serve.yaml): POST /push/gmail.
    @app.post("/gmail", status_code=204)
    async def gmail_push(request: Request, svc: ServicesDep) -> Response:
        verifier = verifiers.setdefault("gmail", PushVerifier(svc.settings.gmail))
        await verifier.verify(request.headers.get("authorization"))
        notification = decode_push(await request.body())
        async with svc.pool.connection() as conn:
            account_ids = await accounts.find_account_by_email(conn, notification.email_address)
            for account_id in account_ids:
                await sync_state.record_push(conn, account_id)
        for account_id in account_ids:
            await _wake(svc.settings.ray.namespace, str(account_id), notification.history_id)
        return Response(status_code=204)

    add_bounce_routes(app)
    return app


async def _wake(namespace: str, account_id: str, history_id: int) -> None:
    import ray

    from actors.account_sync import actor_name
    from actors.lookup import find_actor

    if not ray.is_initialized():  # served outside Ray (tests): polling picks the change up
        return

    actor = find_actor(actor_name(account_id), namespace)
    if actor is None:
        log.info("push for account %s whose actor is not running; the supervisor will start it", account_id)
        return
    await actor.wake.remote(history_id)
