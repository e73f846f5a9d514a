"""An email as the model reads it: subject, sender and the body's own words, bounded in size.

What a reader skips, the model should skip too: the quoted message a reply carries (`>` lines,
"On ... wrote:" and Outlook's "-----Original Message-----" or "From: ... Sent: ..." blocks, Gmail's
and Outlook's HTML quote containers), the signature (after "-- ", or a short closing block after a
sign-off such as "Best regards,"), markup, tracking URLs' paths and runs of whitespace. A forward is
kept: what was forwarded is what the message is about. When stripping would leave nothing (a bare
forward of a quote, say), the text is kept with only the quote markers removed.

Everything here is pure string work on untrusted input: no step is worse than linear, and the
input is cut to `MAX_INPUT_CHARS` before any of it runs.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser

from models.ai import EmailText
from models.mail import ParsedMessage

MAX_BODY_CHARS = 3000  # about 600 words: well past the 256 tokens the encoder reads by default
MAX_SUBJECT_CHARS = 300
MAX_SENDER_CHARS = 200
MAX_INPUT_CHARS = 200_000  # what is read of a body at all (HTML included)
_MAX_SIGNATURE_LINES = 7  # a closing block after a sign-off longer than this is content, not a signature

_LOOKS_HTML = re.compile(r"<(?:html|body|head|div|p|table|td|br|span|font|a)\b[^>]*>", re.IGNORECASE)
_HTML_QUOTES = "blockquote, div.gmail_quote, div.yahoo_quoted, div#divRplyFwdMsg, div#appendonsend"
_HTML_INVISIBLE = ["script", "style", "head", "title", "noscript", "template"]
_HTML_BLOCKS = re.compile(r"<(?:br|/p|/div|/tr|/li|/h[1-6]|/table|hr)\b[^>]*>", re.IGNORECASE)
_INVISIBLE = re.compile("[\u00ad\u034f\u200b-\u200f\u2060\ufeff]")
_URL = re.compile(r"\b(https?://[^\s/?#<>\"']+)[^\s<>\"']*", re.IGNORECASE)

_WROTE = re.compile(r"\bwrote:\s*$", re.IGNORECASE)
_ON = re.compile(r"^on\b", re.IGNORECASE)
_ORIGINAL = re.compile(r"^-{2,}\s*original message\s*-{2,}$", re.IGNORECASE)
_OUTLOOK_FROM = re.compile(r"^\*?from:\*?\s", re.IGNORECASE)
_OUTLOOK_FIELD = re.compile(r"^\*?(?:sent|date|to|subject):\*?\s", re.IGNORECASE)
_UNDERSCORES = re.compile(r"^_{10,}$")
_SIGN_OFF = re.compile(
    r"^(?:thanks|thank you|thanks again|many thanks|thx|cheers|best|best wishes|all the best|"
    r"(?:best|kind|warm|warmest|many)\s+regards|regards|sincerely|yours(?:\s+(?:truly|sincerely))?|"
    r"take care|talk soon|br)\s*[,.!]*$",
    re.IGNORECASE,
)
_SENT_FROM = re.compile(r"^sent from my \w+", re.IGNORECASE)


def model_input(text: EmailText) -> str:
    """The one string the encoder reads for a message."""
    subject = _cap(collapse_whitespace(text.subject), MAX_SUBJECT_CHARS)
    sender = _cap(collapse_whitespace(text.sender), MAX_SENDER_CHARS)
    return f"Subject: {subject}\nFrom: {sender}\n{clean_body(text.body)}"


def from_parsed(message: ParsedMessage) -> EmailText:
    """The model's view of a parsed message: its plain-text body, else its HTML body."""
    sender = ""
    if message.from_address is not None:
        address = message.from_address
        sender = f"{address.name} <{address.email}>" if address.name else address.email
    body = message.text_body if message.text_body and message.text_body.strip() else message.html_body
    return EmailText(subject=message.subject, sender=sender, body=body or "")


def clean_body(body: str, max_chars: int = MAX_BODY_CHARS) -> str:
    """The body's own words on one line: no markup, quoted reply or signature; at most `max_chars`."""
    body = body[:MAX_INPUT_CHARS]
    if looks_like_html(body):
        body = html_to_text(body)
    lines = _INVISIBLE.sub("", body.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    kept = strip_signature(strip_quoted(lines))
    text = collapse_whitespace(" ".join(kept))
    if not text:  # all of it was quote or signature: better the quoted words than nothing
        text = collapse_whitespace(" ".join(line.lstrip("> ") for line in lines))
    return _cap(_URL.sub(r"\1", text), max_chars)


def looks_like_html(body: str) -> bool:
    """Whether a body is markup (some senders put HTML in text/plain parts)."""
    return _LOOKS_HTML.search(body, 0, 5000) is not None


def html_to_text(html: str) -> str:
    """Visible text of an HTML body, one line per block, without quoted replies."""
    # Block ends become line breaks first, so the line-based quote and signature rules still apply.
    tree = LexborHTMLParser(_HTML_BLOCKS.sub(lambda found: found.group(0) + "\n", html))
    tree.strip_tags(_HTML_INVISIBLE)
    for quote in tree.css(_HTML_QUOTES):
        quote.decompose()
    node = tree.body or tree.root
    return node.text(separator="") if node is not None else ""


def strip_quoted(lines: list[str]) -> list[str]:
    """The lines before the quoted message of a reply, without `>` lines in between."""
    kept: list[str] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">"):
            continue
        if _starts_quote(stripped, lines, index):
            break
        kept.append(line)
    return kept


def _starts_quote(stripped: str, lines: list[str], index: int) -> bool:
    if _ORIGINAL.match(stripped):
        return True
    if _ON.match(stripped):
        # "On Tue, 3 Jun 2025 at 10:02, Ana <ana@acme.test> wrote:" may be wrapped onto two lines.
        if _WROTE.search(stripped):
            return True
        following = _next_nonempty(lines, index)
        return following is not None and len(stripped) < 200 and _WROTE.search(following) is not None
    if _UNDERSCORES.match(stripped):
        following = _next_nonempty(lines, index)
        return following is not None and _OUTLOOK_FROM.match(following) is not None
    if _OUTLOOK_FROM.match(stripped):
        # Outlook's header block: From: then Sent:/Date:/To:/Subject: within the next few lines.
        window = [line.strip() for line in lines[index + 1 : index + 5]]
        return any(_OUTLOOK_FIELD.match(line) for line in window)
    return False


def _next_nonempty(lines: list[str], index: int) -> str | None:
    for line in lines[index + 1 : index + 3]:
        if line.strip():
            return line.strip()
    return None


def strip_signature(lines: list[str]) -> list[str]:
    """The lines before the signature: after a "-- " line, or a sign-off closing a short block."""
    for index, line in enumerate(lines):
        if line.rstrip() == "--" or _SENT_FROM.match(line.strip()):
            lines = lines[:index]
            break
    content = [index for index, line in enumerate(lines) if line.strip()]
    # The last sign-off that has content before it and at most a short block after it.
    for position in range(len(content) - 1, -1, -1):
        index = content[position]
        if len(content) - position - 1 > _MAX_SIGNATURE_LINES:
            break
        if position > 0 and _SIGN_OFF.match(lines[index].strip()):
            return lines[:index]
    return lines


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


def _cap(text: str, max_chars: int) -> str:
    """At most `max_chars`, cut at a word boundary when one is near the end."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars * 3 // 4 else cut
