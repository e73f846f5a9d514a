"""Why a recipient bounced (a reason from models.bounces.BounceReason) and what to do (the kind).

The receiver's own words decide first, then the enhanced status code, then the reply code:

1. Phrases (`_PHRASES`, first match wins, most specific first). A code alone misleads too
   often: Postfix reports every remote refusal as 5.0.0, "550 5.2.1 ... User Unknown" is an
   unknown user whatever RFC 3463 says 5.2.1 means, and "5.7.1" covers everything from a block
   list to a DMARC failure. Phrases are read in the diagnostic, then in the words around it.
2. The status code's meaning (`_STATUS_REASONS`: RFC 3463 and RFC 7372 codes, plus the
   Microsoft 365 ones that come up in real bounces), most specific first (5.7.26, then 5.7).
3. The reply code alone (`_REPLY_REASONS`), for bounces that quote nothing else.

Then where in the SMTP conversation the refusal came refines it: a refusal after MAIL FROM is
about our sender address ("rejected"), one at the greeting or HELO is about our host
("blocked"), and an "unknown user" after DATA is the recipient's filter ("filtered"), since the
address was accepted at RCPT TO.

The kind follows from the reason (models.bounces explains the three kinds). Only a reason that
says the *address* is dead is hard: userunknown, hostunknown, hasmoved, notaccept (the domain
takes no mail) and suppressed. A 5.x.x code alone does not make a bounce hard: "552 5.2.2
mailbox full" and "550 5.7.1 blocked using Spamhaus" are permanent for this message, not for
the address. This is the line most bounce handlers draw (and the labelled corpus in
benchmarks/bounce_agreement.py draws): suppress an address on one hard bounce, and only after
repeated soft ones.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from mail.bounces.diagnostics import Failure, SmtpStage, one_line
from models.bounces import BouncedRecipient, BounceKind, BounceReason

HARD_REASONS: Final = frozenset({"userunknown", "hostunknown", "hasmoved", "notaccept", "suppressed"})
BLOCKED_REASONS: Final = frozenset(
    {
        "blocked",
        "badreputation",
        "requireptr",
        "authfailure",
        "securityerror",
        "spamdetected",
        "virusdetected",
        "policyviolation",
        "notcompliantrfc",
        "norelaying",
        "rejected",
    }
)


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    kind: BounceKind
    reason: BounceReason


def _phrases(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns), re.IGNORECASE)


# Postfix's bare "Recipient address rejected" (its own reason follows when it has one).
_ADDRESS_REJECTED: Final = _phrases(r"recipient address rejected", r"address rejected")

# (reason, pattern): first match wins, so narrower phrases come before the broader ones they
# would otherwise lose to ("mailbox is full" before "quota", "recipient account is blocked"
# before "blocked", "DMARC policy" before "policy").
_PHRASES: Final[list[tuple[BounceReason, re.Pattern[str]]]] = [
    # A local delivery program (procmail, a pipe) failed; a full disk is still a full mailbox.
    ("mailboxfull", _phrases(r"x-unix.*(?:quota|disk full|no space)")),
    ("mailererror", _phrases(r"pipe to \|", r"\bprocmail\b", r"command output", r"\bx-unix\b",
                             r"local delivery (?:program|agent)", r"mailer error", r"\bmaildrop\b")),
    # The provider will not try: the address bounced as unknown before (Amazon SES's words).
    ("suppressed", _phrases(r"suppressed sending to this address", r"on (?:the|your) (?:account-level )?suppression list")),
    # KDDI (au, ezweb) refuses after DATA with an empty address when the recipient's own
    # reception filter, not the directory, refuses the sender.
    ("filtered", _phrases(r"\b[45]\d\d\s*:?\s*:\s*user unknown")),
    # DNS trouble that says "try again" is not a missing domain.
    ("networkerror", _phrases(r"host not found, try again", r"dns query failed",
                              r"malformed or unexpected name server reply", r"name server (?:timeout|failure)",
                              r"temporary (?:dns|lookup) failure", r"servfail")),
    ("notaccept", _phrases(r"null mx", r"no mx (?:record )?(?:found )?for", r"no mx record",
                           r"couldn't find a mail exchanger", r"indicated no smtp service",
                           r"does not accept (?:e-?)?mail", r"accepts no mail")),
    ("hasmoved", _phrases(r"no longer on (?:this )?server", r"(?:mailbox|address|user) has (?:been )?moved",
                          r"address has changed")),
    ("suspend", _phrases(r"account (?:is |has been )?(?:disabled|suspended|locked|inactive|deactivated|frozen|expired)",
                         r"(?:mailbox|user|account) (?:is )?(?:temporar(?:y|ily) )?(?:disabled|suspended|frozen|locked)",
                         r"disabled or discontinued", r"temporar(?:y|ily) locked", r"recipient account is blocked",
                         r"compte du destinataire est bloque", r"mailbox (?:is )?inactive",
                         r"email account that you tried to reach is disabled")),
    ("mailboxfull", _phrases(r"mail ?box (?:is )?full", r"mailbox full", r"over ?quota", r"quota exceeded",
                             r"exceeded? (?:the |his |her |their )?(?:storage|mailbox|disk|mail) ?(?:quota|limit|allocation|size)",
                             r"disk quota", r"storage quota", r"insufficient (?:disk )?(?:space|storage)",
                             r"mailbox size limit", r"(?:mailbox|inbox) (?:is )?over", r"full mailbox",
                             r"number of messages in recipient's mailbox exceeded", r"user is over",
                             r"not enough (?:storage|space)", r"mailfolder is full", r"account is full",
                             r"too many messages in (?:this|the) mailbox")),
    ("exceedlimit", _phrases(r"exceeds? (?:the )?limit set by (?:the )?recipient",
                             r"exceeds? (?:the )?(?:per-?)?(?:mailbox|recipient)'?s? (?:message )?size limit")),
    ("mesgtoobig", _phrases(r"message (?:is )?too (?:big|large)", r"message size exceeds",
                            r"exceeds? (?:the )?(?:maximum|max|fixed) (?:allowed )?(?:message )?size",
                            r"message length exceeds", r"line limit exceeded", r"too much mail data",
                            r"size limit exceeded", r"message file too big")),
    # Our envelope sender, refused (before "address rejected" reads as the recipient's).
    ("rejected", _phrases(r"sender (?:address )?rejected", r"domain of sender address", r"unroutable sender",
                          r"sender (?:address |domain )?(?:does not exist|is invalid|unknown|verify failed)",
                          r"invalid sender", r"bad sender", r"from: domain is invalid",
                          r"purported responsible address", r"not a member", r"not allowed to post")),
    ("contenterror", _phrases(r"duplicate header")),  # "Duplicate header 'DKIM-Signature'" is no DKIM failure
    ("authfailure", _phrases(r"\bdmarc\b", r"\bspf\b", r"\bdkim\b", r"sender policy framework",
                             r"authentication checks? failed")),
    ("requireptr", _phrases(r"reverse dns", r"\bptr\b", r"\brdns\b", r"reverse lookup",
                            r"unverif(?:y|i)able sending ip", r"without a valid sender domain")),
    # The address: an unknown domain or user.
    ("hostunknown", _phrases(r"host or domain name not found", r"domain (?:name )?(?:does not exist|not found|unknown)",
                             r"no such domain", r"unrouteable address", r"couldn't find any host named",
                             r"unknown host", r"host unknown", r"invalid domain", r"domain is not valid",
                             r"account or domain may not exist", r"name service error .*host not found",
                             r"\bnxdomain\b", r"\b[45]\d\d [a-z0-9.-]+\.[a-z]{2,} does not exist")),
    ("userunknown", _phrases(r"user unknown", r"unknown user", r"no such (?:user|mailbox|recipient|account|address|person)",
                             r"(?:user|mailbox|recipient|address|account|addressee) (?:does not|doesn't|not) exist",
                             r"(?:user|mailbox|recipient|addressee) (?:is )?unknown", r"(?:user|recipient|mailbox) not found",
                             r"recipient address rejected: (?:undeliverable address|access denied)",
                             r"unknown (?:recipient|local ?part|mailbox|or illegal)", r"recip(?:ient)?notfound",
                             r"recipient name is not recognized", r"not listed in [^.]{0,40}(?:directory|address book)",
                             r"no mailbox here", r"invalid (?:recipient|mailbox|user)", r"bad destination mailbox",
                             r"inactive (?:email|e-mail|mail) ?(?:address|account)", r"doesn't have an? \S+ account",
                             r"destinataire invalide", r"illegal alias", r"user not exist",
                             r"email account that you tried to reach does not exist",
                             r"no longer (?:a valid|active|available)", r"not a valid (?:mailbox|user|recipient)",
                             r"mailbox unavailable", r"not our customer", r"is not a known user",
                             r"(?:address|user|recipient|mailbox) (?:you entered )?(?:wasn't|was not|couldn't be|could not be) found",
                             r"ディレクトリのリストにありません", r"見つかりません")),
    # The sender: its host, its reputation, its rate, its content.
    ("badreputation", _phrases(r"reputation", r"user complaints", r"unexpected volume")),
    ("speeding", _phrases(r"receiving mail at a rate", r"rate that prevents additional",
                          r"(?:sending|too) (?:too )?fast")),
    ("toomanyconn", _phrases(r"too many (?:connections|concurrent|sessions|recipients|hosts|messages from)",
                             r"connection rate limit", r"rate limit exceeded", r"\bthrottl")),
    ("norelaying", _phrases(r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited|not allowed)",
                            r"not (?:configured|permitted|allowed) to relay", r"unable to relay",
                            r"email address is not verified")),
    ("virusdetected", _phrases(r"\bvirus", r"malware", r"\binfected", r"\btrojan")),
    ("blocked", _phrases(r"blocked using", r"black ?listed", r"block ?list", r"\bblocked\b", r"\bbloquee?\b",
                         r"(?<!not )listed (?:in|on|at|by)", r"spamhaus", r"spamcop", r"\bsorbs\b", r"dnsbl", r"\brbl\b",
                         r"banned sending ip", r"client host rejected", r"invalid ip for sending",
                         r"messages from \S+ (?:weren't|were not|are not) (?:sent|accepted)",
                         r"use the smtp server of your isp", r"relay quota", r"not allowed to send")),
    ("spamdetected", _phrases(r"\bspam", r"\bube\b", r"unsolicited", r"bulk (?:e-?)?mail", r"junk mail")),
    ("notcompliantrfc", _phrases(r"multiple addresses in from", r"\brfc ?(?:5322|2822)\b", r"not rfc compliant",
                                 r"bare (?:lf|linefeed)", r"not compliant with")),
    ("contenterror", _phrases(r"content (?:rejected|error)", r"media not supported", r"conversion (?:failed|required)")),
    ("securityerror", _phrases(r"unauthenticated senders?", r"authentication required", r"must authenticate",
                               r"(?:tls|encryption|starttls) (?:is )?required", r"certificate")),
    ("policyviolation", _phrases(r"polic(?:y|ies)", r"protocol violation", r"header error", r"prohibited",
                                 r"not allowed")),
    ("filtered", _phrases(r"filtered", r"content filter", r"rejected by (?:the )?(?:recipient'?s? )?filter")),
    ("syntaxerror", _phrases(r"syntax error", r"command (?:parameter )?not (?:implemented|recognized)",
                             r"unrecognized command", r"malformed (?:recipient )?address", r"bad command")),
    # Greylisting: a first attempt deferred on purpose, before "address rejected" reads as unknown.
    ("onhold", _phrases(r"gr[ae]y-?list")),
    # Postfix's bare "Recipient address rejected": an unknown address when permanent; a deferral
    # (4xx) is not taken for a dead address on these words alone.
    ("userunknown", _ADDRESS_REJECTED),
    # Time and transport. qmail's "in the queue too long" closes many notices whatever the
    # cause, so it counts only when nothing else is said.
    ("expired", _phrases(r"retry timeout exceeded", r"message expired", r"envelope expired", r"delivery time expired",
                         r"too long in (?:the )?queue", r"failing for a long time", r"multiple retries",
                         r"was aborted after", r"did not accept our requests to connect", r"timed? ?out")),
    ("networkerror", _phrases(r"network error", r"lost connection", r"(?:wasn't|was not|unable to) (?:able to )?establish",
                              r"routing loop", r"hop count exceeded", r"name service error", r"socket error",
                              r"could not connect", r"unable to connect", r"connection (?:refused|reset|dropped)")),
    ("systemerror", _phrases(r"system error", r"internal (?:server |system )?error", r"queue file write error",
                             r"transaction failed", r"server error", r"service (?:is )?(?:unavailable|not available)",
                             r"local error", r"could not load", r"unable to contact", r"mail system problem",
                             r"loop", r"duplicated message-id", r"resources? temporarily unavailable",
                             r"try (?:again )?later")),
    ("expired", _phrases(r"in the queue too long", r"giving up")),
]  # fmt: skip
# "550-5.7.1 ... 550 5.7.1 ..." continuation prefixes inside a multi-line reply split phrases.
_CONTINUATION = re.compile(r"(?<=\S)\s+[245]\d\d[- ][245]\.\d{1,3}\.\d{1,3}\s+")

# Enhanced status codes: the full code first, then "class.subject" (RFC 3463, RFC 7372, RFC 7505).
_STATUS_REASONS: Final[dict[str, BounceReason]] = {
    "x.1.0": "userunknown", "x.1.1": "userunknown", "x.1.2": "hostunknown", "x.1.3": "userunknown",
    "x.1.4": "userunknown", "x.1.6": "hasmoved", "x.1.7": "rejected", "x.1.8": "rejected",
    "x.1.9": "systemerror", "x.1.10": "notaccept",
    "x.2.0": "filtered", "x.2.1": "suspend", "x.2.2": "mailboxfull", "x.2.3": "exceedlimit", "x.2.4": "filtered",
    "x.3.0": "systemerror", "x.3.1": "systemfull", "x.3.2": "systemerror", "x.3.3": "systemerror",
    "x.3.4": "mesgtoobig", "x.3.5": "systemerror",
    "x.4.0": "networkerror", "x.4.1": "networkerror", "x.4.2": "networkerror", "x.4.3": "systemerror",
    "5.4.4": "hostunknown", "4.4.4": "networkerror", "x.4.5": "toomanyconn", "x.4.6": "networkerror",
    "x.4.7": "expired",
    "x.5.1": "syntaxerror", "x.5.2": "syntaxerror", "x.5.3": "toomanyconn", "x.5.4": "syntaxerror",
    "x.5.5": "systemerror", "x.5.6": "securityerror",
    "x.6": "contenterror",
    "x.7.0": "securityerror", "x.7.1": "blocked", "x.7.2": "filtered", "x.7.13": "suspend",
    "x.7.15": "securityerror", "x.7.16": "mesgtoobig", "x.7.17": "hasmoved", "x.7.18": "hasmoved",
    "x.7.20": "authfailure", "x.7.21": "authfailure", "x.7.22": "authfailure", "x.7.23": "authfailure",
    "x.7.24": "authfailure", "x.7.25": "requireptr", "x.7.26": "authfailure", "x.7.27": "rejected",
    # Microsoft 365: 5.7.509 DMARC reject, 5.7.5xx/6xx access denied (banned IP, tenant block),
    # 4.7.650 deferred for IP reputation.
    "x.7.509": "authfailure", "x.7.650": "badreputation",
    "x.7": "securityerror",
}  # fmt: skip
_MICROSOFT_BLOCKS = re.compile(r"[45]\.7\.(?:5\d\d|6[0-4]\d|7\d\d)")

_REPLY_REASONS: Final[dict[str, BounceReason]] = {
    "421": "systemerror", "450": "onhold", "451": "systemerror", "452": "mailboxfull",
    "500": "syntaxerror", "501": "syntaxerror", "502": "syntaxerror", "503": "syntaxerror",
    "504": "syntaxerror", "530": "securityerror", "535": "securityerror", "550": "onhold",
    "551": "userunknown", "552": "mailboxfull", "553": "userunknown", "554": "onhold",
}  # fmt: skip

# A refusal after MAIL FROM concerns our sender address, not the recipient's.
_ABOUT_SENDER_AT_MAIL: Final = frozenset(
    {"userunknown", "hostunknown", "filtered", "onhold", "undefined", "syntaxerror", "blocked"}
)
# Reasons a refusal at the greeting or HELO is too vague to keep: it is about our host.
_VAGUE_AT_CONNECT: Final = frozenset(
    {
        "onhold",
        "undefined",
        "rejected",
        "userunknown",
        "hostunknown",
        "syntaxerror",
        "filtered",
        "systemerror",
    }
)
# Words that make a refusal at MAIL FROM about our host rather than our address.
_SENDER_BLOCK_WORDS = re.compile(r"\bip\b|\bisp\b|block|listed", re.IGNORECASE)


def reason_from_text(text: str, *, temporary: bool = False) -> BounceReason | None:
    """The reason a diagnostic's words give, or None; `temporary`: the codes say 4xx."""
    if not text:
        return None
    text = _CONTINUATION.sub(" ", text)
    for reason, pattern in _PHRASES:
        if temporary and pattern is _ADDRESS_REJECTED:
            continue
        if pattern.search(text):
            return reason
    return None


def reason_from_status(status: str) -> BounceReason | None:
    """The reason an enhanced status code gives by its registered meaning, or None."""
    parts = status.split(".")
    if len(parts) != 3 or parts[0] not in {"4", "5"}:
        return None
    generic = "x." + ".".join(parts[1:])
    for key in (status, generic):
        if key in _STATUS_REASONS:
            return _STATUS_REASONS[key]
    if _MICROSOFT_BLOCKS.fullmatch(status):
        return "blocked"
    if parts[1:] == ["0", "0"] or (parts[1] == "5" and parts[2] == "0"):
        return None  # "other or undefined": says nothing
    return _STATUS_REASONS.get(f"x.{parts[1]}")


def classify(
    status: str = "",
    reply_code: str = "",
    diagnostic: str = "",
    *,
    stage: SmtpStage = "",
    context: str = "",
    action: str = "",
) -> Verdict:
    """The reason and kind for one failed recipient."""
    temporary = (status or reply_code).startswith("4")
    reason = (
        reason_from_text(diagnostic, temporary=temporary)
        or reason_from_text(context, temporary=temporary)
        or reason_from_status(status)
        or _REPLY_REASONS.get(reply_code)
    )
    reason = _by_stage(reason, stage, diagnostic)
    if reason is None or reason == "onhold":
        reason = "expired" if action in {"delayed", "delay"} else (reason or "undefined")
    return Verdict(kind=kind_of(reason), reason=reason)


def _by_stage(reason: BounceReason | None, stage: SmtpStage, diagnostic: str) -> BounceReason | None:
    if stage == "mail" and (reason is None or reason in _ABOUT_SENDER_AT_MAIL):
        return "blocked" if _SENDER_BLOCK_WORDS.search(diagnostic) and reason != "userunknown" else "rejected"
    if stage in {"connect", "helo"} and (reason is None or reason in _VAGUE_AT_CONNECT):
        return "blocked"
    if stage == "data" and reason == "userunknown":
        return "filtered"
    return reason


def kind_of(reason: BounceReason) -> BounceKind:
    """hard for a dead address, blocked for a refused sender, soft for the rest."""
    if reason in HARD_REASONS:
        return "hard"
    if reason in BLOCKED_REASONS:
        return "blocked"
    return "soft"


def classify_failure(failure: Failure) -> BouncedRecipient:
    """A failure from a DSN or a text bounce, classified."""
    verdict = classify(
        failure.status,
        failure.reply_code,
        " ".join(part for part in (failure.diagnostic_type, failure.diagnostic) if part),
        stage=failure.stage,
        context=failure.context,
        action=failure.action,
    )
    return BouncedRecipient(
        recipient=failure.recipient,
        kind=verdict.kind,
        reason=verdict.reason,
        status=failure.status,
        reply_code=failure.reply_code,
        diagnostic=one_line(failure.diagnostic),
        action=failure.action,
        remote_mta=failure.remote_mta,
    )
