"""One JSON line per bounce file, as `mailray bounces classify` prints them.

{"file", "is_bounce", "recipients", "status", "reply_code", "kind", "reason", "details"}: the
addresses that failed, the first one's codes and verdict at the top level (most bounces name
one recipient), and every recipient in `details`. A file that cannot be read, or that is not a
message the parser can take apart, is {"file", "error"} instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from mail.bounces.parse import parse_bounce
from mail.errors import MailrayError
from mail.mime import read_corpus_message
from models.bounces import BounceReport

_ENCODER = msgspec.json.Encoder()


def summarize(file: str, report: BounceReport) -> dict[str, Any]:
    """The line for a parsed bounce."""
    first = report.recipients[0] if report.recipients else None
    return {
        "file": file,
        "is_bounce": report.is_bounce,
        "recipients": [recipient.recipient for recipient in report.recipients],
        "status": first.status if first else "",
        "reply_code": first.reply_code if first else "",
        "kind": first.kind if first else None,
        "reason": first.reason if first else None,
        "details": msgspec.to_builtins(report.recipients),
    }


def summarize_file(file: str) -> tuple[dict[str, Any], bool]:
    """(the line for one file, whether it could be read and parsed)."""
    try:
        raw = read_corpus_message(Path(file))
    except OSError as error:
        return {"file": file, "error": f"unreadable: {error.strerror or error}"}, False
    try:
        report = parse_bounce(raw)
    except MailrayError as error:
        return {"file": file, "error": error.message}, False
    return summarize(file, report), True


def encode_line(line: dict[str, Any]) -> str:
    return _ENCODER.encode(line).decode("utf-8")
