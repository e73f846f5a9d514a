"""Bounces without a delivery-status part: qmail, Exim, Sendmail and Postfix text notices, Gmail,
Yahoo, Exchange, Lotus Notes and Domino, OpenSMTPD, Courier and the like.

Every one of them writes the same thing in its own words: a notice ("could not be delivered to
one or more recipients"), then for each failed recipient its address on a line of its own and
the receiver's reply under it, then a copy of the message. So the notice is cut where the copy
begins (`notice_text`), the recipients are found as *anchors* (an address alone on a line,
"<a@b>:", "a@b on <date>", "* a@b", ">>> RCPT TO:<a@b>", or a lead-in such as "Could not be
delivered to: <a@b>"), and the text from one anchor to the next is that recipient's diagnostic.
The reply codes and status codes are read from the diagnostic (mail.bounces.diagnostics).

Exim and Gmail also name the failed recipients in an X-Failed-Recipients header; when it is
there it decides who failed, and the anchors only place the text.

Whether a message is a bounce at all is decided on evidence from two sides: something about the
envelope or the headers (a null return path, a MAILER-DAEMON or postmaster sender, a subject
such as "Undelivered Mail Returned to Sender", X-Failed-Recipients) and a notice that says
delivery failed with at least one recipient in it. Ordinary mail from a postmaster, or a message
that merely talks about undeliverable mail, lacks one side.
"""

from __future__ import annotations

import html
import re
from email.message import Message
from typing import NamedTuple

from mail.bounces.diagnostics import (
    ADDRESS,
    EVIDENCE_CHARS,
    Failure,
    codes,
    find_addresses,
    one_line,
    smtp_stage,
)
from mail.mime_charsets import decode_text, decode_words, surrogates_to_text

MAX_NOTICE_CHARS = 64_000  # notices are short; a longer text part is cut (pathological input)

_ADDRESS = ADDRESS
MAX_HEADER_CHARS = 4000  # of a header read here (senders, subjects, return paths)

# An address that begins a line, as the recipient of what follows.
_ADDRESS_LINE = re.compile(
    rf"^[ \t]*(?:[*\u2022>-]+[ \t]*)?<?(?P<address>{_ADDRESS})>?"
    r"(?P<rest>$|[ \t]*(?::|\.\.\.|\(|\[|<|,|on\s).*)",
    re.IGNORECASE,
)
# A recipient named by an SMTP transcript (Sendmail's ">>> RCPT To:<a@b>", Postfix's "In: RCPT
# TO:<a@b>") or by a "RCPT TO: a@b" line of a message summary (Apache James).
_RCPT_LINE = re.compile(
    rf"^[ \t]*(?:>>>|in:)?[ \t]*rcpt to:[ \t]*<?(?P<address>{_ADDRESS})>?(?P<rest>.*)$", re.IGNORECASE
)
# A recipient named inside a sentence.
_LEAD_IN = re.compile(
    r"(?:could not be delivered to|unable to deliver (?:your )?(?:message )?to|(?:was )?not delivered to"
    r"|rejected recipient|returned (?:permanent|temporary) errors?|failed recipients?|undeliverable to)"
    rf"[ \t]*:?[ \t]*<?(?P<address>{_ADDRESS})>?(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
# Exim: the failed addresses are indented two spaces under this line, their reasons four.
_EXIM_LIST = re.compile(
    r"following address\(es\) failed:|has not yet been delivered is:|address\(es\) deferred:"
    r"|одному или нескольким получателям:",
    re.IGNORECASE,
)

# Where the copy of the returned message begins in a text notice.
_COPY_MARKERS = re.compile(
    r"^[ \t]*(?:"
    r"-+ ?(?:below this line is a copy of the message|this is a copy of (?:the|your) message"
    r"|enclosed is a copy of the message|original message|returned message|the header of the original"
    r"|original message follows|undelivered message|message header follows)"
    r"|below is a copy of the original message|original message headers:|original mail as follows:"
    r"|-+ ?original message ?-+|content-type: message/rfc822"
    r"|from mailer-daemon .*\d{4}$"
    r")",
    re.IGNORECASE | re.MULTILINE,
)

# Evidence on the envelope and headers.
_DAEMON_LOCAL_PART = re.compile(
    r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|post[-_]?master|poostmaster|mail[-_.]delivery[-_.]system"
    r"|mailadmin|mdaemon|bounces?|mail[-_]?admin)$",
    re.IGNORECASE,
)
_DAEMON_NAME = re.compile(
    r"mail(?:er)? ?-?daemon|mail deliver(?:y)? (?:system|subsystem)|postmaster|system administrator"
    r"|content-filter|mail delivery",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|return(?:ed)? to sender|delivery status notification|delivery failure"
    r"|failure notice|mail delivery failed|delivery (?:has )?failed|non[- ]?deliver|could not be delivered"
    r"|not delivered|failed delivery|failure delivery|delivery problem|warning: message .* delayed"
    r"|error sending your mail|mail failure|delivery notification|message you sent blocked"
    r"|не доставлено|недоставлен",
    re.IGNORECASE,
)
# The notice says that delivery failed (or is delayed).
_FAILURE_NOTICE = re.compile(
    r"could ?n[o']t be delivered|could not deliver|not (?:be )?delivered|undeliver|unable to deliver"
    r"|delivery (?:to the following recipients? )?(?:has )?(?:failed|been delayed|was aborted)"
    r"|delivery failed|failed permanently|permanent (?:fatal )?errors?|fatal errors?|did not reach"
    r"|could not be reached|has not yet been delivered|following address(?:es|\(es\))? (?:failed|had)"
    r"|(?:wasn't|was not) able to deliver|trouble delivering|delivery has failed|error has occurred while attempting"
    r"|is delayed|delivery problems|delivery errors|failure reasons|returned to you|error sending"
    r"|message delivery has failed|unable to be delivered|invalid user address|не может быть доставлено"
    r"|when delivering your message|incorrectly constructed|was aborted|transcript of session follows",
    re.IGNORECASE,
)
_DELAY_NOTICE = re.compile(
    r"has been delayed|has not yet been delivered|is delayed|warning message only|delivery will continue"
    r"|will be retried|temporary failure report|delivery attempts will continue",
    re.IGNORECASE,
)


def header_text(msg: Message, name: str) -> str:
    """A header's value as text: encoded words decoded, on one line ("" when absent)."""
    for key, value in msg.raw_items():
        if key.lower() == name:
            text = surrogates_to_text(str(value)[:MAX_HEADER_CHARS])
            return " ".join(decode_words(text, []).split())
    return ""


def part_text(part: Message) -> str:
    """A leaf part's decoded text (HTML reduced to its text), at most MAX_NOTICE_CHARS."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        payload = part.get_payload()
        return _at_most(surrogates_to_text(payload)) if isinstance(payload, str) else ""
    text = decode_text(data[: MAX_NOTICE_CHARS * 4], part.get_content_charset())[0]
    if part.get_content_type() == "text/html":
        text = html_to_text(text)
    return _at_most(text.replace("\r\n", "\n"))


def _at_most(text: str) -> str:
    """`text` cut to MAX_NOTICE_CHARS at a line end, so no address is cut in two."""
    if len(text) <= MAX_NOTICE_CHARS:
        return text
    cut = text.rfind("\n", 0, MAX_NOTICE_CHARS)
    return text[: cut if cut > 0 else MAX_NOTICE_CHARS]


def html_to_text(markup: str) -> str:
    """HTML notices (Office 365's) as lines of text: enough to find addresses and replies."""
    markup = _without_invisible(markup[:MAX_NOTICE_CHARS])
    markup = _BLOCK_TAG.sub("\n", markup)
    return html.unescape(_ANY_TAG.sub(" ", markup))


_BLOCK_TAG = re.compile(r"(?i)<br\s*/?>|</?(?:p|div|tr|li|h\d|table)\b[^<>]*>")
_ANY_TAG = re.compile(r"<[^<>]*>")
_INVISIBLE_TAGS = ("script", "style", "head")


def _without_invisible(markup: str) -> str:
    """`markup` without script, style and head elements (one forward pass, no backtracking)."""
    lowered = markup.lower()
    kept: list[str] = []
    position = 0
    while True:
        starts = [(lowered.find(f"<{tag}", position), tag) for tag in _INVISIBLE_TAGS]
        start, tag = min(((at, tag) for at, tag in starts if at >= 0), default=(-1, ""))
        if start < 0:
            kept.append(markup[position:])
            return "".join(kept)
        kept.append(markup[position:start])
        end = lowered.find(f"</{tag}", start)
        if end < 0:
            return "".join(kept)
        close = lowered.find(">", end)
        position = len(markup) if close < 0 else close + 1


def notice_text(msg: Message) -> tuple[str, str]:
    """(the notice for people, the rest: where the returned message's copy usually is).

    A multipart bounce's notice is its first non-empty text part outside any attached message;
    a single-part bounce's is its body up to the copy of the message.
    """
    if not msg.is_multipart():  # also a multipart whose boundary is missing or wrong
        body = part_text(msg) if msg.get_content_maintype() in {"text", "multipart"} else ""
        return _split_at_copy(body)
    fallback = ""
    for part in _leaves_outside_messages(msg):
        ctype = part.get_content_type()
        if part.get_content_maintype() == "multipart":  # its boundary is missing: read it as text
            ctype = "text/plain"
        if ctype == "text/plain" or (ctype.startswith("text/") and ctype not in _HEADER_TYPES):
            text = part_text(part)
            if not text.strip():
                continue
            if ctype == "text/html":
                fallback = fallback or text
                continue
            notice, rest = _split_at_copy(text)
            return notice, rest
    return _split_at_copy(fallback)


_HEADER_TYPES = frozenset({"text/rfc822-headers"})


def _leaves_outside_messages(msg: Message) -> list[Message]:
    leaves: list[Message] = []
    stack = [msg]
    while stack and len(leaves) < 64:
        part = stack.pop(0)
        if part.get_content_maintype() == "message":
            continue
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack = [child for child in payload if isinstance(child, Message)] + stack
        else:
            leaves.append(part)
    return leaves


def _split_at_copy(text: str) -> tuple[str, str]:
    found = _COPY_MARKERS.search(text)
    if found is None:
        return text, ""
    return text[: found.start()], text[found.start() :]


def looks_like_bounce(msg: Message, notice: str) -> bool:
    """Whether the envelope and headers look like an automatic delivery report."""
    if msg.get("x-failed-recipients"):
        return True
    return_path = header_text(msg, "return-path")
    sender = header_text(msg, "from")
    found = find_addresses(sender)
    local_part = found[0].rsplit("@", 1)[0] if found else sender.strip("<> ")
    evidence = (
        return_path.replace(" ", "") == "<>"
        or bool(_DAEMON_LOCAL_PART.match(local_part.strip('"')))
        or bool(_DAEMON_NAME.search(sender))
        or bool(_BOUNCE_SUBJECT.search(header_text(msg, "subject")))
        or _returns_a_message(msg)
    )
    return evidence and bool(_FAILURE_NOTICE.search(notice))


def _returns_a_message(msg: Message) -> bool:
    """Whether the message carries another (the returned one) as an attachment or its headers."""
    if not msg.is_multipart():
        return False
    return any(
        part.get_content_type() in {"message/rfc822", "text/rfc822-headers", "message/global"}
        for part in msg.get_payload()
        if isinstance(part, Message)
    )


def is_delay(notice: str) -> bool:
    """Whether the notice reports a delay (delivery still being tried), not a failure."""
    return bool(_DELAY_NOTICE.search(notice))


class Anchor(NamedTuple):
    """A line of the notice that names a recipient."""

    address: str
    line: int
    rest: str  # what follows the address on its line


class Notice:
    """A notice's lines, where they name recipients, and the words about each recipient."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.anchors: list[Anchor] = []
        self._by_address: dict[str, list[int]] = {}
        for number, line in enumerate(self.lines):
            if len(line) > 2000:
                continue
            found = _ADDRESS_LINE.match(line) or _RCPT_LINE.match(line) or _LEAD_IN.search(line)
            if found is not None:
                self._by_address.setdefault(found.group("address").lower(), []).append(len(self.anchors))
                self.anchors.append(Anchor(found.group("address"), number, found.group("rest")))

    @property
    def preamble(self) -> str:
        """The words before the first recipient ("delivery ... was aborted after 5 hours")."""
        return "\n".join(self.lines[: self.anchors[0].line]) if self.anchors else ""

    def text_for(self, address: str) -> str:
        """The words about one recipient: the text under each of its anchors ("" if none).

        Lotus Notes writes the reason *above* the address, Apache James the reply above a "RCPT
        TO:" summary line; when nothing (or no code) is said below an anchor and the lines since
        the previous anchor say more, they are taken too.
        """
        pieces: list[str] = []
        for index in self._by_address.get(address.lower(), []):
            anchor = self.anchors[index]
            end = self.anchors[index + 1].line if index + 1 < len(self.anchors) else len(self.lines)
            below = "\n".join([anchor.rest.lstrip(" \t:>"), *self.lines[anchor.line + 1 : end]])
            start = self.anchors[index - 1].line + 1 if index > 0 else 0
            above = "\n".join(self.lines[start : anchor.line])
            if not _says_something(below) or (not any(codes(below)) and any(codes(above))):
                below = above + "\n" + below
            pieces.append(below)
        return "\n".join(pieces)

    def whole_text(self) -> str:
        """The words about the notice's only recipient: Exim's list entry, else all of it."""
        return _exim_entry(self.lines) or "\n".join(self.lines)


def read_failures(msg: Message, notice: Notice, *, exclude: set[str]) -> list[Failure]:
    """The failed recipients a text notice names, each with its diagnostic; [] when none.

    `exclude` holds addresses that are not recipients (the bounce's own sender and addressee),
    lower-cased; they are kept only when the notice names no one else.
    """
    named = _failed_recipients_header(msg)
    if not named:
        kept = [
            anchor for anchor in notice.anchors if anchor.address.lower() not in exclude
        ] or notice.anchors
        seen: set[str] = set()
        for anchor in kept:
            if anchor.address.lower() not in seen:
                seen.add(anchor.address.lower())
                named.append(anchor.address)
    preamble = one_line(notice.preamble, EVIDENCE_CHARS)
    return [_failure_for(address, notice, preamble) for address in named]


def _failed_recipients_header(msg: Message) -> list[str]:
    found: list[str] = []
    seen: set[str] = set()
    for value in msg.get_all("x-failed-recipients") or []:
        for address in find_addresses(surrogates_to_text(str(value)[:MAX_HEADER_CHARS])):
            if address.lower() not in seen:
                seen.add(address.lower())
                found.append(address)
    return found


def _failure_for(address: str, notice: Notice, preamble: str) -> Failure:
    """The recipient's failure: the text under its anchors, else the whole notice.

    The notice's opening words are kept as context: they say why when the reply does not.
    """
    text = notice.text_for(address) or notice.whole_text()
    status, reply = codes(text)
    return Failure(
        recipient=address,
        status=status,
        reply_code=reply,
        diagnostic=one_line(text, EVIDENCE_CHARS),
        stage=smtp_stage(text),
        context=preamble,
    )


def _says_something(text: str) -> bool:
    """Whether text under an anchor holds a reason (not only blank lines or a date)."""
    words = re.findall(r"[^\W\d_]{3,}", text)
    return len(words) >= 2


def _exim_entry(lines: list[str]) -> str:
    """The indented reasons under Exim's "The following address(es) failed:" line."""
    for number, line in enumerate(lines):
        if _EXIM_LIST.search(line):
            entry: list[str] = []
            for following in lines[number + 1 :]:
                if following.strip() and not following.startswith(" "):
                    break
                entry.append(following)
            return "\n".join(entry)
    return ""


def addresses_in(text: str) -> list[str]:
    """Every address in `text`, in order."""
    return find_addresses(text)
