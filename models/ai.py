"""What the email AI reads and what it says about a message (mail.ai).

The label sets are fixed: the trained heads (mail/ai/model/heads.safetensors) store their label
order and refuse to load when it names other labels than these.

=========== ========================================================================================
head        labels
=========== ========================================================================================
category    one per message: sales, support, personal, newsletter, notification, promotion,
            finance, spam (softmax; `category_scores` has every label's probability)
priority    high, medium, low (softmax)
sentiment   positive, neutral, negative (softmax); `sentiment_score` is P(positive) - P(negative)
intents     any of inquiry, complaint, request, information, scheduling, follow-up (one sigmoid
            each); `intents` lists those over the threshold, and always the primary one
=========== ========================================================================================
"""

from __future__ import annotations

from typing import Literal

import msgspec

Category = Literal[
    "sales", "support", "personal", "newsletter", "notification", "promotion", "finance", "spam"
]
Priority = Literal["high", "medium", "low"]
Sentiment = Literal["positive", "neutral", "negative"]
Intent = Literal["inquiry", "complaint", "request", "information", "scheduling", "follow-up"]

# The label orders of the heads' outputs.
CATEGORIES: tuple[Category, ...] = (
    "sales",
    "support",
    "personal",
    "newsletter",
    "notification",
    "promotion",
    "finance",
    "spam",
)
PRIORITIES: tuple[Priority, ...] = ("high", "medium", "low")
SENTIMENTS: tuple[Sentiment, ...] = ("positive", "neutral", "negative")
INTENTS: tuple[Intent, ...] = ("inquiry", "complaint", "request", "information", "scheduling", "follow-up")


class EmailText(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The parts of a message the model reads; `body` is plain text or HTML, quotes and all."""

    subject: str = ""
    sender: str = ""  # as written in From, e.g. "Ana Ruiz <ana@acme.test>"
    body: str = ""


class Classification(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    category: Category
    category_scores: dict[str, float]  # every category's probability; they sum to 1
    priority: Priority
    sentiment: Sentiment
    sentiment_score: float  # P(positive) - P(negative), in [-1, 1]
    intents: list[Intent]  # over the threshold, most likely first; never empty
    primary_intent: Intent
    confidence: float  # the probability of `category`
