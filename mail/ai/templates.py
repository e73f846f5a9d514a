"""Email templates written locally: a structure per purpose, slots from the request's context,
the tone and length asked for, and the same template in three other tones.

Every purpose has its parts (opening, core, detail, extra, call to action) written in three
registers: formal (the formal and professional tones), warm (friendly and casual) and
enthusiastic. The length picks the paragraphs: short is one paragraph (the first sentence of the
opening, core and call to action), medium three (opening, core, call to action), long five (with
detail and extra). The tone also picks the greeting and the sign-off, and the formal tone writes
no contractions. Unknown purposes get a generic structure built around `topic` and `details`.

Slots come from the context (recipientName, companyName, lastInteraction, nextStep, senderName,
senderCompany, productName, topic, proposedTime, meetingLength, deadline, item, eventName,
eventDate, introduceeName, introduceeRole, issue, resolution, announcement, reason, details,
link). A sentence that needs an optional slot the context lacks (eventDate, link, ...) is left
out. Without a recipient name or company the template keeps campaign placeholders
(`{{firstName | there}}`, `{{company | your team}}`, see mail.campaigns.personalize), so it can be
sent to a list as it is.

Context values are untrusted: control characters and line breaks are removed, and `body_html` is
the text's paragraphs with every character escaped (a `link` that is an http(s) URL becomes the
only markup: an anchor to itself).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Literal

from models.ai_analysis import GeneratedTemplate, TemplateRequest, TemplateVariations, Tone

Register = Literal["formal", "warm", "enthusiastic"]
Part = Literal["subject", "opening", "core", "detail", "extra", "action"]
Texts = Mapping[Register, Mapping[Part, tuple[str, ...]]]

PURPOSES: dict[str, Texts] = {
    "follow_up": {
        "formal": {
            "subject": ("Following up: {next_step_title}",),
            "opening": (
                "Thank you again for your time during {last}.",
                "I hope it was useful for {company}.",
            ),
            "core": (
                "As promised, I am following up on {next_step}.",
                "I would be glad to answer any questions that came up since we spoke.",
            ),
            "detail": (
                "To recap, we discussed how {product} could support {company} and what a first phase might look like.",
            ),
            "extra": (
                "You can find the material we discussed here: {link}.",
                "If it helps, I can also share a short summary for your colleagues.",
            ),
            "action": ("Would you have time {time} to discuss {next_step}?",),
        },
        "warm": {
            "subject": ("Quick follow-up: {next_step_title}",),
            "opening": (
                "Thanks again for {last}, I really enjoyed it.",
                "Hope the rest of your week went well.",
            ),
            "core": ("I wanted to follow up on {next_step}.", "Happy to answer anything that came up since."),
            "detail": (
                "We talked about how {product} could help {company}, and I think there's a good fit.",
            ),
            "extra": (
                "Here's the link to what we looked at: {link}.",
                "I can also put together a short summary for your team.",
            ),
            "action": ("Could we find a few minutes {time} to go over {next_step}?",),
        },
        "enthusiastic": {
            "subject": ("Great connecting! Next up: {next_step_title}",),
            "opening": ("Thanks so much for {last}!", "It was great to learn more about {company}."),
            "core": (
                "I'm excited to keep things moving on {next_step}!",
                "I'm happy to answer any questions along the way.",
            ),
            "detail": ("I really think {product} could make a big difference for {company}.",),
            "extra": (
                "Here's everything we looked at: {link}.",
                "I'd love to share a short summary with your team, too!",
            ),
            "action": ("Can we find time {time} to dive into {next_step}?",),
        },
    },
    "introduction": {
        "formal": {
            "subject": ("Introduction from {our}",),
            "opening": (
                "I hope this message finds you well.",
                "My name is {sender_signature}, and I work with {our}.",
            ),
            "core": ("I am reaching out because we help teams like {company} with {topic}.",),
            "detail": (
                "Our customers typically use {product} to save time and to make their work more predictable.",
            ),
            "extra": (
                "You can learn more about our work here: {link}.",
                "I would be happy to share examples relevant to {company}.",
            ),
            "action": ("Would you be open to a brief call {time} to see whether this is relevant for you?",),
        },
        "warm": {
            "subject": ("Hello from {our}",),
            "opening": ("Hope you're doing well!", "I'm {sender_signature} from {our}."),
            "core": ("I'm reaching out because we help teams like {company} with {topic}.",),
            "detail": ("Most of our customers use {product} to save time and keep things simple.",),
            "extra": (
                "Here's a quick overview: {link}.",
                "Happy to share a few examples that fit {company}.",
            ),
            "action": ("Would you be up for a quick chat {time}?",),
        },
        "enthusiastic": {
            "subject": ("Excited to connect with {company}!",),
            "opening": ("I hope you're having a great week!", "I'm {sender_signature} from {our}."),
            "core": ("I'd love to show you how we help teams like {company} with {topic}!",),
            "detail": ("Teams that use {product} save hours every week, and I think {company} could too.",),
            "extra": (
                "Take a look here: {link}.",
                "I'd be thrilled to share a few examples made for {company}!",
            ),
            "action": ("Could we grab a quick call {time}?",),
        },
    },
    "meeting_request": {
        "formal": {
            "subject": ("Meeting request: {topic_title}",),
            "opening": ("I hope you are well.",),
            "core": (
                "I would like to schedule a meeting to discuss {topic}.",
                "I expect it to take about {length}.",
            ),
            "detail": ("The goal would be to agree on priorities for {company} and on the next steps.",),
            "extra": ("I am happy to prepare an agenda in advance.", "The details are here: {link}."),
            "action": ("Would {time} suit you? If not, please suggest a time that works better.",),
        },
        "warm": {
            "subject": ("Time to chat about {topic_title}?",),
            "opening": ("Hope you're having a good week!",),
            "core": ("I'd love to set up some time to talk about {topic}.", "It should take about {length}."),
            "detail": ("We could go over what matters most for {company} and figure out next steps.",),
            "extra": ("I'll bring a short agenda.", "Here's some background: {link}."),
            "action": ("Does {time} work for you? Happy to move it if not.",),
        },
        "enthusiastic": {
            "subject": ("Let's meet about {topic_title}!",),
            "opening": ("I hope you're having a fantastic week!",),
            "core": ("I'd love to get together to talk about {topic}!", "It'll only take about {length}."),
            "detail": ("I have some ideas for {company} that I can't wait to share.",),
            "extra": (
                "I'll come with a short agenda so we make the most of it.",
                "Here's a sneak peek: {link}.",
            ),
            "action": ("Would {time} work for you?",),
        },
    },
    "proposal": {
        "formal": {
            "subject": ("Proposal for {company}",),
            "opening": ("Thank you for the opportunity to work with {company}.",),
            "core": (
                "Please find our proposal for {topic} below.",
                "It reflects what we discussed during {last}.",
            ),
            "detail": ("The proposal covers the scope, the timeline and the investment of {amount}.",),
            "extra": (
                "The full document is available here: {link}.",
                "We are happy to adjust the scope to your priorities.",
            ),
            "action": ("Could we schedule time {time} to review it together and agree on {next_step}?",),
        },
        "warm": {
            "subject": ("Our proposal for {company}",),
            "opening": ("Thanks for thinking of us!",),
            "core": ("Here's our proposal for {topic}.", "It builds on what we talked about during {last}."),
            "detail": ("It covers scope, timeline and pricing ({amount}).",),
            "extra": ("You can read the full version here: {link}.", "We're flexible and happy to tweak it."),
            "action": ("Want to go through it together {time}?",),
        },
        "enthusiastic": {
            "subject": ("Your proposal is ready, {company}!",),
            "opening": ("We're thrilled about the chance to work with {company}!",),
            "core": (
                "Here's our proposal for {topic}!",
                "It builds on everything we discussed during {last}.",
            ),
            "detail": ("It lays out the scope, the timeline and the investment ({amount}).",),
            "extra": ("Dive into the full version here: {link}.", "We'd love to shape it around your goals!"),
            "action": ("Can we walk through it together {time}?",),
        },
    },
    "thank_you": {
        "formal": {
            "subject": ("Thank you, {name}",),
            "opening": ("Thank you for {reason}.",),
            "core": ("It is much appreciated by everyone at {our}.",),
            "detail": ("Your support made a real difference for us.",),
            "extra": ("We look forward to continuing to work with {company}.",),
            "action": ("Please let me know if there is anything I can do in return.",),
        },
        "warm": {
            "subject": ("Thanks, {name}!",),
            "opening": ("Just wanted to say thanks for {reason}.",),
            "core": ("It means a lot to all of us at {our}.",),
            "detail": ("It really made a difference.",),
            "extra": ("Looking forward to working together more.",),
            "action": ("Let me know if I can ever return the favor.",),
        },
        "enthusiastic": {
            "subject": ("A huge thank you, {name}!",),
            "opening": ("Thank you so much for {reason}!",),
            "core": ("Everyone at {our} is grateful!",),
            "detail": ("It made a huge difference for us.",),
            "extra": ("We can't wait to keep working with {company}!",),
            "action": ("If there's ever anything I can do for you, just say the word!",),
        },
    },
    "check_in": {
        "formal": {
            "subject": ("Checking in",),
            "opening": ("I hope all is well at {company}.",),
            "core": ("I wanted to check in and see how things are going with {product}.",),
            "detail": (
                "It has been a while since {last}, and I would like to make sure you have everything you need.",
            ),
            "extra": ("Our latest updates are summarised here: {link}.",),
            "action": ("Is there anything we could help with at the moment?",),
        },
        "warm": {
            "subject": ("Checking in",),
            "opening": ("Hope things are going well at {company}!",),
            "core": ("Just checking in to see how things are going with {product}.",),
            "detail": (
                "It's been a little while since {last}, so I wanted to make sure you've got what you need.",
            ),
            "extra": ("Here's what's new on our side: {link}.",),
            "action": ("Anything I can help with right now?",),
        },
        "enthusiastic": {
            "subject": ("Checking in, {name}!",),
            "opening": ("I hope things are going great at {company}!",),
            "core": ("I'd love to hear how things are going with {product}!",),
            "detail": (
                "It's been a bit since {last}, and I want to make sure you have everything you need.",
            ),
            "extra": ("We've shipped some exciting updates: {link}.",),
            "action": ("Is there anything I can help with?",),
        },
    },
    "reminder": {
        "formal": {
            "subject": ("Reminder: {item_title}",),
            "opening": ("This is a friendly reminder about {item}.",),
            "core": ("Please note that it is due by {deadline}.",),
            "detail": ("If it has already been taken care of, please disregard this message.",),
            "extra": ("You can find the details here: {link}.",),
            "action": ("Please let me know if you have any questions.",),
        },
        "warm": {
            "subject": ("Reminder: {item_title}",),
            "opening": ("Just a quick reminder about {item}.",),
            "core": ("It's due by {deadline}.",),
            "detail": ("If you've already sorted it, please ignore this one!",),
            "extra": ("Here's the link: {link}.",),
            "action": ("Let me know if anything's unclear.",),
        },
        "enthusiastic": {
            "subject": ("Heads up: {item_title}!",),
            "opening": ("A quick heads-up about {item}!",),
            "core": ("It's due by {deadline}, and we're almost there!",),
            "detail": ("If you've already done it, thank you!",),
            "extra": ("Everything you need is here: {link}.",),
            "action": ("Just reach out if you have any questions!",),
        },
    },
    "apology": {
        "formal": {
            "subject": ("Our apologies regarding {issue_title}",),
            "opening": ("Please accept our sincere apologies for {issue}.",),
            "core": ("I understand the inconvenience this has caused {company}.", "{resolution}."),
            "detail": (
                "We have reviewed what happened and are taking steps to prevent it from happening again.",
            ),
            "extra": ("The full incident report is available here: {link}.",),
            "action": (
                "If there is anything else we can do, please do not hesitate to contact me directly.",
            ),
        },
        "warm": {
            "subject": ("Sorry about {issue_title}",),
            "opening": ("I'm really sorry about {issue}.",),
            "core": ("I know it caused trouble for {company}.", "{resolution}."),
            "detail": ("We've looked into what went wrong and we're making sure it doesn't happen again.",),
            "extra": ("Here's the full write-up: {link}.",),
            "action": ("If there's anything else I can do, just let me know.",),
        },
        "enthusiastic": {
            "subject": ("We're sorry, and here's what we're doing about it",),
            "opening": ("I'm so sorry about {issue}.",),
            "core": ("We know it caused trouble for {company}, and we're on it.", "{resolution}!"),
            "detail": ("We've dug into what went wrong and we're making things even better.",),
            "extra": ("Here's the full story: {link}.",),
            "action": ("Reach out anytime if there's anything else we can do!",),
        },
    },
    "announcement": {
        "formal": {
            "subject": ("Announcement: {announcement_title}",),
            "opening": ("I am pleased to share some news from {our}.",),
            "core": ("{announcement_sentence}.",),
            "detail": ("We believe this will be of real value to {company}.",),
            "extra": ("You can read more here: {link}.",),
            "action": ("Please let me know if you would like to discuss what this means for you.",),
        },
        "warm": {
            "subject": ("News from {our}: {announcement_title}",),
            "opening": ("We've got some news to share!",),
            "core": ("{announcement_sentence}.",),
            "detail": ("We think {company} is going to like it.",),
            "extra": ("More details here: {link}.",),
            "action": ("Happy to chat about what it means for you.",),
        },
        "enthusiastic": {
            "subject": ("Big news: {announcement_title}!",),
            "opening": ("We have some exciting news!",),
            "core": ("{announcement_sentence}!",),
            "detail": ("We can't wait for {company} to try it!",),
            "extra": ("Get all the details here: {link}.",),
            "action": ("I'd love to show you what it means for you!",),
        },
    },
    "generic": {
        "formal": {
            "subject": ("{purpose_title}: {topic_title}",),
            "opening": ("I hope this message finds you well.",),
            "core": ("I am writing regarding {topic}.",),
            "detail": ("{details_sentence}.",),
            "extra": ("Further information is available here: {link}.",),
            "action": ("Please let me know how you would like to proceed.",),
        },
        "warm": {
            "subject": ("{purpose_title}: {topic_title}",),
            "opening": ("Hope you're doing well!",),
            "core": ("I'm writing about {topic}.",),
            "detail": ("{details_sentence}.",),
            "extra": ("Here's more info: {link}.",),
            "action": ("Let me know what you think.",),
        },
        "enthusiastic": {
            "subject": ("{purpose_title}: {topic_title}!",),
            "opening": ("I hope you're having a great day!",),
            "core": ("I'm excited to reach out about {topic}!",),
            "detail": ("{details_sentence}.",),
            "extra": ("Check out more here: {link}.",),
            "action": ("I'd love to hear what you think!",),
        },
    },
}
PURPOSE_ALIASES = {
    "followup": "follow_up",
    "intro": "introduction",
    "meeting": "meeting_request",
    "thanks": "thank_you",
    "thank": "thank_you",
    "checkin": "check_in",
    "sorry": "apology",
}

_LENGTH_PARTS: dict[str, tuple[tuple[Part, ...], ...]] = {
    "short": (("opening", "core", "action"),),
    "medium": (("opening",), ("core",), ("action",)),
    "long": (("opening",), ("core",), ("detail",), ("extra",), ("action",)),
}
_TONE_REGISTER: dict[Tone, Register] = {
    "formal": "formal",
    "professional": "formal",
    "friendly": "warm",
    "casual": "warm",
    "enthusiastic": "enthusiastic",
}
_GREETINGS: dict[Tone, str] = {
    "formal": "Dear {formal_name},",
    "professional": "Hi {name},",
    "friendly": "Hi {name}!",
    "casual": "Hey {name},",
    "enthusiastic": "Hi {name}!",
}
_SIGN_OFFS: dict[Tone, str] = {
    "formal": "Kind regards,",
    "professional": "Best regards,",
    "friendly": "Warm wishes,",
    "casual": "Cheers,",
    "enthusiastic": "All the best,",
}
_CONTRACTIONS = {
    "I'm": "I am",
    "I'd": "I would",
    "I'll": "I will",
    "I've": "I have",
    "we're": "we are",
    "we'll": "we will",
    "we've": "we have",
    "we'd": "we would",
    "you're": "you are",
    "you'll": "you will",
    "you've": "you have",
    "it's": "it is",
    "it'll": "it will",
    "that's": "that is",
    "there's": "there is",
    "here's": "here is",
    "what's": "what is",
    "let's": "let us",
    "don't": "do not",
    "doesn't": "does not",
    "didn't": "did not",
    "can't": "cannot",
    "won't": "will not",
    "isn't": "is not",
    "aren't": "are not",
    "wasn't": "was not",
    "haven't": "have not",
    "couldn't": "could not",
    "wouldn't": "would not",
    "shouldn't": "should not",
    "anything's": "anything is",
    "everything's": "everything is",
}
_CONTRACTION = re.compile(
    r"\b(" + "|".join(re.escape(word) for word in _CONTRACTIONS) + r")\b", re.IGNORECASE
)
_SLOT = re.compile(r"\{(\w+)\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_DETERMINER = re.compile(
    r"^(?:the|a|an|our|your|my|their|this|that|last|yesterday's|today's)\b", re.IGNORECASE
)


def generate_template(request: TemplateRequest) -> GeneratedTemplate:
    """The template for `request`, with formal, casual and enthusiastic variations."""
    purpose = _purpose(request.purpose_key)
    slots = _slots(request, purpose)
    subject = _sentence(PURPOSES[purpose][_TONE_REGISTER[request.tone]]["subject"][0], slots, request.tone)
    paragraphs = _body(purpose, request.tone, request.length, slots)
    body_text = "\n\n".join(paragraphs) + "\n"
    return GeneratedTemplate(
        subject=subject,
        body_html=paragraphs_html(paragraphs, slots.get("link", "")),
        body_text=body_text,
        variations=TemplateVariations(
            formal="\n\n".join(_body(purpose, "formal", request.length, slots)) + "\n",
            casual="\n\n".join(_body(purpose, "casual", request.length, slots)) + "\n",
            enthusiastic="\n\n".join(_body(purpose, "enthusiastic", request.length, slots)) + "\n",
        ),
    )


def paragraphs_html(paragraphs: list[str], link: str = "") -> str:
    """Paragraphs as HTML: every character escaped, line breaks as <br>, `link` (an http(s) URL) an anchor."""
    blocks: list[str] = []
    escaped_link = html.escape(link, quote=True) if _URL.fullmatch(link) else ""
    for paragraph in paragraphs:
        escaped = html.escape(paragraph, quote=True).replace("\n", "<br>\n")
        if escaped_link:
            escaped = escaped.replace(escaped_link, f'<a href="{escaped_link}">{escaped_link}</a>')
        blocks.append(f"<p>{escaped}</p>")
    return "\n".join(blocks) + "\n"


def _purpose(key: str) -> str:
    key = PURPOSE_ALIASES.get(key.replace("_", ""), PURPOSE_ALIASES.get(key, key))
    return key if key in PURPOSES else "generic"


def _body(purpose: str, tone: Tone, length: str, slots: Mapping[str, str]) -> list[str]:
    texts = PURPOSES[purpose][_TONE_REGISTER[tone]]
    paragraphs = [_sentence(_GREETINGS[tone], slots, tone)]
    for parts in _LENGTH_PARTS[length]:
        sentences: list[str] = []
        for part in parts:
            written = texts[part]
            if part == "detail" and slots.get("details"):
                written = ("{details}.",)  # the sender's own details say it better than ours
            candidates = [_sentence(text, slots, tone) for text in written if _has_slots(text, slots)]
            sentences.extend(candidates[:1] if length == "short" else candidates)
        if "action" in parts and length != "long" and slots.get("link"):
            # A link given is never dropped: shorter templates put it before the call to action.
            linked = [_sentence(text, slots, tone) for text in texts["extra"] if "{link}" in text]
            sentences[-1:-1] = linked[:1]
        if sentences:
            paragraphs.append(" ".join(sentences))
    sender = slots.get("sender_signature", "")
    paragraphs.append(_SIGN_OFFS[tone] + (f"\n{sender}" if sender else ""))
    return paragraphs


def _has_slots(text: str, slots: Mapping[str, str]) -> bool:
    return all(slots.get(name) for name in _SLOT.findall(text))


def _sentence(text: str, slots: Mapping[str, str], tone: Tone) -> str:
    if tone == "formal":
        text = _CONTRACTION.sub(lambda found: _expanded(found.group(0)), text)
    return _SLOT.sub(lambda found: slots.get(found.group(1), ""), text)


def _expanded(contraction: str) -> str:
    for word, expansion in _CONTRACTIONS.items():
        if word.lower() == contraction.lower():
            return expansion[:1].upper() + expansion[1:] if contraction[:1].isupper() else expansion
    return contraction


def _slots(request: TemplateRequest, purpose: str) -> dict[str, str]:
    """Every slot's value: the context's, cleaned, else a fallback ("" for optional slots)."""
    context = {key: _clean(value) for key, value in request.context.items()}

    def given(*keys: str) -> str:
        return next((context[key] for key in keys if context.get(key)), "")

    name = given("recipientName", "recipientFirstName", "firstName", "name")
    company = given("companyName", "company", "recipientCompany")
    topic = given("topic", "meetingTopic", "subject", "item")
    next_step = given("nextStep", "nextSteps")
    item = given("item", "reminderItem", "topic", "invoiceNumber")
    issue = (
        given("issue", "apologyReason", "problem", "reason")
        if purpose == "apology"
        else given("issue", "problem")
    )
    announcement = given("announcement", "news", "topic")
    details = given("details", "notes", "description")
    link = given("link", "url")
    slots = {
        "name": name.split(" ")[0] if name else "{{firstName | there}}",
        "formal_name": name or "{{firstName | Sir or Madam}}",
        "company": company or "{{company | your team}}",
        "our": given("senderCompany", "ourCompany") or "our company",
        "sender_signature": given("senderName"),
        "last": _noun_phrase(given("lastInteraction"), "our") or "our recent conversation",
        "next_step": _noun_phrase(next_step, "the") or "the next steps",
        "next_step_title": _title(next_step) or "Next steps",
        "product": given("productName", "product") or "our platform",
        "topic": _noun_phrase(topic, "") or "how we might work together",
        "topic_title": _title(topic) or "Working together",
        "time": given("proposedTime", "time", "meetingTime") or "next week",
        "length": given("meetingLength", "duration") or "30 minutes",
        "deadline": given("deadline", "dueDate", "date") or "the end of the week",
        "item": _noun_phrase(item, "the") or "the open item",
        "item_title": _title(item) or "Open item",
        "issue": _noun_phrase(issue, "the") or "the recent issue",
        "issue_title": _noun_phrase(issue, "the") or "the recent issue",
        "resolution": _capitalised(given("resolution").rstrip(".!"))
        or "We have resolved the underlying problem",
        "announcement_title": _title(announcement) or "An update",
        "announcement_sentence": _capitalised(announcement.rstrip(".!"))
        or "We have an important update to share",
        "reason": _noun_phrase(given("reason"), "") or "your help",
        "amount": given("amount", "price", "budget"),
        "link": link if _URL.fullmatch(link) else "",
        "details": _capitalised(details.rstrip(".!")),
        "details_sentence": _capitalised(details.rstrip(".!")) or "Here are the details you asked for",
        "purpose_title": _capitalised(request.purpose_key.replace("_", " ")),
    }
    return slots


def _clean(value: str) -> str:
    """A context value on one line, without control characters or template braces."""
    value = _CONTROL.sub(" ", value).replace("{{", "{ {").replace("}}", "} }")
    return " ".join(value.split()).strip()


def _noun_phrase(value: str, determiner: str) -> str:
    """`value` to write mid-sentence: its first word lower-cased when it is an ordinary capitalised
    word ("Demo call on Monday" -> "demo call on Monday"), after `determiner` unless it has one."""
    if not value:
        return ""
    words = value.split(" ")
    first = words[0]
    if first[:1].isupper() and first[1:].islower() and (len(words) == 1 or not words[1][:1].isupper()):
        words[0] = first.lower()
    phrase = " ".join(words)
    if determiner and not _DETERMINER.match(phrase):
        phrase = f"{determiner} {phrase}"
    return phrase


def _title(value: str) -> str:
    return _capitalised(value.rstrip(".!?"))


def _capitalised(value: str) -> str:
    return value[:1].upper() + value[1:]
