"""What a bounce says about one failed recipient, before classification, and the codes in it.

Both readers (mail.bounces.dsn for RFC 3464 reports, mail.bounces.heuristics for the rest) turn a
bounce into `Failure`s; mail.bounces.classify turns each into a reason and a kind.

Receivers quote each other: Amazon SES writes "554 4.4.7 Message expired ...<421 4.4.2 Connection
timed out>", a relay writes "5.1.0 - Unknown address error 550-'5.7.1 ...'". The *last* reply
in such a diagnostic is the innermost one, the receiver's own words about the actual cause, so
`codes` keeps the last enhanced status code and the last reply code it finds.
"""

from __future__ import annotations

import re
import uuid

import msgspec

DIAGNOSTIC_CHARS = 500  # a reported diagnostic is cut to this length (on one line)
EVIDENCE_CHARS = 8000  # what classification reads of a recipient's text (a notice can ramble)

# An enhanced status code (RFC 3463): class 2/4/5, subject 0-7, detail up to 3 digits. Not part
# of a longer dotted number (an IP address, a version), so nothing dotted or alphanumeric may
# touch either end.
_STATUS = re.compile(r"(?<![\w.])([245]\.[0-7]\.\d{1,3})(?!\.?\d|\w)")
# An SMTP reply code: three digits 2xx/4xx/5xx followed by a space, "-", ":" or the end, and
# not part of a number, an address or an IP address.
_REPLY = re.compile(r"(?<![\w.\-=/:#])([245][0-5]\d)(?=[ \-:]|$)", re.MULTILINE)
_SPACES = re.compile(r"\s+")
# An address (a quoted local part allowed, a domain with a dot and a letter last). The lookbehind
# lets a match start only where a local part can begin, so a long run of letters with no "@" in
# it costs one pass, not one per starting position.
_LOCAL = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~.-"
ADDRESS = rf"(?:\"[^\"\s]{{1,64}}\"|(?<![{_LOCAL}])[{_LOCAL}]+)@(?:[A-Za-z0-9-]++\.)+[A-Za-z][A-Za-z0-9-]*"
_ANY_ADDRESS = re.compile(ADDRESS)

SmtpStage = str  # "connect", "helo", "mail", "rcpt", "data" or "" (unknown)

# Where in the SMTP conversation the receiver refused, as MTAs say it ("after RCPT TO",
# "in reply to end of DATA command", qmail's "RCPT TO response", Yahoo's "[RCPT_TO]").
_STAGES: list[tuple[SmtpStage, re.Pattern[str]]] = [
    ("data", re.compile(r"after end of data|after (?:the )?data\b|in reply to (?:end of )?data|"
                        r"\bdata command|\(data\)|\[data\]|failed after i sent the message|"
                        r"after end of (?:the )?message|\bdata response", re.IGNORECASE)),
    ("rcpt", re.compile(r"after rcpt to|in reply to rcpt to|rcpt to response|\[rcpt_to\]|"
                        r"rcpt command|does not like recipient|smtp:rcpt\b|rejected recipient",
                        re.IGNORECASE)),
    ("mail", re.compile(r"after mail from|in reply to mail from|mail from response|\[mail_from\]|"
                        r"sender was rejected|mail command", re.IGNORECASE)),
    ("helo", re.compile(r"after (?:helo|ehlo)|in reply to (?:helo|ehlo)|my name was rejected|"
                        r"while performing the helo", re.IGNORECASE)),
    ("connect", re.compile(r"after initial connection|greeting|after connect|refused to talk to me",
                           re.IGNORECASE)),
]  # fmt: skip


# Sendmail and Courier quote the session: ">>> RCPT To:<a@b>" then "<<< 550 5.1.1 ...".
_TRANSCRIPT_REFUSAL = re.compile(r"<<<\s*[45]\d\d")
_TRANSCRIPT_COMMAND = re.compile(r">>>\s*(DATA|RCPT|MAIL|HELO|EHLO)\b", re.IGNORECASE)
# With PIPELINING the RCPT TO refusal arrives after ">>> DATA" is sent; DATA's own reply then
# says there was no one to send to.
_PIPELINED_RCPT = re.compile(r"<<<\s*5\d\d\b.{0,40}no valid recipients", re.IGNORECASE)
_COMMAND_STAGES: dict[str, SmtpStage] = {
    "data": "data",
    "rcpt": "rcpt",
    "mail": "mail",
    "helo": "helo",
    "ehlo": "helo",
}


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    """One failed recipient as the bounce reports it; nothing inferred yet."""

    recipient: str
    status: str = ""  # enhanced status code from the report's Status field or the text
    reply_code: str = ""
    diagnostic: str = ""  # on one line, at most EVIDENCE_CHARS (cut to DIAGNOSTIC_CHARS when reported)
    action: str = ""  # the DSN Action, lower case
    remote_mta: str = ""
    stage: SmtpStage = ""
    diagnostic_type: str = ""  # the DSN's Diagnostic-Code type, lower case: "smtp", "x-unix", ...
    # Words around the failure that are not the receiver's reply (an MTA's own notice, such as
    # qmail's "Sorry, I couldn't find any host named ..."); classified when the reply says nothing.
    context: str = ""


def find_addresses(text: str) -> list[str]:
    """Every address in `text`, in order."""
    return _ANY_ADDRESS.findall(text)


def one_line(text: str, limit: int = DIAGNOSTIC_CHARS) -> str:
    """`text` on one line, runs of whitespace folded, cut to `limit` characters."""
    folded = _SPACES.sub(" ", text).strip()
    return folded if len(folded) <= limit else folded[: limit - 1].rstrip() + "…"


def last_status(text: str) -> str:
    """The last failure status code (4.x.x, 5.x.x) in `text`, else the last of any; "" if none."""
    return _last_failure(_STATUS.findall(text))


def last_reply_code(text: str) -> str:
    """The last failure reply code (4xx, 5xx) in `text`, else the last of any; "" if none.

    A transcript ends with "221 2.0.0 Bye": the refusal is the last code that is not a success.
    """
    return _last_failure(_REPLY.findall(text))


def _last_failure(found: list[str]) -> str:
    failures = [code for code in found if code[0] in "45"]
    if failures:
        return failures[-1]
    return found[-1] if found else ""


def codes(text: str, status_field: str = "") -> tuple[str, str]:
    """(status, reply code) for a diagnostic: the text's own codes over the report's Status field.

    A reply code whose class contradicts the status (a "554" under "4.0.0") is dropped: the
    reporting MTA decided the failure's class, and the stray code is often a greeting or a
    quoted earlier attempt.
    """
    status = last_status(text) or _valid_status(status_field)
    reply = last_reply_code(text)
    if status and reply and status[0] != reply[0]:
        reply = ""
    return status, reply


def _valid_status(value: str) -> str:
    found = _STATUS.search(value.strip())
    return found.group(1) if found else ""


def smtp_stage(text: str) -> SmtpStage:
    """The SMTP stage the text says the refusal came at ("" when it does not say)."""
    refused = _TRANSCRIPT_REFUSAL.search(text)
    if refused is not None:  # a session transcript: the command just before the first refusal
        if _PIPELINED_RCPT.search(text, refused.end()):
            return "rcpt"
        commands = _TRANSCRIPT_COMMAND.findall(text, 0, refused.start())
        if commands:
            return _COMMAND_STAGES.get(commands[-1].lower(), "")
    for stage, pattern in _STAGES:
        if pattern.search(text):
            return stage
    return ""


def campaign_id(value: str | None) -> str | None:
    """An X-Campaign-ID header's value as a campaign id (a UUID's text), or None."""
    try:
        return str(uuid.UUID(value.strip())) if value else None
    except ValueError:
        return None
