"""Failure rules: what the sink answers at RCPT TO for recipient addresses that match a pattern.

    PATTERN=REPLY[@N]            refuse at RCPT TO with REPLY
    PATTERN=bounce:REPLY[@N]     accept, then deliver an RFC 3464 DSN to the envelope sender

PATTERN is fnmatch-style (`*`, `?`, `[...]`) and matched against the lowercased address. REPLY is
`CODE [ENHANCED] [TEXT]`: a 4xx or 5xx code (5xx for bounces), an optional RFC 3463 status whose
class matches the code (`5.1.1` for 550), and text. `@N` fails only the first N attempts for each
address, then accepts it. The first rule that matches decides; 421 also closes the connection.

    *@unknown.test=550 5.1.1 user unknown
    full-*@*=452 4.2.2 mailbox full
    flaky-*@*=451 4.3.0 busy@2
    *@gone.test=bounce:550 5.1.1 user unknown
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

import msgspec

from mail.errors import ValidationError

# The pattern ends at the first "=" that a reply follows, so a pattern may hold "=" (VERP addresses).
_RULE = re.compile(r"^(?P<pattern>.+?)=(?P<bounce>bounce:)?(?P<reply>[45]\d\d(?:[ \t].*)?)$")
_REPLY = re.compile(
    r"^(?P<code>[45]\d\d)(?:[ \t]+(?P<status>[245]\.\d{1,3}\.\d{1,3})(?=[ \t]|$))?[ \t]*(?P<text>.*)$"
)
_ATTEMPTS = re.compile(r"@(\d+)$")


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    code: int
    status: str  # RFC 3463 enhanced status, "5.1.1"
    text: str

    @property
    def line(self) -> str:
        """The SMTP reply line, "550 5.1.1 user unknown"."""
        return f"{self.code} {self.status} {self.text}"


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    source: str  # as written, "full-*@*=452 4.2.2 mailbox full"
    pattern: str  # lowercased
    reply: Reply
    bounce: bool = False  # accept, then bounce with a DSN
    fail_attempts: int | None = None  # `@N`: fail the first N attempts per address, then accept


class Verdict(msgspec.Struct, frozen=True):
    """A rule's answer for one recipient: refuse at RCPT TO, or accept and bounce later."""

    rule: Rule

    @property
    def reply(self) -> Reply:
        return self.rule.reply

    @property
    def bounce(self) -> bool:
        return self.rule.bounce


def parse_reply(text: str) -> Reply:
    match = _REPLY.match(text.strip())
    if match is None:
        raise ValidationError(f"not an SMTP failure reply (4xx or 5xx): {text!r}", field="rule")
    code = int(match["code"])
    status = match["status"] or f"{code // 100}.0.0"
    if status[0] != str(code // 100):
        raise ValidationError(f"enhanced status {status} does not match reply code {code}", field="rule")
    return Reply(code=code, status=status, text=match["text"].strip() or "refused by rule")


def parse_rule(text: str) -> Rule:
    """One `PATTERN=REPLY[@N]` or `PATTERN=bounce:REPLY[@N]` (see the module docstring)."""
    source = text.strip()
    match = _RULE.match(source)
    if match is None:
        raise ValidationError(
            f"rule {text!r} is not PATTERN=REPLY (e.g. '*@unknown.test=550 5.1.1 user unknown')", field="rule"
        )
    reply_text = match["reply"]
    fail_attempts: int | None = None
    attempts = _ATTEMPTS.search(reply_text)
    if attempts is not None:
        fail_attempts = int(attempts[1])
        reply_text = reply_text[: attempts.start()]
        if fail_attempts < 1:
            raise ValidationError(f"rule {text!r}: @N needs N >= 1", field="rule")
    reply = parse_reply(reply_text)
    bounce = match["bounce"] is not None
    if bounce and reply.code < 500:
        raise ValidationError(f"rule {text!r}: a bounce reports a permanent failure (5xx)", field="rule")
    pattern = match["pattern"].strip().lower()
    if not pattern:
        raise ValidationError(f"rule {text!r} has no pattern", field="rule")
    return Rule(source=source, pattern=pattern, reply=reply, bounce=bounce, fail_attempts=fail_attempts)


def parse_rules(texts: Iterable[str]) -> list[Rule]:
    return [parse_rule(text) for text in texts]


class RuleSet:
    """Rules in order, and the per-address attempt counts of the `@N` rules."""

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self.rules = list(rules)
        self._matchers = [re.compile(fnmatch.translate(rule.pattern)).match for rule in self.rules]
        # (rule position, lowercased address) -> failed attempts so far; only for `@N` rules, and
        # only addresses that matched one, so it stays as small as the test's flaky addresses.
        self._attempts: dict[tuple[int, str], int] = {}

    @property
    def has_bounces(self) -> bool:
        return any(rule.bounce for rule in self.rules)

    def decide(self, address: str) -> Verdict | None:
        """The verdict for one RCPT TO, or None to accept; counts an attempt on `@N` rules."""
        if not self.rules:
            return None
        lowered = address.lower()
        for position, matches in enumerate(self._matchers):
            if matches(lowered) is None:
                continue
            rule = self.rules[position]
            if rule.fail_attempts is not None:
                key = (position, lowered)
                failed = self._attempts.get(key, 0)
                if failed >= rule.fail_attempts:
                    return None
                self._attempts[key] = failed + 1
            return Verdict(rule)
        return None
