"""Providers behind one interface: SMTP (aiosmtplib, connections reused) and the Gmail API.

`send` answers with an Outcome instead of raising for what a provider says about a recipient:
accepted, rejected for good (5xx: bounced), refused for now (4xx, 421, a dropped connection:
retry), or unknown (the connection broke after the message was handed over: it may have been
delivered). `delivered(message_id)` asks the provider whether a message with that Message-ID
went out, where it can tell (Gmail: a search of the sent mail by rfc822msgid); None where it
cannot (plain SMTP).
"""

from __future__ import annotations

import asyncio
import re
from typing import Literal, Protocol
from uuid import UUID

import aiohttp
import aiosmtplib
import msgspec
from aiosmtplib.protocol import normalize_message_line_endings

from mail.errors import MailrayError, TransientError, ValidationError
from mail.gmail.account_client import open_account_client
from mail.gmail.client import GmailClient
from mail.services import Services

Verdict = Literal["accepted", "bounced", "retry", "unknown"]
_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    verdict: Verdict
    code: int | None = None
    status: str | None = None  # the enhanced status code (RFC 3463), when the reply had one
    message: str = ""
    provider_message_id: str | None = None

    def describe(self) -> str:
        return " ".join(part for part in (str(self.code or ""), self.status or "", self.message) if part)[
            :1000
        ]


class _ProbeAnswer(msgspec.Struct, frozen=True):
    delivered: bool


class Transport(Protocol):
    async def send(self, envelope_from: str, recipient: str, message: bytes) -> Outcome: ...

    async def delivered(self, message_id: str) -> bool | None: ...

    async def close(self) -> None: ...


def _reply(code: int, text: str) -> Outcome:
    status = match.group(1) if (match := _ENHANCED.search(text)) else None
    if 200 <= code < 300:
        return Outcome(verdict="accepted", code=code, status=status, message=text)
    verdict: Verdict = "bounced" if 500 <= code < 600 else "retry"
    return Outcome(verdict=verdict, code=code, status=status, message=text.strip()[:500])


async def _transaction(
    client: aiosmtplib.SMTP, envelope_from: str, recipient: str, message: bytes, timeout_s: float
) -> str:
    """MAIL, RCPT and DATA for one recipient, as aiosmtplib's `sendmail` sends them (SIZE declared
    where the server takes it; RSET after a refusal), without what `sendmail` repeats for the
    general case: parsing both addresses once more to validate them (composition wrote them) and
    normalizing the whole message once more to measure it (signed messages end lines in CRLF).
    One deadline for the exchange instead of a timer per command: TimeoutError past `timeout_s`.
    A refusal raises SMTPSenderRefused, SMTPRecipientRefused or SMTPDataError, with the code, even
    when the RSET after it fails: the refusal is the verdict, and the connection, its envelope not
    known to be clean, is closed instead of reused."""
    options: list[str] = []
    if client.supports_extension("size"):
        size = len(message)
        crlf = message.count(b"\r\n")
        if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
            size = len(normalize_message_line_endings(message))  # as DATA will send it
        options.append(f"SIZE={size}")
    try:
        async with asyncio.timeout(timeout_s):
            await client.mail(envelope_from, options=options, timeout=None)
            await client.rcpt(recipient, timeout=None)
            return (await client.data(message, timeout=None)).message
    except (aiosmtplib.SMTPResponseException, ValueError):  # ValueError: an address aiosmtplib refuses
        try:
            await client.rset()  # a clean envelope for the connection's next message
        except (ConnectionError, TimeoutError, aiosmtplib.SMTPResponseException):
            client.close()
        raise


class SmtpTransport:
    """SMTP to one relay (or a sink) over up to `connections` reused connections."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connections: int = 4,
        username: str | None = None,
        password: str | None = None,
        start_tls: bool = False,
        timeout_s: float = 30.0,
        probe_url: str = "",
    ) -> None:
        self._host, self._port = host, port
        self._probe_url = probe_url
        self._credentials = (username, password) if username else None
        self._start_tls = start_tls
        self._timeout_s = timeout_s
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(connections)
        self.connects = 0

    async def _connection(self) -> aiosmtplib.SMTP:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client.is_connected:
                return client
        client = aiosmtplib.SMTP(
            hostname=self._host, port=self._port, timeout=self._timeout_s, start_tls=self._start_tls
        )
        await client.connect()
        if client.is_ehlo_or_helo_needed:  # the greeting first: _transaction reads its extensions
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()
        if self._credentials is not None:
            await client.login(*self._credentials)  # type: ignore[arg-type]
        self.connects += 1
        return client

    async def send(self, envelope_from: str, recipient: str, message: bytes) -> Outcome:
        async with self._slots:
            try:
                client = await self._connection()
            except (aiosmtplib.SMTPException, OSError) as error:
                return Outcome(verdict="retry", message=f"cannot connect: {error}")
            keep = True
            try:
                response = await _transaction(client, envelope_from, recipient, message, self._timeout_s)
            except aiosmtplib.SMTPResponseException as error:
                keep = error.code != 421  # 421: the server closes the connection
                return _reply(error.code, error.message)
            except TimeoutError:  # aiosmtplib's SMTPTimeoutError included: it is a TimeoutError
                keep = False  # an answer may still come: the connection is out of step
                return Outcome(verdict="unknown", message=f"no answer within {self._timeout_s:g} s")
            except (aiosmtplib.SMTPServerDisconnected, OSError) as error:
                # The message may have been handed over before the connection broke.
                keep = False
                return Outcome(verdict="unknown", message=f"connection lost while sending: {error}")
            finally:
                if keep and client.is_connected:
                    self._idle.put_nowait(client)
                else:
                    client.close()
            return _reply(250, response)

    async def delivered(self, message_id: str) -> bool | None:
        """SMTP has no way to ask; a relay with a lookup service (our sink has one) can be asked."""
        if not self._probe_url:
            return None
        try:
            timeout = aiohttp.ClientTimeout(total=self._timeout_s)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self._probe_url, params={"message_id": message_id}) as response,
            ):
                if response.status != 200:
                    return None
                answer = msgspec.json.decode(await response.read(), type=_ProbeAnswer)
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        return answer.delivered

    async def close(self) -> None:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


class GmailTransport:
    """users.messages.send through the Gmail client of the sending account (its quota limiter
    included); delivery of an uncertain message is checked with a search by Message-ID."""

    def __init__(self, client: GmailClient) -> None:
        self._client = client

    async def send(self, envelope_from: str, recipient: str, message: bytes) -> Outcome:
        del envelope_from, recipient  # Gmail takes them from the message's headers
        try:
            ref = await self._client.send_raw(message)
        except TransientError as error:  # the request may have gone through: uncertain
            return Outcome(verdict="unknown", message=str(error))
        except ValidationError as error:  # 400: Gmail refuses this message (its recipient, its size)
            return Outcome(verdict="bounced", message=str(error))
        except MailrayError as error:  # quota, a revoked grant: the account's trouble, not the address's
            return Outcome(verdict="retry", message=str(error))
        return Outcome(verdict="accepted", code=250, provider_message_id=ref.id)

    async def delivered(self, message_id: str) -> bool | None:
        try:
            page = await self._client.list_messages(q=f"rfc822msgid:{message_id.strip('<>')}", max_results=1)
        except MailrayError:
            return None
        return bool(page.messages)

    async def close(self) -> None:
        await self._client.close()


class AccountTransports:
    """The Gmail API transport of each sending account (a campaign's accountId), opened on first
    use with the account's stored tokens and kept until `close`."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._open: dict[UUID, GmailTransport] = {}
        self._opening = asyncio.Lock()

    async def get(self, account_id: UUID) -> GmailTransport:
        async with self._opening:
            transport = self._open.get(account_id)
            if transport is None:
                transport = GmailTransport(await open_account_client(self._services, account_id))
                self._open[account_id] = transport
            return transport

    async def close(self) -> None:
        opened, self._open = list(self._open.values()), {}
        for transport in opened:
            await transport.close()
