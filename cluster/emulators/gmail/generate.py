# ruff: noqa: RUF001 - the generated mail is written in several languages on purpose
"""Generated mail, deterministic for a seed: conversations with replies (In-Reply-To, References,
"Re:" subjects), text and HTML alternatives, attachments (one with an RFC 2231 non-ASCII name),
several charsets and transfer encodings (UTF-8 quoted-printable, ISO-8859-1 and windows-1252
quoted-printable, KOI8-R base64, ISO-2022-JP 7bit), some of it SENT by the mailbox's owner, a
little of it SPAM.

Messages are built as bytes by hand (CRLF line endings), not with `email`, so the same seed gives
the same bytes on every run; internalDate follows the Date header, starting 2025-01-06 09:00 UTC.
"""

from __future__ import annotations

import base64
import binascii
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote

from cluster.emulators.gmail import mime
from cluster.emulators.gmail.mailbox import Mailbox

START_MS = int(datetime(2025, 1, 6, 9, 0, tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True)
class _Locale:
    charset: str
    encoding: str  # Content-Transfer-Encoding of text parts
    people: tuple[tuple[str, str], ...]
    subjects: tuple[str, ...]
    sentences: tuple[str, ...]
    greeting: str
    closing: str


_LOCALES: tuple[tuple[_Locale, float], ...] = (
    (
        _Locale(
            charset="utf-8",
            encoding="quoted-printable",
            people=(
                ("Ana Souza", "ana@acme.test"),
                ("Ben Okafor", "ben@northwind.test"),
                ("Zoë Lin", "zoe@lin.test"),
            ),
            subjects=(
                "Quarterly pipeline review",
                "Invoice 2291 is overdue",
                "Demo next Tuesday?",
                "Contract renewal — final terms",
                "Your trial ends in 3 days ✨",
                "Intro: data platform team",
            ),
            sentences=(
                "Thanks for the quick turnaround on this.",
                "Could you send the updated numbers before Friday?",
                "We reviewed the proposal and have a few questions about pricing.",
                "The renewal quote is attached — let me know if anything looks off.",
                "I'm out of office next week, so Priya will cover for me.",
                "Happy to jump on a call if that's easier ☎️.",
                "The dashboard now shows open rates per campaign.",
            ),
            greeting="Hi {name},",
            closing="Best,\n{sender}",
        ),
        0.5,
    ),
    (
        _Locale(
            charset="iso-8859-1",
            encoding="quoted-printable",
            people=(("Jürgen Müller", "juergen@mueller.example"), ("Käthe Groß", "kaethe@gross.example")),
            subjects=("Angebot für Größe M", "Rückfrage zur Lieferung", "Grüße aus München"),
            sentences=(
                "Vielen Dank für Ihre schnelle Rückmeldung.",
                "Die Lieferung verzögert sich um zwei Tage, wir bitten um Entschuldigung.",
                "Können Sie die Maße noch einmal prüfen? Die Größe scheint nicht zu passen.",
                "Über ein kurzes Telefonat würde ich mich freuen.",
            ),
            greeting="Hallo {name},",
            closing="Viele Grüße\n{sender}",
        ),
        0.15,
    ),
    (
        _Locale(
            charset="windows-1252",
            encoding="quoted-printable",
            people=(("Chloé Martin", "chloe@exemple.fr"), ("François Dubois", "francois@exemple.fr")),
            subjects=("Réunion de lundi", "Devis n° 4521 – 1 200 €", "« Suivi » du dossier"),
            sentences=(
                "Merci pour votre réponse rapide.",
                "Le devis s’élève à 1 200 € hors taxes.",
                "Pourriez-vous confirmer la date de la réunion ?",
                "Voici le « résumé » que vous avez demandé…",
            ),
            greeting="Bonjour {name},",
            closing="Cordialement,\n{sender}",
        ),
        0.15,
    ),
    (
        _Locale(
            charset="koi8-r",
            encoding="base64",
            people=(("Дмитрий Иванов", "dmitri@example.ru"), ("Ольга Петрова", "olga@example.ru")),
            subjects=("Счёт на оплату", "Встреча в четверг", "Отчёт за квартал"),
            sentences=(
                "Спасибо за быстрый ответ.",
                "Пожалуйста, пришлите обновлённый договор до пятницы.",
                "Отчёт готов, посмотрите, пожалуйста, приложение.",
            ),
            greeting="Здравствуйте, {name}!",
            closing="С уважением,\n{sender}",
        ),
        0.1,
    ),
    (
        _Locale(
            charset="iso-2022-jp",
            encoding="7bit",
            people=(("佐藤 陽翔", "haruto@example.jp"), ("鈴木 花子", "hanako@example.jp")),
            subjects=("会議の件", "お見積もりについて", "来週の打ち合わせ"),
            sentences=(
                "お世話になっております。",
                "資料を添付いたしましたので、ご確認ください。",
                "来週の打ち合わせの日程を調整させてください。",
            ),
            greeting="{name} 様",
            closing="よろしくお願いいたします。\n{sender}",
        ),
        0.1,
    ),
)

_ATTACHMENTS = (
    ("report.pdf", "application/pdf"),
    ("photo.png", "image/png"),
    ("numbers.csv", "text/csv"),
    ("Résumé.pdf", "application/pdf"),
)
_CATEGORIES = (
    "CATEGORY_PERSONAL",
    "CATEGORY_PERSONAL",
    "CATEGORY_UPDATES",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_FORUMS",
)


def _encoded_word(text: str, charset: str) -> str:
    """A header value, as RFC 2047 encoded-words when it is not ASCII."""
    try:
        text.encode("ascii")
        return text
    except UnicodeEncodeError:
        pass
    words = []
    for start in range(0, len(text), 12):
        chunk = base64.b64encode(text[start : start + 12].encode(charset)).decode("ascii")
        words.append(f"=?{charset}?B?{chunk}?=")
    return "\r\n ".join(words)


def _address(name: str, email: str, charset: str) -> str:
    return f"{_encoded_word(name, charset)} <{email}>" if name else email


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _encode_text(text: str, charset: str, encoding: str) -> bytes:
    data = text.encode(charset)
    if encoding == "quoted-printable":
        return _crlf(binascii.b2a_qp(data, istext=True))
    if encoding == "base64":
        return _crlf(base64.encodebytes(_crlf(data)))
    return _crlf(data)


def _leaf(content_type: str, payload: bytes, headers: list[str]) -> bytes:
    head = "".join(f"{header}\r\n" for header in [f"Content-Type: {content_type}", *headers])
    return head.encode("ascii") + b"\r\n" + payload


def _multipart(subtype: str, boundary: str, parts: list[bytes]) -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    body += b"--" + boundary.encode() + b"--\r\n"
    return _leaf(f'multipart/{subtype}; boundary="{boundary}"', body, [])


def _text_part(text: str, locale: _Locale, subtype: str) -> bytes:
    return _leaf(
        f'text/{subtype}; charset="{locale.charset}"',
        _encode_text(text, locale.charset, locale.encoding),
        [f"Content-Transfer-Encoding: {locale.encoding}"],
    )


def _html(text: str) -> str:
    paragraphs = "".join(
        f"<p>{line.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</p>\n"
        for line in text.split("\n")
        if line.strip()
    )
    return f'<html><body>\n{paragraphs}<p><a href="https://mailray.test/d">details</a></p>\n</body></html>\n'


def _attachment(rng: random.Random, index: int) -> bytes:
    name, content_type = _ATTACHMENTS[index]
    if content_type == "text/csv":
        rows = [f"{row},{rng.randint(1, 9999)},{rng.random():.4f}" for row in range(rng.randint(3, 30))]
        data = ("id,amount,score\n" + "\n".join(rows) + "\n").encode()
    elif content_type == "image/png":
        data = b"\x89PNG\r\n\x1a\n" + rng.randbytes(rng.randint(200, 3000))
    else:
        data = b"%PDF-1.4\n" + rng.randbytes(rng.randint(500, 6000)) + b"\n%%EOF\n"
    try:
        name.encode("ascii")
        disposition = f'attachment; filename="{name}"'
        type_name = f'; name="{name}"'
    except UnicodeEncodeError:
        disposition = f"attachment; filename*=utf-8''{quote(name)}"
        type_name = ""
    return _leaf(
        content_type + type_name,
        _crlf(base64.encodebytes(data)),
        ["Content-Transfer-Encoding: base64", f"Content-Disposition: {disposition}"],
    )


@dataclass
class _Sent:
    header_id: str
    subject: str
    references: str
    locale: _Locale
    person: tuple[str, str]
    text: str
    date: str


def generate(mailbox: Mailbox, count: int, *, seed: int = 0) -> int:
    """Add `count` generated messages to `mailbox`; the number added."""
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    salt = len(mailbox.messages) + mailbox.history_id
    rng = random.Random(f"gmail-emulator:{seed}:{salt}")  # noqa: S311 - test data
    owner = mailbox.email
    owner_name = owner.split("@")[0].replace(".", " ").title()
    clock = START_MS + salt * 60_000
    recent: list[_Sent] = []
    locales = [locale for locale, _ in _LOCALES]
    weights = [weight for _, weight in _LOCALES]
    for index in range(count):
        clock += rng.randint(60, 3 * 3600) * 1000
        reply_to = rng.choice(recent[-40:]) if recent and rng.random() < 0.35 else None
        locale = reply_to.locale if reply_to else rng.choices(locales, weights)[0]
        person = reply_to.person if reply_to else rng.choice(locale.people)
        sent = rng.random() < 0.2
        sender_name, sender = (owner_name, owner) if sent else person
        recipient_name, recipient = person if sent else (owner_name, owner)
        subject = f"Re: {reply_to.subject}" if reply_to else rng.choice(locale.subjects)
        lines = [locale.greeting.format(name=recipient_name.split()[0]), ""]
        lines += rng.sample(locale.sentences, k=min(len(locale.sentences), rng.randint(1, 3)))
        lines += ["", locale.closing.format(sender=sender_name)]
        date = format_datetime(datetime.fromtimestamp(clock / 1000, tz=UTC))
        if reply_to:
            lines += ["", f"On {reply_to.date}, {reply_to.person[0]} wrote:"]
            lines += ["> " + line for line in reply_to.text.split("\n")[:6]]
        text = "\n".join(lines) + "\n"
        header_id = f"<gen.{seed}.{salt}.{index}@mailray.test>"
        headers = [
            f"From: {_address(sender_name, sender, locale.charset)}",
            f"To: {_address(recipient_name, recipient, locale.charset)}",
            f"Subject: {_encoded_word(subject, locale.charset)}",
            f"Date: {date}",
            f"Message-ID: {header_id}",
        ]
        references = ""
        if reply_to:
            references = f"{reply_to.references} {reply_to.header_id}".strip()
            headers += [f"In-Reply-To: {reply_to.header_id}", f"References: {references}"]
        if rng.random() < 0.1:
            other = rng.choice(locales[0].people)
            headers.append(f"Cc: {_address(other[0], other[1], 'utf-8')}")
        headers.append("MIME-Version: 1.0")
        shape = rng.random()
        if shape < 0.3:
            body = _text_part(text, locale, "plain")
        else:
            boundary = f"b{seed}_{salt}_{index}_alt"
            body = _multipart(
                "alternative",
                boundary,
                [_text_part(text, locale, "plain"), _text_part(_html(text), locale, "html")],
            )
            if shape > 0.78:
                attachments = [
                    _attachment(rng, rng.randrange(len(_ATTACHMENTS))) for _ in range(rng.randint(1, 2))
                ]
                body = _multipart("mixed", f"b{seed}_{salt}_{index}_mix", [body, *attachments])
        raw = ("\r\n".join(headers) + "\r\n").encode("ascii") + body
        labels = ["SENT"] if sent else ["INBOX", rng.choice(_CATEGORIES)]
        if not sent:
            if rng.random() < 0.03:
                labels = ["SPAM"]
            if rng.random() < 0.3:
                labels.append("UNREAD")
            if rng.random() < 0.15:
                labels.append("IMPORTANT")
            if rng.random() < 0.05:
                labels.append("STARRED")
        info = mime.header_info(raw)
        mailbox.add(raw, labels, clock, snippet=mime.make_snippet(text), info=info)
        recent.append(
            _Sent(
                header_id=header_id,
                subject=subject.removeprefix("Re: "),
                references=references,
                locale=locale,
                person=person,
                text=text,
                date=date,
            )
        )
    return count
