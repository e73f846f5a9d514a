"""Campaign messages: a campaign's (or variant's) content made into one recipient's RFC 5322 bytes.

Pure: no database, no clock unless asked (`date`), no signing of its own. What differs per
recipient comes from a `Recipient` (mail.campaigns.personalize) and a `TrackingPlan`, the object
that knows the recipient's open-pixel, click and unsubscribe URLs (`TokenTrackingPlan` signs
tracking tokens for them; tests pass fixed URLs).

Compiled once, rendered many times: `compile_message` (cached per content and options) makes
templates with slots (mail.campaigns.templates: `instrument_html` runs once, with markers where
tokens go); rendering a recipient fills the slots, one `str.format` per part, and writes the
headers and bodies directly (mail.campaigns.wire): no HTML parse and no `email.message` per
message. A tracked link whose URL holds placeholders (`?ref={{email}}`) is rewritten too;
`RenderedMessage.links` gives its target for this recipient, to store.

The message:

    From, To, [Reply-To], Subject, Date, Message-ID, X-Campaign-ID, MIME-Version,
    [List-Unsubscribe, List-Unsubscribe-Post], Content-Type
    multipart/alternative: text/plain then text/html, UTF-8, each 7bit where that is safe and
    quoted-printable otherwise (text/plain alone, with its Content-Transfer-Encoding, without HTML)

- Escaping: values are HTML-escaped in HTML, written as they are in text, percent-encoded inside
  a URL attribute (a placeholder that starts the URL is the URL itself: HTML-escaped only), and
  made one line in headers (personalize's `Mode`). `To` carries the contact's name.
- Headers are what `email.policy.SMTP` writes (RFC 2047 for non-ASCII names and subjects).
  Addresses must be ASCII (no SMTPUTF8); an international domain is written as IDNA. Date is
  numeric (+0000): RFC 5322 makes "GMT" obsolete.
- Message-ID: `<uuid5(campaign id, lowercased address)@from-domain>`, the id
  mail.sending.compose gives, so a resend of the same row is the same message. X-Campaign-ID:
  the campaign's id (as the design document's sender sets it), which links a bounce that quotes
  the returned headers without the Message-ID (mail.bounces.ingest). The MIME
  boundary is derived from it and starts with `=_`, which quoted-printable cannot produce; a 7bit
  body is checked not to hold it.
- The preheader: the preview text in a hidden `<span>` first in `<body>`, padded so clients do
  not pull body text into the preview.
- Unsubscribing (`enable_unsubscribe`): `List-Unsubscribe: <https URL>, <mailto:...>` (the mailto
  when the plan has one) and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058), and
  a visible link: where the body has `{{unsubscribeUrl}}`, there; otherwise a footer line last in
  the body (before the open pixel) and last in the text.
- Plain text is not click-tracked (there is no markup to rewrite). An empty text body is made
  from the HTML (its visible text, block elements on lines of their own).
"""

from __future__ import annotations

import functools
import html
import re
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Protocol

import msgspec

from mail.campaigns.personalize import Mode, Placeholder, Recipient, Template, header_safe
from mail.campaigns.templates import (
    Click,
    LinkTemplate,
    Open,
    Unsubscribe,
    compile_html,
    compile_text,
    header_template,
    text_from_html,
)
from mail.campaigns.wire import (
    PART_HEADERS,
    TEXT_TYPE,
    Body,
    address_line,
    ascii_address,
    list_line,
    unstructured_line,
)
from mail.tracking.instrument import TrackedLink
from mail.tracking.tokens import TokenKind, TokenSigner, TrackingToken
from models.campaigns import Campaign, Variant

# The Message-ID namespace of mail.sending.compose: both give a row the same id.
MESSAGE_ID_NAMESPACE = uuid.UUID("6f1d2a5e-3c4b-4f7a-9a51-0b7e6c2d9e10")
MAX_URI = 900  # a URL from the plan still fits a header line
_URL_SPACE = "\t\n\f\r "
_URI = re.compile(r"[!#-;=?-\[\]_a-z~]+", re.I)  # printable ASCII less space " < > \ ^ ` { | }


# --- inputs ----------------------------------------------------------------------------------------


class MessageContent(msgspec.Struct, frozen=True, kw_only=True):
    """What a campaign, or one of its variants, sends; every text may hold placeholders but the addresses."""

    subject: str
    from_name: str
    from_email: str
    body_html: str = ""
    body_text: str = ""
    preview_text: str | None = None
    reply_to: str | None = None

    @classmethod
    def of(cls, campaign: Campaign, variant: Variant | None = None) -> MessageContent:
        """The campaign's content with the variant's fields where the variant sets them."""
        if variant is None:
            return cls(
                subject=campaign.subject,
                from_name=campaign.from_name,
                from_email=campaign.from_email,
                body_html=campaign.body_html,
                body_text=campaign.body_text,
                preview_text=campaign.preview_text,
                reply_to=campaign.reply_to,
            )
        return cls(
            subject=variant.subject or campaign.subject,
            from_name=variant.from_name or campaign.from_name,
            from_email=campaign.from_email,
            body_html=variant.body_html or campaign.body_html,
            body_text=variant.body_text or campaign.body_text,
            preview_text=variant.preview_text or campaign.preview_text,
            reply_to=campaign.reply_to,
        )


class RenderOptions(msgspec.Struct, frozen=True, kw_only=True):
    track_opens: bool = True
    track_clicks: bool = True
    enable_unsubscribe: bool = True

    @classmethod
    def of(cls, campaign: Campaign) -> RenderOptions:
        return cls(
            track_opens=campaign.track_opens,
            track_clicks=campaign.track_clicks,
            enable_unsubscribe=campaign.enable_unsubscribe,
        )


class TrackingPlan(Protocol):
    """One recipient's tracking and unsubscribe URLs; the renderer asks only for what it writes."""

    def open_url(self) -> str: ...

    def click_url(self, position: int) -> str: ...

    def unsubscribe_url(self) -> str: ...

    def unsubscribe_mailto(self) -> str | None: ...


class TokenTrackingPlan:
    """The URLs mailray's tracking endpoints answer, with tokens signed for one tracked email."""

    __slots__ = ("_base", "_email_id", "_mailto", "_recipient_id", "_signer")

    def __init__(
        self,
        signer: TokenSigner,
        base_url: str,
        email_id: int,
        recipient_id: int | None = None,
        unsubscribe_mailto: str | None = None,
    ) -> None:
        self._signer = signer
        self._base = base_url.strip().rstrip("/")
        self._email_id = email_id
        self._recipient_id = recipient_id
        self._mailto = unsubscribe_mailto

    def _token(self, kind: TokenKind, link: int | None = None) -> str:
        return self._signer.sign(
            TrackingToken(kind=kind, email_id=self._email_id, recipient_id=self._recipient_id, link=link)
        )

    def open_url(self) -> str:
        return f"{self._base}/t/o/{self._token(TokenKind.OPEN)}.gif"

    def click_url(self, position: int) -> str:
        return f"{self._base}/t/c/{self._token(TokenKind.CLICK, position)}"

    def unsubscribe_url(self) -> str:
        return f"{self._base}/u/{self._token(TokenKind.UNSUBSCRIBE)}"

    def unsubscribe_mailto(self) -> str | None:
        return self._mailto


class RenderedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One recipient's message: the bytes to send, and what the sender records about it."""

    message: bytes
    message_id: str
    envelope_from: str
    recipient: str
    subject: str
    # Top-level headers in order, values as set (before encoding and folding).
    headers: tuple[tuple[str, str], ...]
    # The HTML's tracked links, with this recipient's targets (what tracked_email_links stores).
    links: tuple[TrackedLink, ...]


def message_id(campaign_id: uuid.UUID | str, recipient: str, from_email: str) -> str:
    """`<hex@from-domain>`, the same for every render of this campaign and recipient address."""
    token = uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{campaign_id}:{recipient.lower()}").hex
    return f"<{token}@{from_email.rpartition('@')[2].lower() or 'mailray.invalid'}>"


# --- compiling ---------------------------------------------------------------------------------------


class CompiledMessage:
    """A content and options, parsed once: `render` makes one recipient's message."""

    __slots__ = (
        "_from_email",
        "_from_line",
        "_from_name",
        "_html",
        "_links",
        "_options",
        "_reply_to",
        "_static_links",
        "_subject",
        "_text",
        "content",
    )

    def __init__(self, content: MessageContent, options: RenderOptions) -> None:
        self.content = content
        self._options = options
        self._from_email = ascii_address(content.from_email, "from_email")
        self._reply_to = ascii_address(content.reply_to, "reply_to") if content.reply_to else None
        self._subject = header_template(content.subject)
        self._from_name = header_template(content.from_name)
        self._from_line: str | None = None
        if self._from_name.text is not None:
            self._from_line = address_line("From", " ".join(self._from_name.text.split()), self._from_email)
        self._html: Body | None = None
        self._links: tuple[LinkTemplate, ...] = ()
        body_html = content.body_html if content.body_html.strip() else ""
        if body_html:
            self._html, self._links = compile_html(
                body_html,
                content.preview_text,
                track_opens=options.track_opens,
                track_clicks=options.track_clicks,
                unsubscribe=options.enable_unsubscribe,
            )
        # Links without placeholders are the same for every recipient.
        self._static_links: tuple[TrackedLink, ...] | None = None
        if all(link.url.text is not None and link.text.text is not None for link in self._links):
            self._static_links = tuple(
                TrackedLink(
                    position=link.position,
                    url=(link.url.text or "").strip(_URL_SPACE),
                    text=link.text.text or "",
                )
                for link in self._links
            )
        body_text = content.body_text if content.body_text.strip() else text_from_html(body_html)
        self._text = compile_text(body_text, unsubscribe=options.enable_unsubscribe)

    def render(
        self,
        recipient: Recipient,
        plan: TrackingPlan | None,
        *,
        campaign_id: uuid.UUID,
        date: datetime | None = None,
    ) -> RenderedMessage:
        """`recipient`'s message; ValidationError for an address that cannot be written."""
        options = self._options
        if plan is None and (
            options.enable_unsubscribe
            or (self._html is not None and (options.track_opens or options.track_clicks))
        ):
            raise ValueError("tracking or unsubscribing is on: render needs a TrackingPlan")
        to_address = ascii_address(recipient.email, "email")
        unsubscribe = mailto = None
        if options.enable_unsubscribe and plan is not None:
            unsubscribe = _checked_uri(plan.unsubscribe_url(), "unsubscribe URL")
            mailto = plan.unsubscribe_mailto()
            if mailto is not None:
                mailto = _checked_uri(mailto, "unsubscribe mailto")

        # One line each, without the doubled or trailing spaces an empty value leaves.
        subject = " ".join(_fill(self._subject, recipient, plan, unsubscribe).split())
        from_name = self._from_name.text
        if from_name is None:
            from_name = _fill(self._from_name, recipient, plan, unsubscribe)
        from_name = " ".join(from_name.split())
        mid = message_id(campaign_id, to_address, self._from_email)
        # Numeric +0000: RFC 5322 makes "GMT" obsolete syntax.
        when = format_datetime((date or datetime.now(UTC)).astimezone(UTC))
        to_name = " ".join(
            header_safe(
                " ".join(part for part in (recipient.first_name, recipient.last_name) if part)
            ).split()
        )
        headers: list[tuple[str, str]] = [
            ("From", f"{from_name} <{self._from_email}>" if from_name else self._from_email),
            ("To", f"{to_name} <{to_address}>" if to_name else to_address),
        ]
        lines = [
            self._from_line or address_line("From", from_name, self._from_email),
            address_line("To", to_name, to_address),
        ]
        if self._reply_to is not None:
            headers.append(("Reply-To", self._reply_to))
            lines.append(address_line("Reply-To", "", self._reply_to))
        if not isinstance(campaign_id, uuid.UUID):  # its text goes into a header as it is
            raise TypeError(f"campaign_id must be a UUID, got {type(campaign_id).__name__}")
        campaign = str(campaign_id)
        headers += [
            ("Subject", subject),
            ("Date", when),
            ("Message-ID", mid),
            ("X-Campaign-ID", campaign),
            ("MIME-Version", "1.0"),
        ]
        lines += [
            unstructured_line("Subject", subject),
            f"Date: {when}\r\n",
            f"Message-ID: {mid}\r\n",
            f"X-Campaign-ID: {campaign}\r\n",
            "MIME-Version: 1.0\r\n",
        ]
        if unsubscribe is not None:
            value = f"<{unsubscribe}>" if mailto is None else f"<{unsubscribe}>, <{mailto}>"
            headers += [("List-Unsubscribe", value), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
            lines += [
                list_line("List-Unsubscribe", value),
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            ]

        text_body, text_encoding = self._text.encode(
            _values(self._text.template, recipient, plan, unsubscribe)
        )
        if self._html is None:
            headers += [("Content-Type", TEXT_TYPE), ("Content-Transfer-Encoding", text_encoding)]
            lines += [f"Content-Type: {TEXT_TYPE}\r\n", f"Content-Transfer-Encoding: {text_encoding}\r\n"]
            message = b"".join(("".join(lines).encode("ascii"), b"\r\n", text_body))
        else:
            html_body, html_encoding = self._html.encode(
                _values(self._html.template, recipient, plan, unsubscribe)
            )
            boundary = "=_" + mid[1:33]  # from the Message-ID's hex
            content_type = f'multipart/alternative; boundary="{boundary}"'
            headers.append(("Content-Type", content_type))
            lines.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n')
            message = b"".join(
                (
                    "".join(lines).encode("ascii"),
                    f"\r\n--{boundary}\r\n".encode("ascii"),
                    PART_HEADERS["text/plain", text_encoding],
                    text_body,
                    f"\r\n--{boundary}\r\n".encode("ascii"),
                    PART_HEADERS["text/html", html_encoding],
                    html_body,
                    f"\r\n--{boundary}--\r\n".encode("ascii"),
                )
            )
        return RenderedMessage(
            message=message,
            message_id=mid,
            envelope_from=self._from_email,
            recipient=to_address,
            subject=subject,
            headers=tuple(headers),
            links=self._static_links
            if self._static_links is not None
            else self._personal_links(recipient, plan, unsubscribe),
        )

    def _personal_links(
        self, recipient: Recipient, plan: TrackingPlan | None, unsubscribe: str | None
    ) -> tuple[TrackedLink, ...]:
        return tuple(
            TrackedLink(
                position=link.position,
                url=_fill(link.url, recipient, plan, unsubscribe).strip(_URL_SPACE),
                text=_fill(link.text, recipient, plan, unsubscribe),
            )
            for link in self._links
        )


@functools.lru_cache(maxsize=64)
def compile_message(content: MessageContent, options: RenderOptions) -> CompiledMessage:
    """The compiled form of `content` (cached: a campaign's variants stay compiled while it sends)."""
    return CompiledMessage(content, options)


def render_message(
    content: MessageContent,
    recipient: Recipient,
    options: RenderOptions,
    plan: TrackingPlan | None,
    *,
    campaign_id: uuid.UUID,
    date: datetime | None = None,
) -> RenderedMessage:
    """One recipient's message (the content is compiled once and cached)."""
    return compile_message(content, options).render(recipient, plan, campaign_id=campaign_id, date=date)


# --- filling slots -----------------------------------------------------------------------------------


def _fill(
    template: Template, recipient: Recipient, plan: TrackingPlan | None, unsubscribe: str | None
) -> str:
    text = template.text
    if text is not None:
        return text
    return template.render(_values(template, recipient, plan, unsubscribe))


def _values(
    template: Template, recipient: Recipient, plan: TrackingPlan | None, unsubscribe: str | None
) -> list[str]:
    """What goes into each of `template`'s slots for this recipient."""
    values: list[str] = []
    for slot in template.slots:
        if isinstance(slot, Placeholder):
            values.append(slot.value(recipient))
        elif isinstance(slot, Click):
            assert plan is not None
            values.append(_attribute_url(_checked_uri(plan.click_url(slot.position), "click URL")))
        elif isinstance(slot, Open):
            assert plan is not None
            values.append(_attribute_url(_checked_uri(plan.open_url(), "open URL")))
        elif isinstance(slot, Unsubscribe):
            values.append(_escape_url(unsubscribe or "", slot.mode))
        else:  # pragma: no cover - compile only makes the slots above
            raise TypeError(f"unknown slot {slot!r}")
    return values


def _attribute_url(url: str) -> str:
    """A checked URI as an HTML attribute value: only & and ' can need escaping."""
    return html.escape(url) if "&" in url or "'" in url else url


def _escape_url(url: str, mode: Mode) -> str:
    if mode is Mode.HTML:
        return _attribute_url(url)
    return url  # text and headers: the URL is printable ASCII without spaces (_checked_uri)


def _checked_uri(uri: str, what: str) -> str:
    """A URI from the plan, refused if it could break the line or markup it goes into."""
    if len(uri) > MAX_URI or not _URI.fullmatch(uri):
        raise ValueError(
            f"{what} must be at most {MAX_URI} characters of printable ASCII without spaces or <>, got {uri!r}"
        )
    return uri
