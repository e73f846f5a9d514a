"""Smart replies: three short answers of different kinds, chosen by retrieval, filled in locally.

The replies come from a response bank (mail/ai/bank/responses.jsonl: reply texts we wrote, each
with its type, the situations it answers and the registers it suits) and from the user's own
past replies. The email is embedded whole and sentence by sentence; a bank entry scores the best
similarity of any of its situations to the email, and a past reply its best similarity to it. Per
type the best wins, a past reply over the bank when it is similar enough, because it sounds like
the user.

Three types are offered: positive, question (asking for what is missing) and, when the email asks
for a meeting (the classifier's scheduling intent, or a request for a call, a slot, a demo),
schedule, else negative (a polite decline or delay). A meeting request gets its schedule reply
first.

Filling in: the sender's first name in the greeting; the subject as the topic; a day the email
names ("next Tuesday at 3pm") where an entry needs one (entries that need a day or a deal are
offered only when the email has one); the active deal the email is about. The relationship sets
the register: colleagues get "Hi" and no pleasantries, prospects and unknown senders "Hello"; a
first contact (no interactions yet) is thanked for reaching out, and prospects and customers get
a closing line.

Confidence is the similarity mapped through a logistic calibrated on all-MiniLM-L6-v2 (a
paraphrase, about 0.6, gives 0.9; an unrelated text, about 0.1, gives 0.1), so with the real
encoder it reads as how well the reply fits; it is in [0, 1] for any embedding function.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import msgspec
import torch
import torch.nn.functional as functional

from mail.ai.embedding import Embed, unwrapped
from mail.ai.sentences import is_action_item, is_question, split_sentences
from mail.ai.summary import is_content
from mail.errors import ValidationError
from models.ai_analysis import ReplyContext, ResponseSuggestion, ResponseType

BANK_PATH = Path(__file__).resolve().parent / "bank" / "responses.jsonl"
SLOTS = frozenset({"first_name", "topic", "day", "on_day", "deal"})
REQUIRABLE = frozenset({"day", "deal"})
REGISTERS = frozenset({"colleague", "customer", "prospect", "unknown", "any"})

MAX_QUERY_SENTENCES = 12
MAX_QUERY_CHARS = 1_000
MAX_PAST_REPLY_CHARS = 1_000
MAX_TOPIC_WORDS = 6
# all-MiniLM-L6-v2 similarities: a past reply this close to the email is about the same thing.
PAST_REPLY_MIN_SIMILARITY = 0.45
PAST_REPLY_PREFERENCE = 0.1  # a past reply wins over a bank entry up to this much less similar
DEAL_MIN_SIMILARITY = 0.5
REGISTER_BONUS = 0.03
CALIBRATION_CENTRE = 0.35
CALIBRATION_SLOPE = 9.0
EMBEDDING_CACHE_SIZE = 4

_SLOT = re.compile(r"\{(\w+)\}")
_REPLY_PREFIX = re.compile(r"^(?:(?:re|aw|sv)\s*:\s*)+", re.IGNORECASE)


class BankEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One reply of the bank: `text` may hold {first_name}, {topic}, {day}, {on_day} and {deal}."""

    id: str
    type: ResponseType
    situations: list[str]
    text: str
    registers: list[str] = msgspec.field(default_factory=lambda: ["any"])
    requires: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = set(_SLOT.findall(self.text)) - SLOTS
        if unknown:
            raise ValidationError(f"response {self.id}: unknown slots {sorted(unknown)}", field="text")
        if not self.situations:
            raise ValidationError(f"response {self.id}: no situations", field="situations")
        if set(self.registers) - REGISTERS or set(self.requires) - REQUIRABLE:
            raise ValidationError(f"response {self.id}: unknown register or requirement", field="registers")

    def fits(self, register: str) -> bool:
        return "any" in self.registers or register in self.registers


class ResponseBank:
    """The bank's entries, read once, and their situations' embeddings, computed once per embed
    function (a few at most are kept)."""

    _loaded: ClassVar[dict[Path, ResponseBank]] = {}
    _load_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, entries: Sequence[BankEntry]) -> None:
        if not entries:
            raise ValidationError("a response bank needs entries", field="entries")
        self.entries = tuple(entries)
        # Every situation of every entry, flattened; `owners[i]` is the entry of situation i.
        self.situations = [situation for entry in self.entries for situation in entry.situations]
        self.owners = torch.tensor(
            [index for index, entry in enumerate(self.entries) for _ in entry.situations], dtype=torch.long
        )
        self._embeddings: dict[Callable[..., torch.Tensor], torch.Tensor] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path = BANK_PATH) -> ResponseBank:
        """The bank at `path`, read once per process."""
        with cls._load_lock:
            bank = cls._loaded.get(path)
            if bank is None:
                bank = cls(_read_entries(path))
                cls._loaded[path] = bank
            return bank

    def situation_embeddings(self, embed: Embed) -> torch.Tensor:
        """Unit rows, one per situation, for `embed` (computed on first use)."""
        embed = unwrapped(embed)
        with self._lock:
            cached = self._embeddings.get(embed)
            if cached is None:
                cached = functional.normalize(embed(self.situations).detach().float().cpu(), dim=-1)
                if len(self._embeddings) >= EMBEDDING_CACHE_SIZE:
                    self._embeddings.pop(next(iter(self._embeddings)))
                self._embeddings[embed] = cached
            return cached

    def entry_scores(self, embed: Embed, query: torch.Tensor) -> torch.Tensor:
        """Per entry, the best score of one of its situations: the mean of its similarity to the
        whole email (`query`'s first row) and to the closest of the email's sentences (any row)."""
        similarities = query @ self.situation_embeddings(embed).T
        per_situation = 0.5 * similarities[0] + 0.5 * similarities.max(dim=0).values
        scores = torch.full((len(self.entries),), -1.0)
        return scores.scatter_reduce(0, self.owners, per_situation, reduce="amax")


def _read_entries(path: Path) -> list[BankEntry]:
    decoder = msgspec.json.Decoder(BankEntry)
    entries: list[BankEntry] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                entries.append(decoder.decode(line))
            except (msgspec.DecodeError, ValidationError) as error:
                raise ValidationError(f"{path.name}:{number}: {error}", field="bank") from error
    return entries


@dataclass(frozen=True, slots=True)
class _Candidate:
    type: ResponseType
    text: str
    similarity: float


def suggest_replies(
    text: str,
    subject: str,
    sender_name: str,
    context: ReplyContext,
    embed: Embed,
    *,
    intents: Sequence[str] = (),
    bank: ResponseBank | None = None,
) -> list[ResponseSuggestion]:
    """Three replies of different types to a plain-text email (quotes and signature already cut)."""
    bank = bank or ResponseBank.load()
    register = context.register
    sentences = [sentence.clean for sentence in split_sentences(text)]
    content = [sentence for sentence in sentences if is_content(sentence)] or sentences
    subject_line = _strip_reply_prefix(subject)
    meeting = asks_for_meeting(text, intents)
    types: tuple[ResponseType, ...] = (
        ("schedule", "positive", "question") if meeting else ("positive", "question", "negative")
    )

    pieces = [_cap(f"{subject_line}. {' '.join(content)}".strip(" ."), MAX_QUERY_CHARS)]
    pieces += [sentence for sentence in content if is_question(sentence) or is_action_item(sentence)]
    pieces += [sentence for sentence in content if sentence not in pieces]
    query = functional.normalize(embed(pieces[: MAX_QUERY_SENTENCES + 1]).detach().float().cpu(), dim=-1)

    slots = {
        "first_name": first_name(sender_name or context.sender_name),
        "topic": _topic(subject_line),
        "day": "",
        "on_day": "this week",
        "deal": "",
        "is_reply": "yes" if _REPLY_PREFIX.match(subject.strip()) else "",
    }
    day = _day_phrase(text)
    if day:
        slots["day"] = day
        slots["on_day"] = day if _RELATIVE_DAY.match(day) else f"on {day}"
    deal = _relevant_deal(context.active_deals, f"{subject_line} {text}", query, embed)
    if deal:
        slots["deal"] = deal

    scores = bank.entry_scores(embed, query)
    past = _past_reply_candidates(context.user_past_replies, query, embed, slots["first_name"])
    suggestions: list[ResponseSuggestion] = []
    for response_type in types:
        candidate = _best_bank_entry(bank, scores, response_type, register, slots)
        own = past.get(response_type)
        if own is not None and (
            candidate is None or own.similarity >= candidate.similarity - PAST_REPLY_PREFERENCE
        ):
            candidate = own
        if candidate is None:
            continue
        body = (
            candidate.text
            if candidate is own
            else _with_register(candidate.text, response_type, register, context, slots)
        )
        suggestions.append(
            ResponseSuggestion(type=response_type, text=body, confidence=calibrated(candidate.similarity))
        )
    return suggestions


def calibrated(similarity: float) -> float:
    """A cosine similarity as a confidence in [0, 1] (logistic, calibrated on all-MiniLM-L6-v2)."""
    value = 1.0 / (1.0 + math.exp(-CALIBRATION_SLOPE * (similarity - CALIBRATION_CENTRE)))
    return round(min(1.0, max(0.0, value)), 3)


# ------------------------------------------------------------------------------------------ choosing


def _best_bank_entry(
    bank: ResponseBank,
    scores: torch.Tensor,
    response_type: ResponseType,
    register: str,
    slots: dict[str, str],
) -> _Candidate | None:
    best: _Candidate | None = None
    for index, entry in enumerate(bank.entries):
        if entry.type != response_type or not entry.fits(register):
            continue
        if any(not slots[requirement] for requirement in entry.requires):
            continue
        similarity = float(scores[index]) + (REGISTER_BONUS if "any" not in entry.registers else 0.0)
        similarity += REGISTER_BONUS * len(entry.requires)  # an entry that uses what the email says
        if best is None or similarity > best.similarity:
            best = _Candidate(response_type, _fill(entry.text, slots), similarity)
    return best


def _past_reply_candidates(
    replies: Sequence[str], query: torch.Tensor, embed: Embed, name: str
) -> dict[ResponseType, _Candidate]:
    """The user's past replies similar enough to the email, the best per type."""
    texts = [_cap(reply.strip(), MAX_PAST_REPLY_CHARS) for reply in replies if reply.strip()]
    if not texts:
        return {}
    rows = functional.normalize(embed(texts).detach().float().cpu(), dim=-1)
    similarities = (rows @ query.T).max(dim=1).values
    best: dict[ResponseType, _Candidate] = {}
    for reply, similarity in zip(texts, similarities.tolist(), strict=True):
        if similarity < PAST_REPLY_MIN_SIMILARITY:
            continue
        response_type = reply_type(reply)
        if response_type not in best or similarity > best[response_type].similarity:
            best[response_type] = _Candidate(response_type, _readdressed(reply, name), similarity)
    return best


_DECLINE = re.compile(
    r"\b(?:unfortunately|can't|cannot|can\s+not|won't\s+be\s+able|not\s+able|unable|decline|pass\s+on|"
    r"not\s+interested|not\s+a\s+(?:good\s+)?fit|not\s+at\s+this\s+time|not\s+right\s+now|no\s+longer|regret|"
    r"have\s+to\s+pass|hold\s+off|holding\s+off)\b",
    re.IGNORECASE,
)
_MEETING_WORD = re.compile(
    r"\b(?:meet|meeting|call|chat|demo|catch\s+up|sync|get\s+together|coffee|lunch|hop\s+on|jump\s+on|calendar|"
    r"availability|available|free|slot|slots|schedule|reschedule|invite|zoom|teams|time\s+to\s+(?:talk|connect|"
    r"chat)|\d+\s+min(?:ute)?s?)\b",
    re.IGNORECASE,
)
_DAY_WORDS = (
    r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|tues|wed|thu|thurs|fri)"
    r"(?:\s+(?:morning|afternoon|evening))?"
)
_DAY_PHRASE = re.compile(
    rf"\b(?:(?:next|this|on|coming)\s+)?{_DAY_WORDS}\b(?:,?\s+(?:at\s+)?\d{{1,2}}(?::\d{{2}})?\s?(?:am|pm)\b)?"
    r"|\b(?:tomorrow|later\s+this\s+week|next\s+week|early\s+next\s+week)(?:\s+(?:morning|afternoon|evening))?\b"
    r"(?:,?\s+(?:at\s+)?\d{1,2}(?::\d{2})?\s?(?:am|pm)\b)?",
    re.IGNORECASE,
)
_RELATIVE_DAY = re.compile(r"(?:next|this|tomorrow|later|early|coming)\b", re.IGNORECASE)
_TIME_QUESTION = re.compile(rf"\b{_DAY_WORDS}\b.*\b(?:work|suit|good|ok|okay)\b", re.IGNORECASE)


def reply_type(reply: str) -> ResponseType:
    """What kind of reply a text is: a decline, a time to meet, a question, or a yes."""
    if _DECLINE.search(reply):
        return "negative"
    if _MEETING_WORD.search(reply) and (
        _DAY_PHRASE.search(reply) or re.search(r"\b\d{1,2}\s?(?:am|pm)\b", reply, re.I)
    ):
        return "schedule"
    if "?" in reply:
        return "question"
    return "positive"


def asks_for_meeting(text: str, intents: Sequence[str] = ()) -> bool:
    """Whether the email asks to meet: the scheduling intent, or a question or request about a
    call, a demo, a slot or whether a day works."""
    if "scheduling" in intents:
        return True
    for sentence in split_sentences(text):
        clean = sentence.clean
        if not (is_question(clean) or is_action_item(clean)):
            continue
        if _MEETING_WORD.search(clean) or _TIME_QUESTION.search(clean):
            return True
    return False


def _relevant_deal(deals: Sequence[str], text: str, query: torch.Tensor, embed: Embed) -> str | None:
    """The active deal the email is about: named in it, else the most similar one if close enough."""
    names = [deal.strip() for deal in deals if deal.strip()]
    if not names:
        return None
    lowered = text.casefold()
    for name in names:
        if name.casefold() in lowered:
            return name
    rows = functional.normalize(embed(names).detach().float().cpu(), dim=-1)
    similarities = (rows @ query.T).max(dim=1).values
    best = int(similarities.argmax())
    return names[best] if float(similarities[best]) >= DEAL_MIN_SIMILARITY else None


# ----------------------------------------------------------------------------------------- filling in

_GREETING = re.compile(
    r"^(?P<word>hi|hello|hey|dear|morning|good\s+(?:morning|afternoon|evening))\s+[^\s,!]+", re.I
)
_DETERMINERS = frozenset({"the", "a", "an", "our", "your", "my", "this", "that", "these", "those", "their"})
_TITLES = frozenset({"mr", "mrs", "ms", "mx", "miss", "dr", "prof", "sir"})


def first_name(display_name: str) -> str:
    """The first name of a display name ("Ruiz, Ana" and "Dr. Ana Ruiz" are Ana); "" for none."""
    name = display_name.strip().strip("\"'")
    if "@" in name or not name:
        return ""
    if "," in name:
        name = name.partition(",")[2]
    words = [word for word in name.split() if word.rstrip(".").lower() not in _TITLES]
    if not words or not words[0][:1].isalpha():
        return ""
    word = words[0]
    return word if not word.isupper() and not word.islower() else word.capitalize()


def _with_register(
    body: str, response_type: ResponseType, register: str, context: ReplyContext, slots: dict[str, str]
) -> str:
    name = slots["first_name"]
    greeting_word = "Hi" if register in ("colleague", "customer") else "Hello"
    greeting = f"{greeting_word} {name}," if name else f"{greeting_word},"
    opener = ""
    first_contact = context.interaction_count == 0 and not slots["is_reply"]
    if first_contact and register != "colleague":
        if body.lower().startswith("thank"):  # one thanks is enough
            opener = "Nice to meet you. "
        elif register == "prospect":
            opener = "Thank you for reaching out, and nice to meet you. "
        else:
            opener = "Thanks for reaching out. "
    closing = ""
    if response_type != "negative" and register == "prospect":
        closing = " Looking forward to hearing from you."
    elif response_type == "positive" and register == "customer":
        closing = " Let me know if there's anything else I can do."
    return f"{greeting}\n\n{opener}{body}{closing}"


def _fill(text: str, slots: dict[str, str]) -> str:
    filled = _SLOT.sub(lambda found: slots.get(found.group(1), ""), text)
    filled = " ".join(filled.split())
    return filled[:1].upper() + filled[1:]


def _readdressed(reply: str, name: str) -> str:
    """A past reply to someone else, greeting this sender: "Hi Bob," becomes "Hi Ana,"."""
    if not name:
        return reply
    return _GREETING.sub(lambda found: f"{found.group('word')} {name}", reply, count=1)


def _day_phrase(text: str) -> str:
    """The day the email proposes: the first in a question or request, else the first at all."""
    asking = " ".join(
        sentence.clean
        for sentence in split_sentences(text)
        if is_question(sentence.clean) or is_action_item(sentence.clean)
    )
    found = _DAY_PHRASE.search(asking) or _DAY_PHRASE.search(text)
    if found is None:
        return ""
    phrase = " ".join(found.group(0).split())
    return re.sub(r"^on\s+", "", phrase, flags=re.IGNORECASE)


def _topic(subject: str) -> str:
    """The subject as a noun phrase to write after "on" or "with": "the pricing for 50 seats";
    "this" when the subject is long, a question, or says when rather than what."""
    words = subject.rstrip("!.").split()
    if not words or len(words) > MAX_TOPIC_WORDS or subject.endswith("?") or _DAY_PHRASE.search(subject):
        return "this"
    first = words[0]
    if first[:1].isupper() and first[1:].islower():
        words[0] = first.lower()  # "Pricing for 50 seats" -> "pricing for 50 seats"; "SSO setup" stays
    if words[0].lower() not in _DETERMINERS:
        words.insert(0, "the")
    return " ".join(words)


def _strip_reply_prefix(subject: str) -> str:
    return " ".join(
        re.sub(r"^(?:(?:re|fw|fwd|aw|sv)\s*:\s*)+", "", subject.strip(), flags=re.IGNORECASE).split()
    )


def _cap(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0]
