"""RFC 3464 delivery status notifications, as the sink's asynchronous bounces.

A DSN is a multipart/report (report-type=delivery-status) of three parts: a notice for people, a
message/delivery-status part (one block about the message: Reporting-MTA, Arrival-Date; one
block per failed recipient: Final-Recipient, Action, Status, Diagnostic-Code, Last-Attempt-Date)
and the original message's header section as text/rfc822-headers. It comes from the null sender
(RFC 5321 4.5.5), so the file starts with "Return-Path: <>" as a delivering MTA would write it,
and carries Auto-Submitted: auto-replied (RFC 3834).

Addresses or headers beyond ASCII (SMTPUTF8 mail) get RFC 6533's types instead:
message/global-delivery-status with "utf-8;" addresses, and message/global-headers.
"""

from __future__ import annotations

import email.utils
import uuid
from collections.abc import Sequence
from email.generator import BytesGenerator
from email.message import Message
from email.policy import compat32
from io import BytesIO

from cluster.emulators.smtp.rules import Reply

_POLICY = compat32.clone(linesep="\n", max_line_length=998)


def header_section(message: bytes) -> bytes:
    """The original message's header section, without the blank line that ends it."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = message.find(separator)
        if end != -1:
            return message[:end].replace(b"\r\n", b"\n")
    return message.replace(b"\r\n", b"\n").rstrip(b"\n")


def _raw(text: str) -> str:
    """UTF-8 text as the email package carries raw bytes (surrogateescape), so that its generator
    writes it as UTF-8 instead of refusing it or encoding it for 7-bit transport."""
    return text.encode("utf-8").decode("ascii", "surrogateescape")


def _block(fields: Sequence[tuple[str, str]]) -> Message:
    block = Message(policy=_POLICY)
    for name, value in fields:
        block[name] = value
    return block


def build_dsn(
    *,
    original: bytes,
    envelope_from: str,
    failures: Sequence[tuple[str, Reply]],
    reporting_mta: str,
    arrival: float,
    now: float,
    message_id: str | None = None,
) -> bytes:
    """The DSN for `failures` (recipient, reply) of one message from `envelope_from`."""
    section = header_section(original)
    international = not (
        section.isascii() and envelope_from.isascii() and all(address.isascii() for address, _ in failures)
    )
    # Raw bytes stay raw (8-bit headers that are not UTF-8 too); text is carried the same way.
    headers = section.decode("ascii", "surrogateescape")
    address_type = "utf-8" if international else "rfc822"
    last_attempt = email.utils.formatdate(now)

    report = Message(policy=_POLICY)
    report["Return-Path"] = "<>"
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporting_mta}>"
    report["To"] = _raw(envelope_from)
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = last_attempt
    report["Message-ID"] = message_id or email.utils.make_msgid("dsn", domain=reporting_mta)
    report["Auto-Submitted"] = "auto-replied"
    report["MIME-Version"] = "1.0"
    report["Content-Type"] = "multipart/report"
    report.set_param("report-type", "delivery-status")

    notice = Message(policy=_POLICY)
    notice["Content-Type"] = 'text/plain; charset="utf-8"'
    notice["Content-Transfer-Encoding"] = "8bit" if international else "7bit"
    lines = [
        f"This is the mail system at host {reporting_mta}.",
        "",
        "Your message could not be delivered to one or more recipients.",
        "It is attached below.",
        "",
        *(f"<{recipient}>: {reply.line}" for recipient, reply in failures),
        "",
    ]
    notice.set_payload(_raw("\n".join(lines)))

    status = Message(policy=_POLICY)
    per_message = [
        ("Reporting-MTA", f"dns; {reporting_mta}"),
        ("Arrival-Date", email.utils.formatdate(arrival)),
    ]
    per_recipient = [
        [
            ("Final-Recipient", f"{address_type}; {recipient}"),
            ("Action", "failed"),
            ("Status", reply.status),
            ("Diagnostic-Code", f"smtp; {reply.line}"),
            ("Last-Attempt-Date", last_attempt),
        ]
        for recipient, reply in failures
    ]
    # The email package writes message/* parts only as ASCII: the global types' UTF-8 bodies go in
    # after it is done, in place of placeholders.
    late: dict[str, bytes] = {}
    token = uuid.uuid4().hex
    if international:
        status["Content-Type"] = "message/global-delivery-status"
        status["Content-Transfer-Encoding"] = "8bit"
        blocks = [per_message, *per_recipient]
        text = "\n\n".join("\n".join(f"{name}: {value}" for name, value in block) for block in blocks)
        status.set_payload(f"{token}-status")
        late[f"{token}-status"] = (text + "\n").encode("utf-8", "surrogateescape")
    else:
        status["Content-Type"] = "message/delivery-status"
        status.set_payload([_block(per_message), *(_block(block) for block in per_recipient)])

    returned = Message(policy=_POLICY)
    if international:
        returned["Content-Type"] = "message/global-headers"
        returned["Content-Transfer-Encoding"] = "8bit"
        returned.set_payload(f"{token}-headers")
        late[f"{token}-headers"] = section + b"\n"
    else:
        returned["Content-Type"] = "text/rfc822-headers"
        returned.set_payload(headers + "\n")

    report.set_payload([notice, status, returned])
    buffer = BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=_POLICY).flatten(report)
    flat = buffer.getvalue()
    for placeholder, body in late.items():
        flat = flat.replace(placeholder.encode(), body, 1)
    return flat
