"""aiosmtpd's SMTP protocol, bent where a sink must behave like a real MTA:

- the null reverse-path (`MAIL FROM:<>`, how bounces are sent) is accepted; aiosmtpd refuses it;
- a 421 reply closes the connection after it is sent (RFC 5321 3.8), as QUIT does;
- each connection gets an id and is counted, opened and closed;
- the envelope also carries the recipients that an async bounce rule accepted.
"""

from __future__ import annotations

import logging
from typing import Any, AnyStr, Protocol

from aiosmtpd.smtp import SMTP, Envelope

from cluster.emulators.smtp.rules import Reply

NULL_PATH = "<>"


class _DeprecatedLoginData(logging.Filter):
    """aiosmtpd 1.4 logs a warning about its own deprecated Session.login_data on every successful
    AUTH; with no logging set up, Python prints it to stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in str(record.msg)


_QUIET = _DeprecatedLoginData()


def quiet_aiosmtpd_log() -> None:
    """Drop that one warning from aiosmtpd's logger ("mail.log"); idempotent."""
    logger = logging.getLogger("mail.log")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)


class SinkEnvelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.bounces: list[tuple[str, Reply]] = []  # (recipient, reply) to report in a DSN


class ConnectionListener(Protocol):
    def connection_opened(self, protocol: SinkSMTP) -> int: ...

    def connection_closed(self, protocol: SinkSMTP, *, closed_by_421: bool) -> None: ...


class SinkSMTP(SMTP):
    def __init__(self, handler: Any, *, listener: ConnectionListener, **options: Any) -> None:
        super().__init__(handler, **options)
        self._listener = listener
        self.connection_id = 0
        self._counted = False
        self._closing_after_421 = False

    def _create_envelope(self) -> Envelope:
        return SinkEnvelope()

    def connection_made(self, transport: Any) -> None:
        if not self._counted:  # a STARTTLS upgrade calls this again for the same connection
            self._counted = True
            self.connection_id = self._listener.connection_opened(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        if self._counted:
            self._counted = False
            self._listener.connection_closed(self, closed_by_421=self._closing_after_421)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        stripped = arg.lstrip()
        if stripped.startswith(NULL_PATH):
            return NULL_PATH, stripped[len(NULL_PATH) :]
        return super()._getaddr(arg)

    async def push(self, status: AnyStr) -> None:
        await super().push(status)
        code = status[:3] if isinstance(status, str) else status[:3].decode("ascii", "replace")
        if code == "421" and self.transport is not None and not self.transport.is_closing():
            self._closing_after_421 = True
            # As QUIT does: stop reading commands (pipelined ones included), then close.
            if self._handler_coroutine is not None:
                self._handler_coroutine.cancel()
            self.transport.close()
