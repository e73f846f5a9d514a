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
import contextlib
import re
from typing import Literal, Protocol, cast
from uuid import UUID

import aiohttp
import aiosmtplib
import msgspec

from mail.errors import MailrayError, TransientError, ValidationError
from mail.gmail.account_client import open_account_client
from mail.gmail.client import GmailClient
from mail.sending.smtp_session import SmtpRefused, SmtpSession, payload
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


async def _exchange(
    session: SmtpSession, envelope_from: str, recipient: str, message: bytes, timeout_s: float
) -> str:
    """The session's transaction for one recipient under one deadline (TimeoutError past
    `timeout_s`). A refusal raises SmtpRefused even when the RSET after it gets no answer in time:
    the refusal is the verdict, and the connection, its envelope not known to be clean, is closed
    instead of reused."""
    data, size = payload(message)
    try:
        async with asyncio.timeout(timeout_s):
            return await session.send(envelope_from, recipient, data, size)
    except SmtpRefused as refused:
        try:
            async with asyncio.timeout(timeout_s):
                await session.reset(refused.code)
        except TimeoutError:
            session.abort()
        raise


def _lost(session: SmtpSession, why: str) -> Outcome:
    """A connection that broke or fell silent: once the message was written it may have been
    delivered (unknown); before, it cannot have been (retry, with no doubt left on the row)."""
    if session.message_written:
        return Outcome(verdict="unknown", message=why)
    return Outcome(verdict="retry", message=f"{why}, before the message was sent")


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
        self._idle: asyncio.Queue[SmtpSession] = asyncio.Queue()
        self._slots = asyncio.Semaphore(connections)
        self.connects = 0

    async def _connection(self) -> SmtpSession:
        """An idle connection, or a new one: aiosmtplib connects, greets, starts TLS and logs in,
        then a SmtpSession takes the connection over for the mail transactions."""
        while not self._idle.empty():
            session = self._idle.get_nowait()
            if session.is_connected:
                return session
        client = aiosmtplib.SMTP(
            hostname=self._host, port=self._port, timeout=self._timeout_s, start_tls=self._start_tls
        )
        await client.connect()
        try:
            if client.is_ehlo_or_helo_needed:  # the greeting first: the session reads its extensions
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            if self._credentials is not None:
                await client.login(*self._credentials)  # type: ignore[arg-type]
        except BaseException:
            client.close()  # not left open until the collector finds it
            raise
        if client.transport is None:
            raise aiosmtplib.SMTPServerDisconnected(f"{self._host}:{self._port} closed the connection")
        session = SmtpSession(
            cast(asyncio.Transport, client.transport),  # a stream (uvloop's is not a subclass)
            pipelining=client.supports_extension("pipelining"),
            size=client.supports_extension("size"),
            smtputf8=client.supports_extension("smtputf8"),
        )
        self.connects += 1
        return session

    async def send(self, envelope_from: str, recipient: str, message: bytes) -> Outcome:
        async with self._slots:
            try:
                session = await self._connection()
            except (aiosmtplib.SMTPException, OSError) as error:
                return Outcome(verdict="retry", message=f"cannot connect: {error}")
            try:
                text = await _exchange(session, envelope_from, recipient, message, self._timeout_s)
            except SmtpRefused as refused:
                return _reply(refused.code, refused.text)
            except ValueError as error:  # nothing was sent: the address cannot be written for this server
                status = "5.6.7" if "SMTPUTF8" in str(error) else "5.1.3"
                return _reply(553, f"{status} not sent: {error}")
            except TimeoutError:
                session.abort()  # an answer may still come: the connection is out of step
                return _lost(session, f"no answer within {self._timeout_s:g} s")
            except ConnectionError as error:
                return _lost(session, f"connection lost while sending: {error}")
            finally:
                if session.is_connected:
                    self._idle.put_nowait(session)
            return _reply(250, text)

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
            session = self._idle.get_nowait()
            with contextlib.suppress(TimeoutError):  # quit closes the connection however it ends
                async with asyncio.timeout(self._timeout_s):
                    await session.quit()


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
