"""Email AI over the API: analyze an email, suggest replies, generate a template, read a stored
analysis.

The model runs in the Classifier deployment (serve/classifier), reached through a handle when
this app is served by Ray Serve; outside Serve (tests, a single process) a classifier is loaded
in this process on first use. Smart replies and templates come from the configured
OpenAI-compatible endpoint when there is one (`[ai] generation_url`), with the local methods as
the fallback. The texts sent here are content: every call is audited (action and sizes only).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from fastapi import APIRouter, Request, Response

from mail.access import require_read_email
from mail.ai.store import StoredEmail, read_analysis
from mail.audit import AuditEntry, record
from mail.errors import NotFound, ValidationError
from models.ai_analysis import ReplyContext, TemplateRequest
from models.api import AnalyzeEmail
from models.settings import AiSettings
from serve.api.deps import PrincipalDep, ServicesDep, decode_body, json_response, request_context

if TYPE_CHECKING:  # torch and the model load on the first AI call, not with the API
    from mail.ai.backend import AiBackend
    from mail.ai.generation import Generator

router = APIRouter(prefix="/v1")

_backend: AiBackend | None = None
_generator: Generator | None = None
_loading = asyncio.Lock()


async def ai_backend(settings: AiSettings) -> AiBackend:
    """The Classifier deployment inside Serve, else a classifier in this process (loaded once)."""
    from mail.ai.backend import LocalBackend, ServeBackend

    global _backend
    async with _loading:
        if _backend is None:
            _backend = ServeBackend(settings) if _in_serve() else await asyncio.to_thread(LocalBackend.load)
    return _backend


def _in_serve() -> bool:
    try:
        from ray import serve

        serve.get_replica_context()
    except Exception:  # RayServeException outside a replica (or Ray not started)
        return False
    return True


def _generation(settings: AiSettings) -> Generator:
    from mail.ai.generation import GenerationEndpoint, Generator

    global _generator
    if _generator is None:
        _generator = Generator(
            GenerationEndpoint(
                url=settings.generation_url,
                api_key=settings.generation_api_key,
                model=settings.generation_model,
                timeout_s=settings.generation_timeout_s,
            )
        )
    return _generator


def _context(body: AnalyzeEmail) -> ReplyContext:
    try:
        return msgspec.convert(body.context or {"senderName": body.sender_name}, ReplyContext)
    except msgspec.ValidationError as error:
        raise ValidationError(f"context: {error}", field="context") from None


async def _audit(svc: Any, request: Request, caller: Any, action: str, **metadata: Any) -> None:
    async with svc.pool.connection() as conn, conn.transaction():
        await record(
            conn, AuditEntry(action=action, resource_type="ai", metadata=metadata),
            principal=caller, request=request_context(request),
        )  # fmt: skip


@router.post("/ai/analyze")
async def analyze(request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """The design document's EmailAIAnalysis of an email sent in the body (nothing is stored)."""
    from mail.ai.pipeline import analyze_emails

    body = await decode_body(request, AnalyzeEmail)
    context = _context(body)
    backend = await ai_backend(svc.settings.ai)
    email = _email(caller, body)
    key = (caller.workspace_id, body.sender_email.lower())
    [analysis] = await analyze_emails(backend, [email], {key: context}, model=await backend.model_version())
    await _audit(svc, request, caller, "ai.analyze", characters=len(body.body))
    return json_response(analysis)


@router.post("/ai/replies")
async def replies(request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """Three suggested replies (positive / negative / question / schedule) with confidence."""
    from mail.ai.backend import blocking_embed

    body = await decode_body(request, AnalyzeEmail)
    context = _context(body)
    backend = await ai_backend(svc.settings.ai)
    [labels] = await backend.classify_many([_email(caller, body).text()])
    embed = blocking_embed(backend, asyncio.get_running_loop())
    suggestions = await _generation(svc.settings.ai).smart_replies(
        body.body, body.subject, body.sender_name, context, embed, intents=labels.intents
    )
    await _audit(svc, request, caller, "ai.replies", characters=len(body.body))
    return json_response({"suggestions": suggestions})


@router.post("/ai/templates")
async def templates(request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """generateEmailTemplate: subject, bodyHtml, bodyText and formal, casual, enthusiastic variations."""
    body = await decode_body(request, TemplateRequest)
    template = await _generation(svc.settings.ai).template(body)
    await _audit(svc, request, caller, "ai.template", purpose=body.purpose_key)
    return json_response(template)


@router.get("/emails/{email_id}/analysis")
async def stored_analysis(email_id: int, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """The analysis the AnalysisWorker stored for a synced email (404 until it has one)."""
    async with svc.pool.connection() as conn:
        await require_read_email(conn, caller, email_id)
        analysis = await read_analysis(conn, svc.keyring, email_id)
    if analysis is None:
        raise NotFound(f"email {email_id} has not been analyzed yet")
    return json_response(analysis)


def _email(caller: Any, body: AnalyzeEmail) -> StoredEmail:
    """An email sent in a request, as the analysis reads stored ones (it is not stored)."""
    return StoredEmail(
        id=0, email_date=datetime.now(UTC), workspace_id=caller.workspace_id, account_id=caller.workspace_id,
        subject=body.subject, from_email=body.sender_email or None, from_name=body.sender_name or None, body=body.body,
    )  # fmt: skip
