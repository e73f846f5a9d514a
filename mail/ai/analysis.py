"""Everything the email AI reads from a message's text, beyond the classifier's heads.

The body is first made plain text (HTML rendered, line breaks normalised) and cut from its quoted
reply (mail.ai.text: ">" lines, "On ... wrote:", Outlook's header block). Entities are read from
what is left, signature included (the phone number and company are in it); sentences, questions,
action items, the summary and the replies from the body without its signature. The embedding
function is wrapped for the call so that the summary and the replies embed each sentence once.
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from datetime import datetime

from mail.ai.embedding import Embed, memoized
from mail.ai.entities import extract_entities
from mail.ai.replies import ResponseBank, suggest_replies
from mail.ai.sentences import find_action_items, find_questions, split_sentences
from mail.ai.summary import summarize
from mail.ai.text import html_to_text, looks_like_html, strip_quoted, strip_signature
from models.ai_analysis import ReplyContext, TextAnalysis

MAX_BODY_CHARS = 20_000  # of plain text, after HTML is rendered: about 3,500 words
MAX_HTML_CHARS = 200_000
_INVISIBLE = str.maketrans("", "", "\u00ad\u034f\u200b\u200c\u200d\u200e\u200f\u2060\ufeff")


def analyze_text(
    subject: str,
    body: str,
    sender_name: str,
    sender_email: str,
    *,
    embed: Embed,
    reference_date: datetime | None = None,
    context: ReplyContext | None = None,
    intents: Sequence[str] = (),
    default_region: str = "US",
    bank: ResponseBank | None = None,
) -> TextAnalysis:
    """Entities, action items, questions, summary, key points and suggested replies of one email.

    `intents` are the classifier's (a scheduling intent makes the replies offer a time);
    `reference_date` is when the email was sent, for relative dates ("tomorrow"); now by default.
    """
    reference = reference_date or datetime.now()
    with_signature, content = readable_body(body)
    embed = memoized(embed)
    sender = email.utils.formataddr((sender_name, sender_email)) if sender_name or sender_email else ""
    entities = extract_entities(
        f"{subject}\n\n{with_signature}" if subject.strip() else with_signature,
        reference_date=reference,
        default_region=default_region,
        addresses=[sender] if sender else [],
    )
    sentences = split_sentences(content)
    summary = summarize(sentences, embed, subject=subject)
    return TextAnalysis(
        entities=entities,
        action_items=find_action_items(sentences, reference_date=reference, default_region=default_region),
        questions=find_questions(sentences),
        summary=summary.summary,
        key_points=summary.key_points,
        suggested_responses=suggest_replies(
            content,
            subject,
            sender_name,
            context or ReplyContext(sender_name=sender_name),
            embed,
            intents=intents,
            bank=bank,
        ),
    )


def readable_body(body: str) -> tuple[str, str]:
    """The body as plain text without its quoted reply: with its signature, and without it."""
    body = body[:MAX_HTML_CHARS]
    if looks_like_html(body):
        body = html_to_text(body)
    body = body[:MAX_BODY_CHARS].translate(_INVISIBLE).replace("\r\n", "\n").replace("\r", "\n")
    lines = body.split("\n")
    unquoted = strip_quoted(lines)
    if not any(line.strip() for line in unquoted):
        # All of it was quote (a bare forward of a reply): the quoted words are better than nothing.
        unquoted = [line.lstrip("> ") for line in lines]
    content = strip_signature(list(unquoted))
    return "\n".join(unquoted).strip(), "\n".join(content).strip()
