"""What the email AI reads out of a message's text beyond the classifier's labels, after the design
document's EmailAIAnalysis, ResponseSuggestion and GenerateEmailTemplate (camelCase JSON).

The classifier (models.ai.Classification) gives category, priority, sentiment and intents;
`TextAnalysis` is the rest: entities, action items, questions, summary, key points and suggested
replies. `ReplyContext` and `TemplateRequest` are what callers send; the rules a type cannot say
are checked in `__post_init__` and raise mail.errors.ValidationError with the field's name.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from mail.errors import ValidationError
from models.ai import Priority

ResponseType = Literal["positive", "negative", "question", "schedule"]
RESPONSE_TYPES: tuple[ResponseType, ...] = ("positive", "negative", "question", "schedule")
Relationship = Literal["colleague", "customer", "prospect", "unknown"]
RELATIONSHIPS: tuple[Relationship, ...] = ("colleague", "customer", "prospect", "unknown")
Tone = Literal["professional", "friendly", "formal", "casual", "enthusiastic"]
TemplateLength = Literal["short", "medium", "long"]

MAX_CONTEXT_ENTRIES = 30
MAX_CONTEXT_VALUE_CHARS = 500
MAX_PAST_REPLIES = 50
MAX_ACTIVE_DEALS = 50

_PURPOSE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[ _-][A-Za-z0-9]+){0,5}")
_CONTEXT_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")


class Money(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """An amount of money as written (`text`, a substring of the email) and read."""

    amount: float
    currency: str  # ISO 4217: USD, EUR, GBP, JPY, ...
    text: str


class EmailEntities(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What a message names, each list deduplicated and in order of first appearance."""

    people: list[str] = msgspec.field(default_factory=list)
    companies: list[str] = msgspec.field(default_factory=list)
    dates: list[str] = msgspec.field(
        default_factory=list
    )  # ISO 8601: a date, or a datetime when a time was said
    amounts: list[Money] = msgspec.field(default_factory=list)
    locations: list[str] = msgspec.field(default_factory=list)
    phone_numbers: list[str] = msgspec.field(default_factory=list)  # E.164
    urls: list[str] = msgspec.field(default_factory=list)


class ActionItem(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    text: str
    assignee: str | None = None  # who the sentence addresses ("@ana", "Ana, please ..."); None: the reader
    due: str | None = None  # ISO 8601 date
    priority: Priority = "medium"


class ResponseSuggestion(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    type: ResponseType
    text: str
    confidence: float  # in [0, 1]


class TextAnalysis(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The part of EmailAIAnalysis that is read from the text rather than by the classifier's heads."""

    entities: EmailEntities
    action_items: list[ActionItem]
    questions: list[str]
    summary: str
    key_points: list[str]
    suggested_responses: list[ResponseSuggestion]


class ReplyContext(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Who the sender is to the user, for smart replies. A relationship other than colleague,
    customer or prospect is read as unknown."""

    sender_name: str = ""
    relationship: str = "unknown"
    interaction_count: int = 0
    active_deals: list[str] = msgspec.field(default_factory=list)
    user_past_replies: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.interaction_count < 0:
            raise ValidationError(
                f"interactionCount must be 0 or more, got {self.interaction_count}", field="interactionCount"
            )
        if len(self.active_deals) > MAX_ACTIVE_DEALS:
            raise ValidationError(
                f"activeDeals: at most {MAX_ACTIVE_DEALS}, got {len(self.active_deals)}", field="activeDeals"
            )
        if len(self.user_past_replies) > MAX_PAST_REPLIES:
            raise ValidationError(
                f"userPastReplies: at most {MAX_PAST_REPLIES}, got {len(self.user_past_replies)}",
                field="userPastReplies",
            )

    @property
    def register(self) -> Relationship:
        """The relationship as one of the four registers replies are written in."""
        relationship = self.relationship.strip().lower()
        for known in RELATIONSHIPS:
            if relationship == known:
                return known
        return "unknown"


class TemplateRequest(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """What a template is for. `purpose` is a short name such as follow_up or meeting_request
    (spaces, hyphens and case do not matter); an unknown purpose gets a generic structure.
    `context` fills the template's slots (recipientName, companyName, lastInteraction, nextStep,
    ...)."""

    purpose: str
    context: dict[str, str] = msgspec.field(default_factory=dict)
    tone: Tone = "professional"
    length: TemplateLength = "medium"

    def __post_init__(self) -> None:
        if not self.purpose.strip():
            raise ValidationError(
                "purpose must not be empty (e.g. follow_up, meeting_request)", field="purpose"
            )
        if len(self.purpose) > 60 or _PURPOSE.fullmatch(self.purpose.strip()) is None:
            raise ValidationError(
                "purpose must be a short name of letters and digits, words joined by spaces, hyphens "
                f"or underscores (e.g. follow_up), got {self.purpose[:80]!r}",
                field="purpose",
            )
        if len(self.context) > MAX_CONTEXT_ENTRIES:
            raise ValidationError(
                f"context: at most {MAX_CONTEXT_ENTRIES} entries, got {len(self.context)}", field="context"
            )
        for key, value in self.context.items():
            if _CONTEXT_KEY.fullmatch(key) is None:
                raise ValidationError(
                    f"context: keys are names of letters, digits and _ (at most 40), got {key[:60]!r}",
                    field="context",
                )
            if len(value) > MAX_CONTEXT_VALUE_CHARS:
                raise ValidationError(
                    f"context.{key}: at most {MAX_CONTEXT_VALUE_CHARS} characters, got {len(value)}",
                    field="context",
                )

    @property
    def purpose_key(self) -> str:
        """`purpose` normalised: "Follow-up" and "follow up" are follow_up."""
        return re.sub(r"[ -]+", "_", self.purpose.strip().lower())


class TemplateVariations(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The same template in three other tones: full plain-text bodies."""

    formal: str
    casual: str
    enthusiastic: str


class GeneratedTemplate(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    subject: str
    body_html: str
    body_text: str
    variations: TemplateVariations
