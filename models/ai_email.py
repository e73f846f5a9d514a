"""The design document's EmailAIAnalysis: the classifier's labels (models.ai) and what is read out
of the text (models.ai_analysis), as stored on an email and returned by the API (camelCase)."""

from __future__ import annotations

import msgspec

from models.ai import Category, Classification, Intent, Priority, Sentiment
from models.ai_analysis import ActionItem, EmailEntities, ResponseSuggestion, TextAnalysis


class EmailAIAnalysis(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    category: Category
    priority: Priority
    sentiment: Sentiment
    sentiment_score: float
    intents: list[Intent]
    primary_intent: Intent
    entities: EmailEntities
    action_items: list[ActionItem]
    questions: list[str]
    summary: str
    key_points: list[str]
    suggested_responses: list[ResponseSuggestion]
    # Not in the design document: how sure the category is, and which heads said so.
    confidence: float = 0.0
    model: str = ""


def combine(labels: Classification, text: TextAnalysis, model: str) -> EmailAIAnalysis:
    return EmailAIAnalysis(
        category=labels.category,
        priority=labels.priority,
        sentiment=labels.sentiment,
        sentiment_score=labels.sentiment_score,
        intents=list(labels.intents),
        primary_intent=labels.primary_intent,
        entities=text.entities,
        action_items=text.action_items,
        questions=text.questions,
        summary=text.summary,
        key_points=text.key_points,
        suggested_responses=text.suggested_responses,
        confidence=labels.confidence,
        model=model,
    )
