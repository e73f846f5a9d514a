"""Personalization placeholders: parsed once per template, filled in for each recipient.

Syntax: `{{ name }}` or `{{ name | default }}` (spaces inside the braces are optional).

    firstName, lastName, company, email   the contact's own fields
    attr.<key>                            the contact's custom attribute <key>
    <key>                                 any other name reads the custom attribute <key> too, so
                                          `{{plan}}` is `{{attr.plan}}`; the four fields above win
                                          a clash, and `attr.email` reaches an attribute named so
    unsubscribeUrl                        reserved: mail.campaigns.render fills in the recipient's
                                          unsubscribe URL (empty where unsubscribing is off)

A value that is missing, None or empty (whitespace only counts as empty) gives the default, or
nothing without one. Attribute values are written as text: `true`/`false`, numbers as Python
writes them. Anything that is not a well-formed placeholder (`{{}}`, `{{ two words }}`, a lone
`{{`) is left as literal text, so a template never fails to compile.

Values are escaped for where they land (`Mode`); a default is part of the template, written as
its context reads it (HTML in an HTML body), and goes in unescaped.

    TEXT     as it is
    HTML     & < > " ' as character references: a value can neither add markup nor leave an
             attribute
    URL      percent-encoded (every byte but A-Z a-z 0-9 - . _ ~), for a value inside a link's URL;
             the result holds no HTML-special character either
    HEADER   CR, LF, tab and the Unicode line breaks become one space; every other control
             character (C0, DEL, C1) is dropped: a value can never start a header line of its own
"""

from __future__ import annotations

import enum
import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import quote

import msgspec

AttributeValue = str | int | float | bool

UNSUBSCRIBE_URL = "unsubscribeUrl"
# Placeholder name -> the Recipient field it reads.
FIELDS = {"firstName": "first_name", "lastName": "last_name", "company": "company", "email": "email"}

_PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_ATTRIBUTE_KEY = re.compile(r"[^{}|\x00-\x1f\x7f]+")
_HEADER_BREAKS = re.compile(r"[\r\n\t\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
_HEADER_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Mode(enum.Enum):
    TEXT = "text"
    HTML = "html"
    URL = "url"
    HEADER = "header"


def header_safe(text: str) -> str:
    """`text` as one header line can hold it: line breaks and tabs as one space, controls dropped."""
    return _HEADER_CONTROLS.sub("", _HEADER_BREAKS.sub(" ", text))


def _html(text: str) -> str:
    return html.escape(text, quote=True)


def _url(text: str) -> str:
    return quote(text, safe="")


_ESCAPE: dict[Mode, Callable[[str], str]] = {
    Mode.TEXT: str,
    Mode.HTML: _html,
    Mode.URL: _url,
    Mode.HEADER: header_safe,
}


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    """What a placeholder can read about one recipient (a contact, or just an address)."""

    email: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    attributes: Mapping[str, AttributeValue] = msgspec.field(default_factory=dict)


class Placeholder(msgspec.Struct, frozen=True, kw_only=True):
    """One `{{...}}`: which value (a Recipient field, or else an attribute), its default, its escaping.

    `name` is as written (`attr.` included); `field` is the Recipient field for the four built-in
    names, None for an attribute (`attribute` then names it). `default` is already in the form
    its context needs.
    """

    name: str
    field: str | None
    attribute: str | None
    default: str
    mode: Mode

    def value(self, recipient: Recipient) -> str:
        """This placeholder filled in for `recipient`, escaped for its context."""
        if self.field is not None:
            raw: AttributeValue | None = getattr(recipient, self.field)
        else:
            raw = recipient.attributes.get(self.attribute or "")
        if raw is None:
            return self.default
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        else:
            text = raw if isinstance(raw, str) else str(raw)
        if not text or text.isspace():
            return self.default
        return _ESCAPE[self.mode](text)


Part = str | Placeholder


def parse(text: str, mode: Mode) -> list[Part]:
    """`text` as literal strings and placeholders, in order (adjacent literals not merged)."""
    parts: list[Part] = []
    at = 0
    for match in _PLACEHOLDER.finditer(text):
        placeholder = _placeholder(match.group(1), mode)
        if placeholder is None:
            continue  # not a placeholder: stays in the literal around it
        if match.start() > at:
            parts.append(text[at : match.start()])
        parts.append(placeholder)
        at = match.end()
    if at < len(text):
        parts.append(text[at:])
    return parts


def _placeholder(inner: str, mode: Mode) -> Placeholder | None:
    name, bar, default = inner.partition("|")
    name = name.strip()
    default = default.strip() if bar else ""
    if mode is Mode.HEADER:
        default = header_safe(default)
    if name.startswith("attr."):
        key = name[5:].strip()
        if not _ATTRIBUTE_KEY.fullmatch(key):
            return None
        return Placeholder(name=f"attr.{key}", field=None, attribute=key, default=default, mode=mode)
    if not _NAME.fullmatch(name):
        return None
    field = FIELDS.get(name)
    return Placeholder(name=name, field=field, attribute=None if field else name, default=default, mode=mode)


class Template:
    """Literal text with slots, compiled to one `str.format` pattern: render fills every slot.

    A slot is a `Placeholder` or any other hashable object the caller knows how to fill (the
    renderer's click and open URLs). Equal slots share one value per render.
    """

    __slots__ = ("_pattern", "slots", "text")

    def __init__(self, parts: Iterable[object]) -> None:
        pieces: list[str] = []
        index: dict[object, int] = {}
        for part in parts:
            if isinstance(part, str):
                pieces.append(part.replace("{", "{{").replace("}", "}}"))
            else:
                pieces.append(f"{{{index.setdefault(part, len(index))}}}")
        self._pattern = "".join(pieces)
        self.slots: tuple[object, ...] = tuple(index)
        # Without slots the text is the pattern itself, with its braces undoubled.
        self.text: str | None = None if self.slots else self._pattern.format()

    @classmethod
    def compile(cls, text: str, mode: Mode) -> Template:
        """A template of placeholders only (`Template.personalize` fills it)."""
        if mode is Mode.HEADER:
            return cls(header_safe(part) if isinstance(part, str) else part for part in parse(text, mode))
        return cls(parse(text, mode))

    @property
    def is_constant(self) -> bool:
        return not self.slots

    def render(self, values: Sequence[str]) -> str:
        """The text with `values[i]` in `slots[i]`."""
        if self.text is not None:
            return self.text
        return self._pattern.format(*values)

    def personalize(self, recipient: Recipient) -> str:
        """The text for `recipient`; every slot must be a Placeholder."""
        if self.text is not None:
            return self.text
        values: list[str] = []
        for slot in self.slots:
            if not isinstance(slot, Placeholder):
                raise TypeError(f"slot {slot!r} is not a placeholder; fill it with render()")
            values.append(slot.value(recipient))
        return self._pattern.format(*values)
