"""Entities in an email's text: people, companies, dates, amounts, places, phone numbers, URLs.

Rules, not a model: each kind has a recogniser that is cheap, explainable and tuned to miss rather
than to invent. Every recogniser reads at most `MAX_TEXT_CHARS` of the text and none is worse than
linear in it, except dateparser, which is slow (milliseconds a sentence) and noisy ("we" is
Wednesday to it, "May I ask" is a month): it reads at most `MAX_DATE_TEXT_CHARS`, with URLs,
addresses, amounts and phone numbers blanked out first, and only its matches that hold a digit or
a real date word (a weekday, a month, tomorrow, next week, ...) are kept.

    people        names after a greeting ("Hi Ana,"), under a sign-off ("Best,\\nAna Ruiz"),
                  @mentions, capitalised first-and-last-name pairs after with/from/cc/to/by, and
                  the display names of the addresses passed in
    companies     capitalised names before a legal suffix (Inc, Ltd, LLC, GmbH, Corp, Co, ...), and
                  the organisation of every address's domain that is not a webmail provider
    dates         ISO 8601: a date, or a datetime where a clock time was said ("Tue 3pm")
    amounts       a number with a currency symbol or code before or after it, "1.2k", "$5 million",
                  "1,299.99", "1.299,99 €"
    locations     a gazetteer (mail.ai.gazetteer), and "in <Name>" after meet/office/based/...
    phone_numbers phonenumbers' matcher (valid numbers only), as E.164
    urls          http(s):// and www. links, trailing punctuation and unbalanced brackets trimmed

Each list is deduplicated (case-insensitively; a first name seen alone folds into the full name
seen elsewhere) and in order of first appearance; the addresses' names and domains come first.
"""

from __future__ import annotations

import calendar
import email.utils
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import phonenumbers

from mail.ai.gazetteer import PLACES
from mail.errors import ValidationError
from models.ai_analysis import EmailEntities, Money

MAX_TEXT_CHARS = 20_000
MAX_DATE_TEXT_CHARS = 4_000
MAX_ADDRESSES = 50


def _word_set(text: str) -> frozenset[str]:
    """The set of a text's whitespace-separated words: word lists written as prose."""
    return frozenset(text.split())


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of the text: `text == source[start:end]`."""

    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class DateMention:
    span: Span
    value: date | datetime  # a datetime only where a clock time was said

    @property
    def iso(self) -> str:
        return self.value.isoformat()

    @property
    def day(self) -> date:
        return self.value.date() if isinstance(self.value, datetime) else self.value


# ---------------------------------------------------------------------------------------------- URLs

_URL = re.compile(r"(?<![\w@/.-])(?:https?://|www\.)[^\s<>\"'`{}|\\^\[\]]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?'\"*_~"
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@(?P<domain>(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24})\b"
)


def find_urls(text: str) -> list[Span]:
    text = text[:MAX_TEXT_CHARS]
    found: list[Span] = []
    for match in _URL.finditer(text):
        url = match.group(0)
        while url:
            last = url[-1]
            if last in _URL_TRAILING or (last == ")" and url.count("(") < url.count(")")):
                url = url[:-1]
            else:
                break
        # A bare "www." or "https://" with nothing after it is no link.
        if "." not in url.split("//", 1)[-1].removeprefix("www.").strip("."):
            continue
        found.append(Span(match.start(), match.start() + len(url), url))
    return found


def find_email_addresses(text: str) -> list[Span]:
    text = text[:MAX_TEXT_CHARS]
    return [Span(match.start(), match.end(), match.group(0)) for match in _EMAIL.finditer(text)]


# ------------------------------------------------------------------------------------------- amounts

_SYMBOLS = {
    "US$": "USD",
    "$": "USD",
    "C$": "CAD",
    "CA$": "CAD",
    "A$": "AUD",
    "AU$": "AUD",
    "NZ$": "NZD",
    "HK$": "HKD",
    "S$": "SGD",
    "€": "EUR",
    "£": "GBP",
    "¥": "JPY",
    "₹": "INR",
}
_CODES = (
    "USD",
    "EUR",
    "GBP",
    "JPY",
    "CAD",
    "AUD",
    "NZD",
    "CHF",
    "CNY",
    "INR",
    "SGD",
    "HKD",
    "SEK",
    "NOK",
    "DKK",
)
_WORDS = {
    "dollar": "USD",
    "dollars": "USD",
    "bucks": "USD",
    "euro": "EUR",
    "euros": "EUR",
    "pound": "GBP",
    "pounds": "GBP",
    "pounds sterling": "GBP",
    "yen": "JPY",
}
_SCALES = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mm": 1e6,
    "mn": 1e6,
    "million": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
    "trillion": 1e12,
}
# Currencies whose writers group thousands with dots: "1.299" is 1299 there, 1.299 elsewhere.
_DOT_GROUPING = frozenset({"EUR"})

_PREFIX = "|".join(re.escape(symbol) for symbol in sorted(_SYMBOLS, key=len, reverse=True))
_CODE = "|".join(_CODES)
_NUMBER = r"\d{1,15}(?:[.,]\d{1,15}){0,5}"
_SCALE = r"(?:\s?(?:k|K|m|M|mm|MM|mn|bn|BN|b|B)|\s(?:thousand|million|billion|trillion))(?![A-Za-z0-9])"
_SUFFIX_WORD = "|".join(sorted(_WORDS, key=len, reverse=True))
_AMOUNT = re.compile(
    rf"(?:(?<![A-Za-z0-9])(?P<pre>{_PREFIX}|(?:{_CODE})\s?)\s?(?P<n1>{_NUMBER})(?P<s1>{_SCALE})?(?![\d])"
    rf"|(?<![\w.,])(?P<n2>{_NUMBER})(?P<s2>{_SCALE})?\s?(?P<post>[€£¥₹$]|(?:{_CODE}|{_SUFFIX_WORD})(?![A-Za-z])))"
)


def find_amounts(text: str) -> list[Money]:
    text = text[:MAX_TEXT_CHARS]
    amounts: list[Money] = []
    for match in _AMOUNT.finditer(text):
        marker = (match.group("pre") or match.group("post") or "").strip()
        currency = _SYMBOLS.get(marker) or _WORDS.get(marker.lower()) or marker.upper()
        number = match.group("n1") or match.group("n2") or ""
        value = _parse_number(number, currency)
        if value is None:
            continue
        scale = (match.group("s1") or match.group("s2") or "").strip().lower()
        value *= _SCALES.get(scale, 1.0)
        written = match.group(0).rstrip()
        amounts.append(Money(amount=round(value, 6), currency=currency, text=written))
    return amounts


def _parse_number(number: str, currency: str) -> float | None:
    """A written number: "1,299.99", "1.299,99", "1,5", "12.50", "1.299.000"; None if it is none."""
    separators = [char for char in number if char in ".,"]
    groups = re.split(r"[.,]", number)
    if not separators:
        return float(number)
    last = separators[-1]
    if len(set(separators)) == 2:
        # Mixed: the last separator is the decimal one, and every other must group thousands.
        if separators.count(last) != 1 or any(len(group) != 3 for group in groups[1:-1]):
            return None
        return float("".join(groups[:-1]) + "." + groups[-1])
    thousands = len(groups[0]) <= 3 and all(len(group) == 3 for group in groups[1:])
    if len(separators) > 1:
        return float("".join(groups)) if thousands else None
    if thousands and (last == "," or currency in _DOT_GROUPING):
        return float("".join(groups))
    return float(groups[0] + "." + groups[1])


# ------------------------------------------------------------------------------------- phone numbers


def find_phone_numbers(text: str, default_region: str = "US") -> list[tuple[Span, str]]:
    """Valid phone numbers as written, each with its E.164 form."""
    region = default_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError(f"unknown phone region {default_region!r}; use a two-letter country code")
    text = _blank(text[:MAX_TEXT_CHARS], [*find_urls(text), *find_email_addresses(text)])
    found: list[tuple[Span, str]] = []
    for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
        e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
        found.append((Span(match.start, match.end, match.raw_string), e164))
    return found


# --------------------------------------------------------------------------------------------- dates

_WEEKDAYS = tuple(calendar.day_name)  # Monday ... Sunday
_MONTHS = tuple(calendar.month_name)[1:]
_DATE_WORD = re.compile(
    r"\b(?i:" + "|".join(_WEEKDAYS) + "|" + "|".join(m for m in _MONTHS if m not in ("March", "May")) + "|"
    r"today|tonight|tomorrow|tmrw|yesterday|weekend|"
    r"(?:next|this|last|coming|following)\s+(?:week|month|year|quarter|morning|afternoon|evening))\b"
    # March and May are also a verb and a modal: only capitalised, and May only after a preposition.
    r"|\bMarch\b|\b(?i:in|by|until|till|from|since|before|after|early|late|mid|end\s+of)\s+May\b"
)
_DATE_ABBREVIATION = re.compile(
    r"\b(?:Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\b\.?"
)
_TIME_SAID = re.compile(
    r"\d{1,2}(?::\d{2})?\s*(?:am|pm|a\.m\.|p\.m\.)|\b\d{1,2}:\d{2}\b|\bnoon\b|\bmidnight\b", re.IGNORECASE
)
_DURATION_ONLY = re.compile(
    r"(?:\d+|a|an|one|two|few)\s+(?:seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?)",
    re.IGNORECASE,
)
_CLOCK_RELATIVE = re.compile(r"\b(?:seconds?|minutes?|mins?|hours?|hrs?)\b", re.IGNORECASE)
_YEAR_ONLY = re.compile(r"(?:in\s+)?\d{4}", re.IGNORECASE)
_ORDINAL_ONLY = re.compile(r"(?:on\s+)?(?:the\s+)?(?P<day>\d{1,2})(?:st|nd|rd|th)", re.IGNORECASE)
_MONTH_NUMBERS = {name[:3].lower(): number for number, name in enumerate(_MONTHS, start=1)}
_MONTH_NAME = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December|"
    r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?"
)
_WEEKDAY_NAME = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)\.?"
_TIME = r"(?:\d{1,2}(?::\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.)|\d{1,2}:\d{2}|noon)"
_CLOCK = re.compile(
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s?(?P<meridiem>am|pm|a\.m\.|p\.m\.)?", re.IGNORECASE
)
_EXPLICIT_DATE = re.compile(
    rf"(?<![\w/.-])(?:(?:{_WEEKDAY_NAME}),?\s+)?(?:"
    rf"(?P<month_a>{_MONTH_NAME})\s+(?P<day_a>\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(?P<year_a>\d{{4}}))?"
    rf"|(?:the\s+)?(?P<day_b>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<month_b>{_MONTH_NAME})(?:,?\s+(?P<year_b>\d{{4}}))?"
    r"|(?P<iso_year>\d{4})-(?P<iso_month>\d{2})-(?P<iso_day>\d{2})"
    r"|(?P<num_a>\d{1,2})/(?P<num_b>\d{1,2})/(?P<num_year>\d{4}|\d{2})"
    rf")(?![\w/-])(?:,?\s+(?:at\s+|@\s*)?(?P<time>{_TIME})(?![\w:]))?",
    re.IGNORECASE,
)
_MONTH_ONLY = re.compile(
    rf"(?:(?:in|by|until|till|from|since|before|after|during|early|late|mid|end\s+of)\s+)?{_MONTH_NAME}(?:,?\s+\d{{4}})?",
    re.IGNORECASE,
)
_TRAILING_JOINER = re.compile(r"(?:\s+(?:and|or|at|in|on|to|the|for|with|of))+$", re.IGNORECASE)
_DATE_CUE = re.compile(
    r"\b(?i:mon|tue|wed|thu|fri|sat|sun|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b"
    r"|\b(?i:today|tonight|tomorrow|tmrw|yesterday|weeks?|weekend|months?|years?|quarter|morning|afternoon|evening|"
    r"noon|midnight|ago|days?|hours?|minutes?)\b"
    r"|\d{1,2}(?::\d{2})?\s*(?i:am|pm|a\.m\.|p\.m\.)|\b\d{1,2}:\d{2}\b|\b\d{1,2}(?i:st|nd|rd|th)\b"
    r"|\b\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}\b"
)
# A sentence: up to ".", "!" or "?" before white space ("p.m." and "06.15.2025" stay whole), or a line.
_CUE_PIECE = re.compile(r"(?:[^.!?\n]|[.!?](?!\s))*(?:[.!?]+(?=\s)|\n+|$)")
_WRAPPED_LINE = re.compile(r"(?<![\n\r])\r?\n(?![\r\n])")
_DATE_ORDER_MDY = frozenset({"US", "PH", "FM", "MH", "PW", "CA"})


def find_dates(
    text: str, reference_date: datetime | None = None, *, default_region: str = "US"
) -> list[DateMention]:
    """The dates a text names, resolved against `reference_date` (now by default), preferring the future."""
    reference = reference_date or datetime.now()
    base = reference.replace(tzinfo=None)
    text = text[:MAX_DATE_TEXT_CHARS]
    if not text.strip():
        return []
    noise = [*find_urls(text), *find_email_addresses(text), *_amount_spans(text)]
    if any(char.isdigit() for char in text):
        noise.extend(span for span, _ in find_phone_numbers(text, default_region))
    # A wrapped line is one line to dateparser ("by Friday,\nJune 13"); a paragraph break stays one.
    blanked = _WRAPPED_LINE.sub(lambda found: " " * len(found.group(0)), _blank(text, noise))
    date_order = "MDY" if default_region.upper() in _DATE_ORDER_MDY else "DMY"
    # Explicit dates are read here; dateparser, which drops the day of "before June 10", gets the rest.
    explicit = _explicit_dates(blanked, base.date(), date_order)
    blanked = _blank(blanked, [mention.span for mention in explicit])
    mentions = list(explicit)
    cursor = 0
    # dateparser reads only the stretches that could name a date: it is slow on everything else.
    cued = _only_date_cues(blanked)
    matches = _search_dates(cued, base, date_order) if cued.strip() else []
    for written, value in matches:
        start = blanked.find(written, cursor)
        if start < 0:
            start = blanked.find(written)
        if start < 0:
            continue
        cursor = start + len(written)
        # dateparser's match often carries a joining word: "yesterday in", "June 13 and".
        stripped = _TRAILING_JOINER.sub("", written.strip())
        lead = len(written) - len(written.lstrip())
        span = Span(start + lead, start + lead + len(stripped), stripped)
        resolved = _resolve(stripped, value, base)
        if resolved is None:
            continue
        if reference.tzinfo is not None and isinstance(resolved, datetime):
            resolved = resolved.replace(tzinfo=reference.tzinfo)
        mentions.append(DateMention(span, resolved))
    if reference.tzinfo is not None:
        mentions = [
            DateMention(mention.span, mention.value.replace(tzinfo=reference.tzinfo))
            if isinstance(mention.value, datetime) and mention.value.tzinfo is None
            else mention
            for mention in mentions
        ]
    # Spans are of the text as given (the blanked copy joined wrapped lines).
    mentions = [
        DateMention(
            Span(mention.span.start, mention.span.end, text[mention.span.start : mention.span.end]),
            mention.value,
        )
        for mention in mentions
    ]
    return sorted(mentions, key=lambda mention: mention.span.start)


def _explicit_dates(text: str, today: date, date_order: str) -> list[DateMention]:
    """ "June 10", "10th of June 2025", "Fri, Jun 13 at 3pm", "2025-06-10", "6/10/2025" (`date_order`
    says which of 6 and 10 is the month); a date without a year is the next one from `today` on."""
    mentions: list[DateMention] = []
    for match in _EXPLICIT_DATE.finditer(text):
        groups = match.groupdict()
        try:
            if groups["iso_year"]:
                year, month, day = int(groups["iso_year"]), int(groups["iso_month"]), int(groups["iso_day"])
            elif groups["num_a"]:
                first, second = int(groups["num_a"]), int(groups["num_b"])
                month, day = (first, second) if date_order == "MDY" else (second, first)
                year = int(groups["num_year"])
                year += 2000 if year < 100 else 0
            else:
                month = _MONTH_NUMBERS[(groups["month_a"] or groups["month_b"]).rstrip(".").lower()[:3]]
                day = int(groups["day_a"] or groups["day_b"])
                written_year = groups["year_a"] or groups["year_b"]
                year = int(written_year) if written_year else _next_year_with(month, day, today)
            value: date | datetime = date(year, month, day)
            clock = _clock(groups["time"]) if groups["time"] else None
            if clock is not None:
                value = datetime(year, month, day, clock[0], clock[1])
        except ValueError:  # 31 June, 13/13/2025: not a date
            continue
        mentions.append(DateMention(Span(match.start(), match.end(), match.group(0)), value))
    return mentions


def _next_year_with(month: int, day: int, today: date) -> int:
    """The year of the next `month`/`day` from `today` on (29 February waits for a leap year)."""
    for year in range(today.year, today.year + 9):
        try:
            if date(year, month, day) >= today:
                return year
        except ValueError:
            continue
    raise ValueError(f"no {month}/{day}")


def _clock(written: str) -> tuple[int, int] | None:
    found = _CLOCK.search(written)
    if found is None:
        return (12, 0) if "noon" in written.lower() else None
    hour, minute = int(found.group("hour")), int(found.group("minute") or 0)
    meridiem = (found.group("meridiem") or "").replace(".", "").lower()
    if meridiem == "pm" and hour < 12:
        hour += 12
    elif meridiem == "am" and hour == 12:
        hour = 0
    return (hour, minute) if hour < 24 and minute < 60 else None


def _only_date_cues(text: str) -> str:
    """`text` with every sentence or line that has no date cue blanked out (offsets kept)."""
    pieces: list[str] = []
    for piece in _CUE_PIECE.findall(text):
        pieces.append(piece if _DATE_CUE.search(piece) else " " * len(piece))
    cued = "".join(pieces)
    return cued if len(cued) == len(text) else text


def _search_dates(text: str, base: datetime, date_order: str) -> list[tuple[str, datetime]]:
    from dateparser.search import search_dates  # type: ignore[import-untyped,unused-ignore]  # about 0.2 s to import: only when dates are asked for

    settings = {
        "PREFER_DATES_FROM": "future",
        "RELATIVE_BASE": base,
        "RETURN_AS_TIMEZONE_AWARE": False,
        "DATE_ORDER": date_order,
    }
    try:
        found = search_dates(text, languages=["en"], settings=settings)
    # dateparser is a large rule set run on untrusted text; a date it cannot make is no date.
    except (ValueError, OverflowError, TypeError, IndexError, KeyError, AttributeError, RecursionError):
        return []
    return [(written, value) for written, value in found or [] if isinstance(value, datetime)]


def _resolve(written: str, value: datetime, base: datetime) -> date | datetime | None:
    """The date a dateparser match means, or None where the match is noise."""
    has_digit = any(char.isdigit() for char in written)
    if not has_digit and _DATE_WORD.search(written) is None:
        return None  # "we", "sat", "now", "a second", "the march of", "May I"
    if has_digit and _DATE_WORD.search(written) is None and _DATE_ABBREVIATION.search(written) is None:
        if _DURATION_ONLY.fullmatch(written) or _YEAR_ONLY.fullmatch(written):
            return None  # "2 hours", "in 2025": a length of time or a year, not a date
        if _CLOCK_RELATIVE.search(written):
            return None  # "in 5 minutes"
        ordinal = _ORDINAL_ONLY.fullmatch(written)
        if ordinal:  # dateparser reads "the 3rd" as a month; it is the next 3rd of a month
            return _next_day_of_month(int(ordinal.group("day")), base.date())
    if _MONTH_ONLY.fullmatch(written):  # "in March": the month, from its first day
        return value.date().replace(day=1)
    if _TIME_SAID.search(written):
        return value.replace(second=0, microsecond=0)
    return value.date()


def _next_day_of_month(day: int, today: date) -> date | None:
    if not 1 <= day <= 31:
        return None
    year, month = today.year, today.month
    for _ in range(13):
        if day <= calendar.monthrange(year, month)[1] and date(year, month, day) >= today:
            return date(year, month, day)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def end_of_week(today: date) -> date:
    """The Friday of `today`'s week (`today` itself from Friday on)."""
    return today + timedelta(days=max(0, 4 - today.weekday()))


# -------------------------------------------------------------------------------------------- people

_NAME_WORD = r"[A-Z][a-z]+(?:[-'\u2019][A-Z]?[a-z]+)?"
_GREETING = re.compile(
    r"^[ \t]*(?:hi|hello|hey|dear|hiya|howdy|greetings|good\s+(?:morning|afternoon|evening)|morning)"
    r"[ \t]+(?P<names>(?:(?:Mr|Mrs|Ms|Mx|Dr|Prof)\.[ \t]*)?[^\n,:;!?.]{1,80})",
    re.IGNORECASE | re.MULTILINE,
)
_SIGN_OFF = re.compile(
    r"^[ \t]*(?:thanks|thank\s+you|many\s+thanks|thanks\s+again|cheers|best|best\s+wishes|all\s+the\s+best|"
    r"(?:best|kind|warm|warmest|many)\s+regards|regards|sincerely|yours(?:\s+(?:truly|sincerely))?|"
    r"take\s+care|talk\s+soon|speak\s+soon|--|—)"
    r"[ \t]*[,.!]*[ \t]*(?P<inline>" + _NAME_WORD + r"(?:[ \t]+" + _NAME_WORD + r")?)?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_NAME_LINE = re.compile(
    r"[ \t]*(?P<name>" + _NAME_WORD + r"(?:[ \t]+(?:[A-Z]\.|" + _NAME_WORD + r")){0,2})[ \t]*,?[ \t]*"
)
_PAIR = re.compile(
    r"\b(?i:with|from|cc:?|cc'?ing|cc'?d|to|by|meet|met|ask|introduce\s+you\s+to|introducing|thanks\s+to|per)"
    r"\s+(?P<name>"
    + _NAME_WORD
    + r"(?:\s+[A-Z]\.)?\s+"
    + _NAME_WORD
    + r")\b(?!\s*(?:[A-Z&]|,\s*(?:Inc|Ltd|LLC)))"
)
_MENTION = re.compile(r"(?<![\w.@])@(?P<name>[A-Za-z][a-z]{1,30})\b(?![.@]\w)")
_GROUPS = frozenset(
    {
        "team",
        "teams",
        "folks",
        "all",
        "everyone",
        "crew",
        "gang",
        "guys",
        "people",
        "friends",
        "colleagues",
        "squad",
    }
)
_TITLES = re.compile(r"^(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir)\.?\s+")
_NOT_NAMES = _word_set(
    """
    all everyone everybody team there folks guys gang people friends colleagues sir madam ladies
    gentlemen support sales marketing billing customer customers client clients partner partners
    hiring manager managers admin administrator webmaster info hello hi dear thanks thank best regards
    kind warm cheers sincerely yours the a an this that our your my we i you it re fw fwd subject
    monday tuesday wednesday thursday friday saturday sunday january february march april may june july
    august september october november december today tomorrow tonight yesterday morning afternoon
    evening night week weekend month year quarter new old next last more please note update updates
    notice inc ltd llc corp co company group labs lab systems solutions technologies technology
    partners capital ventures bank university college institute foundation holdings services
    international global media studio studios agency consulting office department board committee
    engineering product design finance legal operations ops hr recruiting security community
    here channel newsletter noreply no-reply reply unsubscribe account accounts service services zoom teams slack
    google microsoft apple amazon meta linkedin twitter facebook
    """
)


def find_people(text: str, addresses: Iterable[str] = ()) -> list[str]:
    """Names of people, as written; display names of `addresses` ("Ana Ruiz <ana@acme.test>") first."""
    text = text[:MAX_TEXT_CHARS]
    found: list[tuple[int, str]] = []
    for index, (name, _) in enumerate(_parsed_addresses(addresses)):
        person = _display_name_person(name)
        if person:
            found.append((-MAX_ADDRESSES + index, person))
    for match in _GREETING.finditer(text):
        for part in re.split(r"\s*(?:,|&|\band\b)\s*", match.group("names")):
            person = _greeted(part)
            if person:
                found.append((match.start("names"), person))
    for match in _SIGN_OFF.finditer(text):
        if match.group("inline"):
            person = _person(match.group("inline"))
            if person:
                found.append((match.start("inline"), person))
                continue
        line_end = match.end()
        following = text[line_end:].lstrip("\r\n")
        offset = len(text) - len(following)
        name_line = _NAME_LINE.match(following)
        if name_line and following[name_line.end() : name_line.end() + 1] in ("", "\n", "\r"):
            person = _person(name_line.group("name"))
            if person:
                found.append((offset + name_line.start("name"), person))
    for match in _PAIR.finditer(text):
        person = _person(match.group("name"))
        if person:
            found.append((match.start("name"), person))
    for match in _MENTION.finditer(text):
        person = _person(match.group("name").capitalize())
        if person:
            found.append((match.start("name"), person))
    return _merge_names(found)


def _greeted(part: str) -> str | None:
    """The name a greeting addresses: its leading capitalised words ("Ana" of "Ana thanks for ..."),
    unless they name a group ("Acme team")."""
    words = _TITLES.sub("", part.strip()).split()
    leading = list(itertools.takewhile(lambda word: word[:1].isupper(), words))[:3]
    following = words[len(leading) : len(leading) + 1]
    if not leading or (following and following[0].lower() in _GROUPS):
        return None
    return _person(" ".join(leading))


def _person(candidate: str) -> str | None:
    """`candidate` as a person's name (titles dropped), or None when it is not one."""
    name = " ".join(_TITLES.sub("", candidate.strip()).split())
    words = name.split(" ")
    if not name or len(words) > 3 or len(name) > 60:
        return None
    for word in words:
        bare = word.rstrip(".")
        if not bare or not bare[0].isupper() or bare.lower() in _NOT_NAMES:
            return None
        if not all(char.isalpha() or char in "-'\u2019." for char in word):
            return None
    if name in PLACES or len(words[0].rstrip(".")) < 2 or _company_suffix(name) is not None:
        return None
    return name


def _display_name_person(display_name: str) -> str | None:
    name = display_name.strip().strip("\"'")
    if "," in name:  # "Ruiz, Ana"
        last, _, first = name.partition(",")
        name = f"{first.strip()} {last.strip()}"
    if _company_suffix(name) is not None:
        return None
    return _person(name)


def _merge_names(found: list[tuple[int, str]]) -> list[str]:
    """Deduplicated in order of appearance; a first name alone folds into a full name that starts with it."""
    ordered = sorted(found, key=lambda item: item[0])
    full_names = [name for _, name in ordered if " " in name]
    names: list[str] = []
    seen: set[str] = set()
    for _, name in ordered:
        if " " not in name:
            longer = next(
                (full for full in full_names if full.split(" ")[0].casefold() == name.casefold()), None
            )
            if longer is not None:
                name = longer
        key = name.casefold()
        if key not in seen:
            seen.add(key)
            names.append(name)
    return names


# ----------------------------------------------------------------------------------------- companies

_SUFFIXES = (
    "Inc", "Incorporated", "Ltd", "Limited", "LLC", "L.L.C.", "LLP", "GmbH", "AG", "Corp", "Corporation",
    "Co", "Company", "PLC", "plc", "S.A.", "SA", "SAS", "BV", "B.V.", "NV", "AB", "Pty Ltd", "Pty", "Oy",
    "ApS", "SpA", "S.p.A.", "KK", "SARL", "Srl",
)  # fmt: skip
_SUFFIX = "|".join(re.escape(suffix) for suffix in sorted(_SUFFIXES, key=len, reverse=True))
_COMPANY_WORD = r"(?:[A-Z][A-Za-z0-9&'\u2019-]*|&|of|and|de|the)"
_COMPANY = re.compile(
    rf"(?<![\w&])(?P<name>[A-Z0-9][A-Za-z0-9&'\u2019-]*(?:\s{_COMPANY_WORD}){{0,3}}),?\s(?P<suffix>{_SUFFIX})(?![\w&-])"
)
_LEADING_NOT_COMPANY = _word_set(
    """
    the a an at from with for to by of and dear hi hello hey thanks thank our your their my we i re fw fwd
    cc meeting call about regarding contract proposal invoice order team join welcome congrats
    """
)
WEBMAIL = _word_set(
    """
    gmail googlemail yahoo ymail rocketmail outlook hotmail live msn aol icloud me mac proton protonmail pm
    gmx mail yandex zoho fastmail qq 163 126 hey tutanota tuta mailbox posteo web t-online orange free
    comcast verizon att sbcglobal btinternet sky example
    """
)
# Second-level labels that are part of a country's suffix: acme.co.uk is Acme, not "Co".
_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "ac", "gov", "edu", "ltd", "plc", "ne", "or", "go"})


def find_companies(text: str, addresses: Iterable[str] = ()) -> list[str]:
    """Company names: the addresses' organisations first, then names with a legal suffix and the
    domains of addresses in the text, in order."""
    text = text[:MAX_TEXT_CHARS]
    found: list[tuple[int, str]] = []
    for index, (name, address) in enumerate(_parsed_addresses(addresses)):
        if _company_suffix(name) is not None:
            found.append((-2 * MAX_ADDRESSES + index, " ".join(name.split())))
        organisation = organisation_of(address)
        if organisation:
            found.append((-MAX_ADDRESSES + index, organisation))
    for match in _COMPANY.finditer(text):
        words = match.group("name").split()
        while words and words[0].lower() in _LEADING_NOT_COMPANY:
            words = words[1:]
        if not words:
            continue
        suffix = match.group("suffix")
        name = " ".join(words)
        start = match.start("name") + match.group("name").find(words[0])
        found.append(
            (start, f"{name}{',' if match.group(0)[len(match.group('name'))] == ',' else ''} {suffix}")
        )
    for span in find_email_addresses(text):
        organisation = organisation_of(span.text)
        if organisation:
            found.append((span.start, organisation))
    return _merge_companies(found)


def organisation_of(address: str) -> str | None:
    """The organisation an address's domain names ("ana@mail.acme-corp.co.uk" -> "Acme Corp"), or
    None for webmail and addresses without a usable domain."""
    _, _, domain = address.rpartition("@")
    labels = [label for label in domain.lower().strip(".").split(".") if label]
    if len(labels) < 2:
        return None
    labels = labels[:-1]  # the top-level domain
    if len(labels) >= 2 and labels[-1] in _SECOND_LEVEL:
        labels = labels[:-1]
    organisation = labels[-1]
    if organisation in WEBMAIL or not any(char.isalpha() for char in organisation):
        return None
    words = re.split(r"[-_]+", organisation)
    return " ".join(word.upper() if len(word) <= 2 else word.capitalize() for word in words if word) or None


def _company_suffix(name: str) -> str | None:
    match = re.search(rf"(?:^|[\s,])(?P<suffix>{_SUFFIX})\.?$", name.strip())
    return match.group("suffix") if match else None


def _company_key(name: str) -> str:
    words = re.sub(rf"[\s,]+(?:{_SUFFIX})\.?$", "", name.strip())
    return re.sub(r"[^a-z0-9]", "", words.casefold())


def _merge_companies(found: list[tuple[int, str]]) -> list[str]:
    """Deduplicated by name without its suffix, in order; the fullest spelling wins."""
    names: dict[str, str] = {}
    for _, name in sorted(found, key=lambda item: item[0]):
        key = _company_key(name)
        if not key:
            continue
        if key not in names or (_company_suffix(name) and not _company_suffix(names[key])):
            names[key] = name
    return list(names.values())


# ----------------------------------------------------------------------------------------- locations

_PLACES_BY_FIRST_WORD: dict[str, tuple[str, ...]] = {}
for _place in PLACES:
    _first = re.split(r"[\s,]", _place, maxsplit=1)[0].rstrip(".")
    _PLACES_BY_FIRST_WORD[_first] = tuple(
        sorted((*_PLACES_BY_FIRST_WORD.get(_first, ()), _place), key=len, reverse=True)
    )
_CAPITALISED = re.compile(r"(?<![\w@/.'\u2019-])[A-ZÀ-Þ][\w'\u2019]*\.?")
_PLACE_CONTEXT = re.compile(
    r"\b(?i:meet|meeting|met|office|offices|based|located|headquartered|headquarters|hq|conference|summit|"
    r"event|expo|visit|visiting|live|lives|living|stay|staying|travel|travelling|traveling|fly|flying|flight|"
    r"trip|moving|relocating|workshop|meetup|dinner|lunch|coffee|branch|store|warehouse|team)"
    r"\b[^.!?\n]{0,30}?\bin\s+(?P<place>[A-Z][a-z]+(?:\s[A-Z][a-z]+)?)\b"
)
_NOT_PLACES = _word_set(
    """
    person advance touch time general particular person-to-person english spanish french german italian
    portuguese chinese japanese zoom teams slack meet google hangouts skype webex room conference building
    floor office hq headquarters q1 q2 q3 q4 january february march april may june july august september
    october november december monday tuesday wednesday thursday friday saturday sunday the our your their
    my this that next spring summer autumn fall winter
    """
)


def find_locations(text: str, *, exclude: Iterable[str] = ()) -> list[str]:
    """Places, from the gazetteer and from "in <Name>" after meet, office, based and the like;
    names in `exclude` (people, companies) are not places."""
    excluded = {name.casefold() for name in exclude}
    # A place inside a name is the name's: "Lima" of "Ana Lima", "Paris" of "Paris Hilton".
    text = _blank(
        text[:MAX_TEXT_CHARS],
        [span for name in exclude if len(name) > 2 for span in _occurrences(text, name)],
    )
    found: list[tuple[int, str]] = []
    for match in _CAPITALISED.finditer(text):
        word = match.group(0).rstrip(".")
        for place in _PLACES_BY_FIRST_WORD.get(word, ()):
            end = match.start() + len(place)
            if text.startswith(place, match.start()) and not (end < len(text) and text[end].isalnum()):
                found.append((match.start(), place))
                break
    for match in _PLACE_CONTEXT.finditer(text):
        place = match.group("place")
        words = place.split(" ")
        if any(word.lower() in _NOT_PLACES for word in words):
            place = words[0]
            if place.lower() in _NOT_PLACES:
                continue
        found.append((match.start("place"), place))
    places: list[str] = []
    seen: set[str] = set()
    for _, place in sorted(found, key=lambda item: item[0]):
        key = place.casefold()
        if key not in seen and key not in excluded:
            seen.add(key)
            places.append(place)
    return places


# ------------------------------------------------------------------------------------------ together


def extract_entities(
    text: str,
    *,
    reference_date: datetime | None = None,
    default_region: str = "US",
    addresses: Sequence[str] = (),
) -> EmailEntities:
    """Every entity of a plain-text email. `addresses` are header values ("Ana Ruiz <ana@acme.test>",
    several comma-separated allowed): their display names are people, their domains companies."""
    text = text[:MAX_TEXT_CHARS]
    addresses = list(addresses)[:MAX_ADDRESSES]
    people = find_people(text, addresses)
    companies = find_companies(text, addresses)
    people = [person for person in people if _company_key(person) not in {_company_key(c) for c in companies}]
    return EmailEntities(
        people=people,
        companies=companies,
        dates=_unique(
            mention.iso for mention in find_dates(text, reference_date, default_region=default_region)
        ),
        amounts=_unique_amounts(find_amounts(text)),
        locations=find_locations(text, exclude=[*people, *companies]),
        phone_numbers=_unique(e164 for _, e164 in find_phone_numbers(text, default_region)),
        urls=_unique(span.text for span in find_urls(text)),
    )


def _parsed_addresses(addresses: Iterable[str]) -> list[tuple[str, str]]:
    values = [address for address in list(addresses)[:MAX_ADDRESSES] if isinstance(address, str)]
    return [(name, address) for name, address in email.utils.getaddresses(values) if name or "@" in address]


def _amount_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    for match in _AMOUNT.finditer(text[:MAX_TEXT_CHARS]):
        spans.append(Span(match.start(), match.end(), match.group(0)))
    return spans


def _occurrences(text: str, needle: str) -> list[Span]:
    spans: list[Span] = []
    start = text.find(needle)
    while start >= 0 and len(spans) < 100:
        spans.append(Span(start, start + len(needle), needle))
        start = text.find(needle, start + len(needle))
    return spans


def _blank(text: str, spans: Iterable[Span]) -> str:
    """`text` with every span replaced by as many spaces: offsets stay valid."""
    characters = list(text)
    for span in spans:
        start, end = min(span.start, len(text)), min(span.end, len(text))
        characters[start:end] = " " * (end - start)
    return "".join(characters)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _unique_amounts(amounts: Iterable[Money]) -> list[Money]:
    seen: set[tuple[float, str]] = set()
    unique: list[Money] = []
    for money in amounts:
        if (money.amount, money.currency) not in seen:
            seen.add((money.amount, money.currency))
            unique.append(money)
    return unique
