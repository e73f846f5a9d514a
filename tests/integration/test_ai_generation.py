"""The generation client (mail.ai.generation) against a real local HTTP server that plays an
OpenAI-compatible endpoint: good JSON, fenced JSON, garbage, wrong shapes, errors and slowness."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mail.ai.generation import GenerationEndpoint, Generator
from mail.ai.replies import suggest_replies
from mail.ai.templates import generate_template
from mail.errors import ProviderError, TransientError, ValidationError
from models.ai_analysis import ReplyContext, TemplateRequest
from tests.ai_helpers import hashed_embed

pytestmark = pytest.mark.integration

MEETING = (
    "Hi, thanks for the demo. Could we schedule a meeting next Tuesday at 3pm to talk about the rollout?"
)
CONTEXT = ReplyContext(relationship="customer", interaction_count=3)
REQUEST = TemplateRequest(purpose="follow_up", context={"recipientName": "John", "companyName": "Acme Corp"})


@dataclass
class FakeEndpoint:
    """What the server answers (`mode`) and what it was asked."""

    mode: str = "good"
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


def _completion(content: str) -> web.Response:
    return web.json_response(
        {"id": "x", "object": "chat.completion", "choices": [{"message": {"content": content}}]}
    )


def _replies(types: list[str], extra: dict[str, Any] | None = None) -> str:
    return json.dumps(
        {
            "replies": [{"type": kind, "text": f"Hi Ana,\n\nGenerated {kind} reply."} for kind in types],
            **(extra or {}),
        }
    )


def _template(subject: str = "Generated subject") -> str:
    return json.dumps(
        {
            "subject": subject,
            "bodyText": "Hi John,\n\nGenerated <b>body</b> & more.\n\nBest,\nMaya",
            "variations": {
                "formal": "Dear John, formal.",
                "casual": "Hey John, casual.",
                "enthusiastic": "Hi John! Wow.",
            },
        }
    )


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[FakeEndpoint, str]]:
    state = FakeEndpoint()

    async def completions(request: web.Request) -> web.Response:
        payload = await request.json()
        state.requests.append(payload)
        state.headers.append(dict(request.headers))
        prompt = payload["messages"][-1]["content"]
        asked = re.search(r"Types, in this order: (.+)", prompt)
        types = [kind.strip() for kind in asked.group(1).split(",")] if asked else []
        is_template = "Purpose:" in prompt
        good = _template() if is_template else _replies(types)
        match state.mode:
            case "good":
                return _completion(good)
            case "fenced":
                return _completion(f"```json\n{good}\n```")
            case "garbage":
                return _completion("Sure! Here are three replies: 1) yes 2) no 3) maybe")
            case "missing_type":
                return _completion(_replies(types[:2]))
            case "unknown_field":
                return _completion(_replies(types, {"reasoning": "because"}))
            case "multiline_subject":
                return _completion(_template("Line one\nBcc: evil@example.com"))
            case "not_completion":
                return web.json_response({"error": "nope"})
            case "slow":
                await asyncio.sleep(3)
                return _completion(good)
            case status:
                return web.Response(status=int(status), text="upstream says no")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield state, str(server.make_url("/v1"))
    finally:
        await server.close()


def _generator(url: str, timeout_s: float = 5.0) -> Generator:
    return Generator(GenerationEndpoint(url=url, api_key="sk-test", model="tiny-chat", timeout_s=timeout_s))


async def test_without_an_endpoint_the_local_methods_answer() -> None:
    async with Generator(GenerationEndpoint()) as generator:
        replies = await generator.smart_replies(MEETING, "Rollout", "Ana", CONTEXT, hashed_embed)
        template = await generator.template(REQUEST)

    assert replies == suggest_replies(MEETING, "Rollout", "Ana", CONTEXT, hashed_embed)
    assert template == generate_template(REQUEST)


async def test_good_json_rewrites_the_texts_of_the_local_types(endpoint: tuple[FakeEndpoint, str]) -> None:
    state, url = endpoint
    local = suggest_replies(MEETING, "Rollout", "Ana", CONTEXT, hashed_embed)

    async with _generator(url) as generator:
        replies = await generator.smart_replies(MEETING, "Rollout", "Ana", CONTEXT, hashed_embed)

    assert (
        [reply.type for reply in replies]
        == [reply.type for reply in local]
        == ["schedule", "positive", "question"]
    )
    assert [reply.text for reply in replies] == [
        f"Hi Ana,\n\nGenerated {reply.type} reply." for reply in local
    ]
    assert [reply.confidence for reply in replies] == [reply.confidence for reply in local]
    [request] = state.requests
    assert request["model"] == "tiny-chat"
    assert request["response_format"] == {"type": "json_object"}
    assert "next Tuesday at 3pm" in request["messages"][-1]["content"]
    assert state.headers[0]["Authorization"] == "Bearer sk-test"


async def test_fenced_json_is_accepted(endpoint: tuple[FakeEndpoint, str]) -> None:
    state, url = endpoint
    state.mode = "fenced"

    async with _generator(url) as generator:
        replies = await generator.smart_replies(MEETING, "Rollout", "Ana", CONTEXT, hashed_embed)

    assert all(reply.text.startswith("Hi Ana,\n\nGenerated") for reply in replies)


@pytest.mark.parametrize(
    "mode", ["garbage", "missing_type", "unknown_field", "not_completion", "500", "429", "401"]
)
async def test_bad_answers_fall_back_to_the_local_replies(
    endpoint: tuple[FakeEndpoint, str], mode: str
) -> None:
    state, url = endpoint
    state.mode = mode

    async with _generator(url) as generator:
        replies = await generator.smart_replies(MEETING, "Rollout", "Ana", CONTEXT, hashed_embed)

    assert replies == suggest_replies(MEETING, "Rollout", "Ana", CONTEXT, hashed_embed)
    assert len(state.requests) == 1


async def test_a_slow_endpoint_times_out_to_the_local_replies(endpoint: tuple[FakeEndpoint, str]) -> None:
    state, url = endpoint
    state.mode = "slow"

    async with _generator(url, timeout_s=0.3) as generator:
        replies = await asyncio.wait_for(
            generator.smart_replies(MEETING, "Rollout", "Ana", CONTEXT, hashed_embed), timeout=2.5
        )

    assert replies == suggest_replies(MEETING, "Rollout", "Ana", CONTEXT, hashed_embed)


async def test_an_unreachable_endpoint_falls_back() -> None:
    # Port 9 on loopback: nothing listens there, the connection is refused at once.
    async with _generator("http://127.0.0.1:9/v1", timeout_s=2) as generator:
        template = await generator.template(REQUEST)

    assert template == generate_template(REQUEST)


async def test_each_failure_is_a_warning_once(
    endpoint: tuple[FakeEndpoint, str], caplog: pytest.LogCaptureFixture
) -> None:
    state, url = endpoint
    state.mode = "garbage"

    with caplog.at_level(logging.DEBUG, logger="mail.ai.generation"):
        async with _generator(url) as generator:
            for _ in range(3):
                await generator.smart_replies(MEETING, "Rollout", "Ana", CONTEXT, hashed_embed)
            state.mode = "500"
            await generator.smart_replies(MEETING, "Rollout", "Ana", CONTEXT, hashed_embed)

    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "does not match the schema" in warnings[0].getMessage()
    assert "HTTP 500" in warnings[1].getMessage()
    assert sum(record.levelno == logging.DEBUG for record in caplog.records) == 2


async def test_a_generated_template_gets_html_built_here(endpoint: tuple[FakeEndpoint, str]) -> None:
    _, url = endpoint

    async with _generator(url) as generator:
        template = await generator.template(REQUEST)

    assert template.subject == "Generated subject"
    assert template.body_text == "Hi John,\n\nGenerated <b>body</b> & more.\n\nBest,\nMaya\n"
    assert template.body_html == (
        "<p>Hi John,</p>\n<p>Generated &lt;b&gt;body&lt;/b&gt; &amp; more.</p>\n<p>Best,<br>\nMaya</p>\n"
    )
    assert template.variations.casual == "Hey John, casual.\n"


@pytest.mark.parametrize("mode", ["multiline_subject", "garbage", "503", "slow"])
async def test_a_bad_template_answer_falls_back(endpoint: tuple[FakeEndpoint, str], mode: str) -> None:
    state, url = endpoint
    state.mode = mode

    async with _generator(url, timeout_s=0.3) as generator:
        template = await generator.template(REQUEST)

    assert template == generate_template(REQUEST)


async def test_complete_json_maps_failures_to_the_error_tree(endpoint: tuple[FakeEndpoint, str]) -> None:
    state, url = endpoint

    async with _generator(url, timeout_s=0.3) as generator:
        state.mode = "502"
        with pytest.raises(TransientError, match="HTTP 502"):
            await generator.complete_json("system", "user", dict)
        state.mode = "403"
        with pytest.raises(ProviderError, match="HTTP 403") as raised:
            await generator.complete_json("system", "user", dict)
        assert not isinstance(raised.value, TransientError)
        state.mode = "slow"
        with pytest.raises(TransientError, match="no answer within"):
            await generator.complete_json("system", "user", dict)


def test_an_endpoint_is_validated() -> None:
    with pytest.raises(ValidationError, match="http"):
        GenerationEndpoint(url="ftp://models.local")
    with pytest.raises(ValidationError, match="timeout_s"):
        GenerationEndpoint(url="http://models.local", timeout_s=0)
    assert (
        GenerationEndpoint(url="http://m.local/v1/").completions_url == "http://m.local/v1/chat/completions"
    )
    assert GenerationEndpoint(url="http://m.local/v1/chat/completions").completions_url.count("chat") == 1
    assert not GenerationEndpoint().enabled
