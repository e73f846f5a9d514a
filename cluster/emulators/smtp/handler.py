"""The sink's aiosmtpd hooks: greeting and extensions, AUTH, the rules at RCPT TO, storing at DATA.

aiosmtpd finds hooks by name (`handle_*`, `auth_*`) on this object, so it holds nothing else
with those prefixes.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from cluster.emulators.smtp.protocol import NULL_PATH, SinkEnvelope, SinkSMTP

if TYPE_CHECKING:
    from cluster.emulators.smtp.server import SmtpSink

# Advertised on top of aiosmtpd's SIZE, 8BITMIME and SMTPUTF8: aiosmtpd reads commands in order
# from a buffered stream, so pipelined commands are answered correctly.
EXTRA_EXTENSIONS = ("250-PIPELINING",)


class SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    def _greeted(self, session: Session, hostname: str) -> None:
        if not session.host_name:
            self._sink.stats.sessions += 1
        session.host_name = hostname

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self._greeted(session, hostname)
        lines = [
            line for line in responses if self._sink.login is not None or not line.startswith("250-AUTH")
        ]
        return [*lines[:-1], *EXTRA_EXTENSIONS, lines[-1]]

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        self._greeted(session, hostname)
        return f"250 {self._sink.config.hostname}"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        """aiosmtpd's authenticator for AUTH PLAIN and LOGIN: the configured user and password."""
        login = self._sink.login
        good = (
            login is not None
            and isinstance(auth_data, LoginPassword)
            and hmac.compare_digest(auth_data.login, login[0])
            and hmac.compare_digest(auth_data.password, login[1])
        )
        if good:
            self._sink.stats.auth_successes += 1
            return AuthResult(success=True)
        self._sink.stats.auth_failures += 1
        return AuthResult(success=False, handled=False)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self._sink.login is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self._sink.stats.transactions += 1
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address == NULL_PATH:
            return "553 5.1.3 the null path is no recipient"
        verdict = self._sink.rules.decide(address)
        if verdict is not None and not verdict.bounce:
            self._sink.stats.reject(verdict.reply.code)
            return verdict.reply.line
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        if verdict is not None and isinstance(envelope, SinkEnvelope):
            envelope.bounces.append((address, verdict.reply))
        return "250 2.1.5 OK"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._sink.stats.resets += 1
        return "250 2.0.0 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(server, SinkSMTP) and isinstance(envelope, SinkEnvelope)
        return self._sink.accept(server.connection_id, envelope)
