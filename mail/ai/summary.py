"""Extractive summary and key points: the email's own sentences, chosen, never rewritten.

Each content sentence (greetings, sign-offs and pleasantries are not content) is embedded and
scored by
    centrality   similarity to the centroid of all sentences: what the email keeps talking about
    subject      similarity to the subject line: what the sender says it is about
    position     emails put the point early; the score decays with the sentence's index
each of the first two rescaled to [0, 1] over the email, so the weights mean the same whatever the
embedding function. Sentences are then picked by maximal marginal relevance (a sentence too close
to one already picked adds nothing; a near-duplicate is never picked) and given back in the
email's order. An email of one or two content sentences is its own summary; an empty one is
summarised by its subject.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as functional

from mail.ai.embedding import Embed
from mail.ai.sentences import Sentence, split_sentences

MAX_CANDIDATES = 60  # sentences embedded at most: a long email's point is in its first 60
MAX_SUMMARY_CHARS = 400
MAX_KEY_POINT_CHARS = 300
CENTRALITY_WEIGHT = 0.5
SUBJECT_WEIGHT = 0.25
POSITION_WEIGHT = 0.25
POSITION_DECAY = 0.85
SHORT_SENTENCE_PENALTY = 0.15
META_PENALTY = 0.15
MMR_LAMBDA = 0.7
NEAR_DUPLICATE = 0.92
SECOND_SENTENCE_RATIO = 0.85

_REPLY_PREFIX = re.compile(r"^(?:(?:re|fw|fwd|aw|sv|vs|tr)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_NOT_CONTENT = re.compile(
    r"(?:hi|hello|hey|dear|hiya|greetings|good\s+(?:morning|afternoon|evening))\b[^.!?]{0,40}[,!:.]?"
    r"|(?:thanks|thank\s+you|many\s+thanks|cheers|best|regards|best\s+regards|kind\s+regards|warm\s+regards|"
    r"sincerely|all\s+the\s+best|take\s+care|talk\s+soon)(?:\s+(?:so|very)\s+much)?(?:\s+in\s+advance)?"
    r"(?:\s+again)?[\s,.!]*(?:[A-Z][a-z]+)?"
    r"|(?:i\s+)?hope\s+(?:you(?:'re|\s+are)|all\s+is|this\s+(?:email|message)\s+finds\s+you)\b.*"
    r"|(?:please\s+)?(?:let\s+me\s+know|feel\s+free\s+to\s+reach\s+out)\s+if\s+you\s+have\s+any\s+(?:other\s+|more\s+|further\s+)?"
    r"(?:questions?|concerns?)\b.*"
    r"|(?:i\s+)?(?:look(?:ing)?\s+forward\s+to\s+(?:hearing|your\s+reply|speaking)|have\s+a\s+(?:great|good|nice)\s+"
    r"(?:day|week|weekend))\b.*"
    r"|sent\s+from\s+my\s+\w+.*|[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?[.,]?",
    re.IGNORECASE,
)
# A sentence that announces rather than says ("I wanted to give you an update on ...").
_META = re.compile(
    r"(?:i(?:'m|\s+am)\s+(?:writing|reaching\s+out|emailing|following\s+up)|i\s+wanted\s+to\s+(?:give|share|let|"
    r"follow|reach|touch|check|update)|just\s+(?:a\s+)?(?:quick\s+)?(?:note|update|checking|wanted|following)|"
    r"(?:a\s+)?quick\s+(?:update|note))\b",
    re.IGNORECASE,
)
_CONNECTOR = re.compile(r"^(?:also|and|so|plus|but|additionally|finally|lastly|btw)\b[,:]?\s+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Summary:
    summary: str
    key_points: list[str] = field(default_factory=list)


def summarize(
    source: str | Sequence[Sentence],
    embed: Embed,
    *,
    subject: str = "",
    max_summary_sentences: int = 2,
    max_key_points: int = 5,
) -> Summary:
    """A 1-2 sentence summary and 3-5 key points (fewer when the email has fewer sentences)."""
    sentences = split_sentences(source) if isinstance(source, str) else list(source)
    subject = " ".join(_REPLY_PREFIX.sub("", subject.strip()).split())
    content = [sentence.clean for sentence in sentences if is_content(sentence.clean)][:MAX_CANDIDATES]
    if not content:
        return Summary(_cap(subject, MAX_SUMMARY_CHARS), [])
    if len(content) <= 2:
        return Summary(_cap(" ".join(content), MAX_SUMMARY_CHARS), [_key_point(text) for text in content])

    rows = embed([*content, subject] if subject else content).detach().float().cpu()
    vectors = functional.normalize(rows[: len(content)], dim=-1)
    scores = _scores(content, vectors, functional.normalize(rows[-1], dim=-1) if subject else None)
    key_point_count = min(max_key_points, max(3, round(len(content) / 3)), len(content))
    picked = _mmr(scores, vectors, key_point_count)
    # A second sentence only in a longer email, and only when it scores nearly as well as the first.
    second_close = len(picked) > 1 and float(scores[picked[1]]) >= SECOND_SENTENCE_RATIO * float(
        scores[picked[0]]
    )
    long_enough = len(content) >= 5 and len(content[picked[0]]) <= MAX_SUMMARY_CHARS // 2
    summary_count = max(1, min(2 if second_close and long_enough else 1, max_summary_sentences))
    summary = " ".join(content[index] for index in sorted(picked[:summary_count]))
    return Summary(_cap(summary, MAX_SUMMARY_CHARS), [_key_point(content[index]) for index in sorted(picked)])


def is_content(sentence: str) -> bool:
    """Whether a sentence says something: not a greeting, sign-off, pleasantry or bare name."""
    return len(sentence.split()) >= 2 and _NOT_CONTENT.fullmatch(sentence.strip()) is None


def _scores(content: list[str], vectors: torch.Tensor, subject: torch.Tensor | None) -> torch.Tensor:
    centroid = functional.normalize(vectors.mean(dim=0), dim=-1)
    score = CENTRALITY_WEIGHT * _rescaled(vectors @ centroid)
    if subject is not None:
        score = score + SUBJECT_WEIGHT * _rescaled(vectors @ subject)
    positions = torch.arange(len(content), dtype=torch.float32)
    score = score + POSITION_WEIGHT * POSITION_DECAY**positions
    short = torch.tensor([len(text.split()) < 5 for text in content], dtype=torch.float32)
    meta = torch.tensor([_META.match(text) is not None for text in content], dtype=torch.float32)
    return score - SHORT_SENTENCE_PENALTY * short - META_PENALTY * meta


def _rescaled(values: torch.Tensor) -> torch.Tensor:
    spread = values.max() - values.min()
    if spread < 1e-6:
        return torch.zeros_like(values)
    return (values - values.min()) / spread


def _mmr(scores: torch.Tensor, vectors: torch.Tensor, count: int) -> list[int]:
    """Indices by maximal marginal relevance, best first; near-duplicates of a pick are never picked."""
    similarity = vectors @ vectors.T
    picked: list[int] = []
    available = set(range(len(scores)))
    while available and len(picked) < count:
        best, best_value = -1, float("-inf")
        for index in sorted(available):
            redundancy = max((float(similarity[index, other]) for other in picked), default=0.0)
            value = MMR_LAMBDA * float(scores[index]) - (1 - MMR_LAMBDA) * redundancy
            if value > best_value:
                best, best_value = index, value
        picked.append(best)
        available.discard(best)
        available -= {index for index in available if float(similarity[index, best]) >= NEAR_DUPLICATE}
    return picked


def _key_point(sentence: str) -> str:
    point = _CONNECTOR.sub("", sentence).strip()
    point = point[:1].upper() + point[1:]
    return _cap(point, MAX_KEY_POINT_CHARS)


def _cap(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut).rstrip(" ,;:") + "…"
