"""Sentences of an email, and the questions and action items among them.

Splitting is line-aware, because email is: a blank line, a bullet, a greeting ("Hi Ana,"), a
sign-off, a short heading line and a quoted line (">", dropped) all end a sentence, while a hard
wrap inside a paragraph does not. Inside a paragraph a sentence ends at ".", "!", "?" or "…"
followed by white space, unless the word before the period is an abbreviation ("Dr.", "e.g.",
"Inc.", an initial "J.") or the next word starts in lower case. Addresses, URLs and decimals never
split: their dots are not followed by white space. Every sentence is a span of the input
(`text == source[start:end]`), bullet markers left out.

A question ends in "?", or opens like one without its mark ("Can you ...", "What is ...",
"I was wondering if ..."). An action item is a request of the reader: "please ...", "can you /
could you ...", "need you to", "make sure", "don't forget", "let me know", a sentence that opens
with a verb ("Send me ..."), a name with a task ("Ana to draft the brief"), or a deadline said to
"you"/"we". Its due date is the first date the sentence names (EOD, end of week and end of month
too), its assignee whoever it addresses ("@ana", "Ana, please ...", "Ana to ..."), its priority
high for ASAP/urgent/today or a due date within a day, low for "no rush" and the like.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from mail.ai.entities import end_of_week, find_dates
from models.ai import Priority
from models.ai_analysis import ActionItem

MAX_TEXT_CHARS = 20_000
MAX_SENTENCES = 400
MAX_SENTENCE_CHARS = 1_000
MAX_ACTION_ITEMS = 30
MAX_QUESTIONS = 30  # a "sentence" longer than this is cut into pieces of about this size


@dataclass(frozen=True, slots=True)
class Sentence:
    start: int
    end: int
    text: str  # source[start:end], line breaks and all

    @property
    def clean(self) -> str:
        """The sentence on one line."""
        return " ".join(self.text.split())


# ------------------------------------------------------------------------------------------ splitting


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ABBREVIATIONS = _word_set(
    "mr mrs ms mx dr prof sr jr st mt ft no nos vs etc e.g eg i.e ie cf approx appt apt dept est "
    "inc ltd co corp llc jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu "
    "thur thurs fri sat sun a.m p.m am pm min max fig ref tel ext attn encl govt u.s u.k a.k.a "
    "ph.d mrs ave blvd rd hr hrs wk wks mo yr yrs"
)
_BULLET = re.compile(r"[ \t]*(?:[-*\u2022\u00b7\u25aa\u2023\u25e6\u2013]|\d{1,2}[.)]|[a-z][)])[ \t]+")
_GREETING_LINE = re.compile(
    r"[ \t]*(?:hi|hello|hey|dear|hiya|greetings|good\s+(?:morning|afternoon|evening)|morning)\b[^\n]{0,50}?[,!:]?[ \t]*",
    re.IGNORECASE,
)
_SIGN_OFF_LINE = re.compile(
    r"[ \t]*(?:thanks|thank\s+you|many\s+thanks|cheers|best|best\s+wishes|all\s+the\s+best|"
    r"(?:best|kind|warm|warmest)\s+regards|regards|sincerely|yours\s+(?:truly|sincerely)|take\s+care|talk\s+soon)"
    r"[ \t]*[,.!]*[ \t]*",
    re.IGNORECASE,
)
_TERMINAL = re.compile(r"(?:[.!?]+|…)[\"'\u201d\u2019)\]]*(?=\s|$)")
_INITIALS = re.compile(r"(?:[A-Za-z]\.)*[A-Za-z]")
_SHORT_LINE = 40


def split_sentences(text: str) -> list[Sentence]:
    """The sentences of a plain-text email, in order; quoted (">") lines left out."""
    text = text[:MAX_TEXT_CHARS]
    sentences: list[Sentence] = []
    for block_start, block_end in _blocks(text):
        for start, end in _split_block(text, block_start, block_end):
            for piece_start, piece_end in _cap_length(text, start, end):
                sentence = _trimmed(text, piece_start, piece_end)
                if sentence is not None:
                    sentences.append(sentence)
                    if len(sentences) >= MAX_SENTENCES:
                        return sentences
    return sentences


def _blocks(text: str) -> list[tuple[int, int]]:
    """Runs of lines that read as running text: (start, end) offsets into `text`."""
    blocks: list[tuple[int, int]] = []
    block: list[int] | None = None  # [start, end]
    previous_line = ""
    position = 0
    for line in text.splitlines(keepends=True):
        line_start, position = position, position + len(line)
        content = line.rstrip("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
        stripped = content.strip()
        if not stripped or stripped.startswith(">"):
            _close(blocks, block)
            block = None
            previous_line = ""
            continue
        bullet = _BULLET.match(content)
        if bullet is not None or _stands_alone(previous_line, stripped):
            _close(blocks, block)
            block = None
        start = line_start + (bullet.end() if bullet is not None else 0)
        if block is None:
            block = [start, line_start + len(content)]
        else:
            block[1] = line_start + len(content)
        previous_line = stripped
    _close(blocks, block)
    return blocks


def _close(blocks: list[tuple[int, int]], block: list[int] | None) -> None:
    if block is not None and block[1] > block[0]:
        blocks.append((block[0], block[1]))


def _stands_alone(previous: str, current: str) -> bool:
    """Whether the line before `current` ends its own sentence though it has no period."""
    if not previous:
        return False
    if previous.endswith(":"):
        return True
    if _GREETING_LINE.fullmatch(previous) or _SIGN_OFF_LINE.fullmatch(previous):
        return True
    # A short line without a closing mark above a capitalised line: a heading, a name, a sign-off.
    return len(previous) < _SHORT_LINE and previous[-1].isalnum() and current[:1].isupper()


def _split_block(text: str, start: int, end: int) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    piece_start = start
    for match in _TERMINAL.finditer(text, start, end):
        if _ends_sentence(text, match, end):
            pieces.append((piece_start, match.end()))
            piece_start = match.end()
    pieces.append((piece_start, end))
    return pieces


def _ends_sentence(text: str, match: re.Match[str], block_end: int) -> bool:
    following = text[match.end() : block_end].lstrip()
    if not following:
        return True
    marks = match.group(0)
    if "?" in marks or "!" in marks:
        return True
    next_char = following[0]
    if next_char.islower():
        return False
    if marks.startswith("."):
        word_start = max(text.rfind(" ", 0, match.start()), text.rfind("\n", 0, match.start())) + 1
        word = text[word_start : match.start()].lstrip("(\"'")
        if word.lower() in _ABBREVIATIONS or (len(word) <= 4 and _INITIALS.fullmatch(word)):
            return False
    return True


def _cap_length(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """A run-on "sentence" (a pasted log, a table) cut at spaces into pieces of at most about
    MAX_SENTENCE_CHARS, so nothing downstream reads an unbounded string."""
    pieces: list[tuple[int, int]] = []
    while end - start > MAX_SENTENCE_CHARS:
        cut = text.rfind(" ", start + MAX_SENTENCE_CHARS // 2, start + MAX_SENTENCE_CHARS)
        cut = cut if cut > start else start + MAX_SENTENCE_CHARS
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def _trimmed(text: str, start: int, end: int) -> Sentence | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    piece = text[start:end]
    if not any(char.isalnum() for char in piece):
        return None
    return Sentence(start, end, piece)


# ------------------------------------------------------------------------------------------ questions

_AUX = (
    r"can|could|would|will|should|shall|do|does|did|is|are|was|were|have|has|had|may|might|am|"
    r"won't|can't|couldn't|wouldn't|isn't|aren't|don't|doesn't|didn't|haven't|hasn't|shouldn't"
)
_OPENER = r"(?:(?:also|and|so|but|ok|okay|btw|quick question|one more thing|just curious|out of curiosity)[,:]?\s+)?"
_QUESTION_START = re.compile(
    _OPENER + rf"(?:(?:{_AUX})\s+(?:you|we|i|they|he|she|it|there|this|that|these|those|anyone|someone|"
    r"everyone|anybody|somebody|your|our|my|the|any)\b"
    rf"|(?:what|when|where|which|who|whom|whose|why|how)(?:\s+(?:{_AUX}|about|many|much|long|often|soon|far|"
    r"come|else)\b|'s\b|\u2019s\b)"
    r"|i\s+(?:was\s+|am\s+)?wonder(?:ing)?\s+(?:if|whether)\b|any\s+(?:update|news|thoughts|chance)\b)",
    re.IGNORECASE,
)
_PLEASANTRY = re.compile(
    r"(?:hi|hey|hello)?[\s,]*(?:how\s+are\s+you(?:\s+doing)?(?:\s+today)?|how's\s+it\s+going|how\s+have\s+you\s+been|"
    r"how\s+was\s+your\s+(?:weekend|trip|holiday|vacation)|hope\s+(?:you're|you\s+are|all\s+is)\s+well)[\s?!.]*",
    re.IGNORECASE,
)


def is_question(sentence: str) -> bool:
    sentence = sentence.strip()
    if not sentence or _PLEASANTRY.fullmatch(sentence):
        return False
    if sentence.endswith("?"):
        return True
    if sentence.endswith("!"):
        return False
    return _QUESTION_START.match(sentence) is not None


def find_questions(source: str | Sequence[Sentence]) -> list[str]:
    """The questions the email asks, each on one line, in order, without repeats."""
    sentences = split_sentences(source) if isinstance(source, str) else source
    return list(dict.fromkeys(sentence.clean for sentence in sentences if is_question(sentence.clean)))[
        :MAX_QUESTIONS
    ]


# --------------------------------------------------------------------------------------- action items

_VERBS = (
    "send|review|sign|call|confirm|update|schedule|book|submit|share|prepare|forward|check|approve|complete|"
    "fill|reply|respond|add|remove|set|provide|email|ping|finish|fix|upload|attach|join|register|pay|"
    "read|bring|follow|reach|contact|invite|organize|organise|draft|write|create|get|give|make|arrange|"
    "double-check|verify|sort|circulate|renew|cancel|resend|escalate|"
    "install|download|reschedule|loop|remind|finalize|finalise|collect|coordinate|tell|ask|think|decide|"
    "let's|lets"
)
_REQUEST = re.compile(
    r"\b(?:please|pls|plz|kindly)\b"
    r"|\b(?:can|could|would|will)\s+(?:you|someone|somebody|anyone|y'all)\b|^(?:(?:also|and|so)[,]?\s+)?(?:can|could|shall)\s+we\b"
    r"|\b(?:need|needs|want|wanted|asking)\s+(?:you|someone|somebody|everyone|the\s+team|your\s+team)\s+to\b"
    r"|\bmake\s+sure\b|\b(?:don't|do\s+not|dont)\s+forget\b|\bremember\s+to\b|\bbe\s+sure\s+to\b"
    r"|\blet\s+(?:me|us)\s+know\b|\bi'?d\s+(?:like|love)\s+(?:you\s+to|it\s+if\s+you|if\s+you)\b"
    r"|\b(?:would|will)\s+you\s+(?:mind|be\s+able)\b|\bwould\s+(?:really\s+)?appreciate\s+(?:it\s+)?if\b"
    r"|\b(?:gentle\s+)?reminder\s*:",
    re.IGNORECASE,
)
# A verb that opens a sentence is an order only when an object or particle follows it: "Update the
# deck" is one, "Update: we shipped" and "Order #123 has shipped" are not.
_OBJECT = (
    r"(?:me|us|him|her|them|it|this|that|these|those|the|a|an|your|our|my|his|their|over|out|up|back|in|"
    r"on|off|to|with|by|for|all|any|some|everything|everyone|ahead|through|around|[A-Z][a-z]+)\b"
)
_IMPERATIVE = re.compile(
    r"(?:(?:also|and|then|so|but|ok|okay|lastly|finally|first|next|meanwhile)[,:]?\s+)?"
    rf"(?:{_VERBS})\s+{_OBJECT}",
    re.IGNORECASE,
)
_NAMED_TASK = re.compile(
    r"(?P<name>[A-Z][a-z]+(?:\s[A-Z][a-z]+)?)\s+(?:to|will|should|needs\s+to|must|is\s+going\s+to)\s+"
    rf"(?:{_VERBS})\b"
)
_DEADLINE = re.compile(
    r"\b(?:by|before|until|till|no\s+later\s+than|due|deadline)\b|\b(?:asap|eod|eow|cob)\b", re.IGNORECASE
)
_ADDRESSEE = re.compile(r"\b(?:you|your|we|us|our|team|everyone|all)\b|\bdue\b", re.IGNORECASE)
_NOT_A_TASK = re.compile(
    r"(?:please\s+)?(?:find\s+(?:attached|enclosed|below)|see\s+(?:attached|below|enclosed)|note\s+that|"
    r"do\s+not\s+reply|don't\s+reply|feel\s+free|look\s+forward|don't\s+hesitate|do\s+not\s+hesitate|let\s+me\s+know\s+if\s+you\s+"
    r"(?:have|need)\s+(?:any|anything)|unsubscribe|click\s+here\s+to\s+unsubscribe|thanks|thank\s+you)\b"
    r"|.*\blet\s+(?:me|us)\s+know\s+if\s+you\s+(?:have|need)\s+any\s*(?:other\s+|more\s+|further\s+)?"
    r"(?:questions?|concerns?|help|thing)\b"
    r"|if\s+you\s+(?:have|need|want|'d\s+like|would\s+like)\b.*\b(?:questions?|help|anything|assistance)\b",
    re.IGNORECASE,
)
_LEADING_MENTIONS = re.compile(r"^(?:@[A-Za-z][\w.-]*[,:]?\s+)+")
_MENTION = re.compile(r"(?<![\w.@])@(?P<name>[A-Za-z][a-z]{1,30})\b(?![.@]\w)")
_VOCATIVE = re.compile(
    r"(?:(?i:also|and|so|ok|okay)[,]?\s+)?(?P<name>[A-Z][a-z]+(?:\s[A-Z][a-z]+)?)\s*,\s*(?:please|pls|can|could|"
    rf"would|will|make\s+sure|don't|do\s+not|remember|when|if|(?:{_VERBS})\b)",
)
_NOT_VOCATIVE = _word_set(
    "also and so ok okay well yes no however then first finally next please again sorry great sure "
    "thanks thank hi hello hey dear meanwhile lastly additionally moreover otherwise anyway today "
    "tomorrow alternatively ideally honestly unfortunately fortunately hopefully basically overall "
    "again everyone team all guys folks happy glad excited pleased ready able nice good hard easy time "
    "need needs want plan planning going trying hoping remember worth just still we i you they it this "
    "that there here who what"
)
_URGENT = re.compile(
    r"\b(?:asap|a\.s\.a\.p|urgent(?:ly)?|immediately|right\s+away|critical|top\s+priority|as\s+soon\s+as\s+possible|"
    r"eod|cob|end\s+of\s+(?:the\s+)?(?:business\s+)?day|today|tonight)\b",
    re.IGNORECASE,
)
_RELAXED = re.compile(
    r"\b(?:no\s+rush|no\s+hurry|whenever|at\s+your\s+convenience|when\s+you\s+(?:get|have)\s+a\s+(?:chance|moment|"
    r"minute|sec)|if\s+you\s+have\s+time|low\s+priority|eventually|at\s+some\s+point)\b",
    re.IGNORECASE,
)
_END_OF_DAY = re.compile(
    r"\b(?:eod|cob|end\s+of\s+(?:the\s+)?(?:business\s+)?day|close\s+of\s+business)\b", re.I
)
_END_OF_WEEK = re.compile(r"\b(?:eow|end\s+of\s+(?:the\s+)?(?:this\s+)?week)\b", re.IGNORECASE)
_END_OF_MONTH = re.compile(r"\b(?:eom|end\s+of\s+(?:the\s+)?(?:this\s+)?month)\b", re.IGNORECASE)


def is_action_item(sentence: str) -> bool:
    sentence = _LEADING_MENTIONS.sub("", sentence.strip())
    if not sentence or _NOT_A_TASK.match(sentence):
        return False
    if _asks(sentence):
        return not sentence.endswith("!") or _REQUEST.search(sentence) is not None
    return _DEADLINE.search(sentence) is not None and _ADDRESSEE.search(sentence) is not None


def _asks(sentence: str) -> bool:
    return bool(_REQUEST.search(sentence) or _IMPERATIVE.match(sentence) or _named_task(sentence))


def find_action_items(
    source: str | Sequence[Sentence],
    *,
    reference_date: datetime | None = None,
    default_region: str = "US",
) -> list[ActionItem]:
    """What the email asks someone to do, in order, with due date, assignee and priority."""
    reference = reference_date or datetime.now()
    sentences = split_sentences(source) if isinstance(source, str) else source
    items: list[ActionItem] = []
    seen: set[str] = set()
    for sentence in sentences:
        text = sentence.clean
        if len(items) >= MAX_ACTION_ITEMS:
            break
        if text in seen or not is_action_item(text):
            continue
        due = due_date(text, reference, default_region=default_region)
        if due is None and not _asks(_LEADING_MENTIONS.sub("", text)):
            continue  # a deadline word without a date it names: "by the way", "until then"
        seen.add(text)
        items.append(
            ActionItem(
                text=text,
                assignee=assignee(text),
                due=due.isoformat() if due is not None else None,
                priority=_priority(text, due, reference.date()),
            )
        )
    return items


def due_date(sentence: str, reference: datetime, *, default_region: str = "US") -> date | None:
    """The first date a sentence names, EOD/end of week/end of month included."""
    today = reference.date()
    mentions = find_dates(sentence, reference, default_region=default_region)
    spelled = [(found.start(), today) for found in _END_OF_DAY.finditer(sentence)]
    spelled += [(found.start(), end_of_week(today)) for found in _END_OF_WEEK.finditer(sentence)]
    spelled += [
        (found.start(), today.replace(day=calendar.monthrange(today.year, today.month)[1]))
        for found in _END_OF_MONTH.finditer(sentence)
    ]
    candidates = [(mention.span.start, mention.day) for mention in mentions] + spelled
    return min(candidates)[1] if candidates else None


def assignee(sentence: str) -> str | None:
    """Whom a request addresses by name: "@ana", "Ana, please ...", "Ana to ..."."""
    mention = _MENTION.search(sentence)
    if mention:
        return mention.group("name").capitalize()
    vocative = _VOCATIVE.match(sentence)
    if vocative and vocative.group("name").split()[0].lower() not in _NOT_VOCATIVE:
        return vocative.group("name")
    return _named_task(sentence)


def _named_task(sentence: str) -> str | None:
    """The name of "Ana to draft the brief" and "John will send the deck"."""
    found = _NAMED_TASK.match(sentence)
    if found and found.group("name").split()[0].lower() not in _NOT_VOCATIVE:
        return found.group("name")
    return None


def _priority(sentence: str, due: date | None, today: date) -> Priority:
    if _URGENT.search(sentence) or (due is not None and due <= today + timedelta(days=1)):
        return "high"
    if _RELAXED.search(sentence):
        return "low"
    return "medium"
