"""The SMTP sink: an aiosmtpd server on the running event loop that stores what it accepts, answers
per-recipient failure rules, bounces asynchronously with RFC 3464 DSNs, and has an admin API.

    async with start_sink(store=tmp_path / "mail", rules=["*@unknown.test=550 5.1.1 user unknown"]) as sink:
        # send to sink.host:sink.port; ask sink.admin_url (or sink.index, sink.stats in-process)

Every accepted message is written to the `store` maildir (tmp/, then renamed into new/) before the
250 is sent, byte for byte as received (dot-unstuffed, CRLF kept). The writes are synchronous: a
page-cache write of a mail-sized message is cheaper than a hop to a thread, and it keeps message
ids in the order of the files. The index keeps envelopes only (see `index`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
from aiohttp import web

from cluster.emulators.smtp import admin
from cluster.emulators.smtp.config import SinkConfig
from cluster.emulators.smtp.dsn import build_dsn, header_section
from cluster.emulators.smtp.handler import SinkHandler
from cluster.emulators.smtp.index import MessageIndex
from cluster.emulators.smtp.maildir import Maildir, unique_name
from cluster.emulators.smtp.protocol import NULL_PATH, SinkEnvelope, SinkSMTP, quiet_aiosmtpd_log
from cluster.emulators.smtp.rules import Reply, RuleSet, parse_rules
from cluster.emulators.smtp.stats import SinkStats
from mail.errors import NotFound, ValidationError

_MESSAGE_ID = re.compile(rb"^message-id[ \t]*:[ \t]*((?:.*)(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_IDENT = "mailray SMTP sink"

log = logging.getLogger(__name__)


def message_id_of(content: bytes) -> str:
    """The Message-ID header's value ("<...>"), "" when there is none."""
    match = _MESSAGE_ID.search(header_section(content))
    if match is None:
        return ""
    return b" ".join(match[1].split()).decode("utf-8", "replace")


class SmtpSink:
    def __init__(self, config: SinkConfig) -> None:
        self.config = msgspec.structs.replace(config)
        self.stats = SinkStats()
        self.index = MessageIndex()
        self.store = Maildir(config.store, fsync=config.fsync)
        self.dsn_store = Maildir(config.dsn_maildir, fsync=config.fsync) if config.dsn_maildir else None
        self.rules = RuleSet(parse_rules(config.rules))
        self.login = config.login
        self._handler = SinkHandler(self)
        self._run = secrets.token_hex(3)  # in maildir names: unique across runs of one pid
        self._connection_ids = 0
        self._dsn_sequence = 0
        self._open: set[SinkSMTP] = set()
        self._bounces: set[asyncio.Task[None]] = set()
        self._hurry = asyncio.Event()  # set: pending bounces stop waiting out bounce_delay_s
        self._server: asyncio.Server | None = None
        self._admin: web.AppRunner | None = None
        self._port: int | None = None
        self._admin_port: int | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def host(self) -> str:
        host = self.config.host
        return "127.0.0.1" if host in {"", "0.0.0.0"} else "::1" if host == "::" else host  # noqa: S104

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sink is not started")
        return self._port

    @property
    def admin_url(self) -> str:
        if self._admin_port is None:
            raise RuntimeError("the sink is not started, or has no admin API")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._admin_port}"

    def _protocol(self) -> SinkSMTP:
        options: dict[str, Any] = {
            "data_size_limit": self.config.max_message_bytes,
            "enable_SMTPUTF8": True,
            "hostname": self.config.hostname,  # else aiosmtpd looks up the FQDN per connection
            "ident": _IDENT,
            "timeout": self.config.idle_timeout_s,
            "loop": asyncio.get_running_loop(),
        }
        if self.login is not None:
            # AUTH over plain TCP: a test bed's credentials, not a secret worth TLS. Required
            # before MAIL by the handler, not by aiosmtpd (which warns when told so without TLS).
            options.update(auth_require_tls=False, authenticator=self._handler.authenticate)
        return SinkSMTP(self._handler, listener=self, **options)

    async def start(self) -> None:
        if self._server is not None:
            return
        quiet_aiosmtpd_log()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._protocol, self.config.host, self.config.port, backlog=1024)
        self._server = server
        self._port = int(server.sockets[0].getsockname()[1])
        if self.config.admin_port is not None:
            runner = web.AppRunner(self.make_admin_app(), access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self.config.host, self.config.admin_port)
            try:
                await site.start()
            except BaseException:
                await runner.cleanup()
                await self.stop()
                raise
            self._admin = runner
            self._admin_port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening, close open connections, deliver pending bounces now, stop the admin API."""
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            for connection in list(self._open):
                if connection.transport is not None:
                    connection.transport.close()
            await server.wait_closed()
            for _ in range(100):  # closed transports report connection_lost on a later loop turn
                if not self._open:
                    break
                await asyncio.sleep(0.01)
        self._hurry.set()
        if self._bounces:
            await asyncio.gather(*self._bounces, return_exceptions=True)
        if self._admin is not None:
            runner, self._admin = self._admin, None
            await runner.cleanup()
        self._port = self._admin_port = None

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.stop()

    def make_admin_app(self) -> web.Application:
        app = web.Application()
        admin.add_routes(app.router, self)
        return app

    # ------------------------------------------------------------- connections

    def connection_opened(self, protocol: SinkSMTP) -> int:
        self._connection_ids += 1
        self._open.add(protocol)
        self.stats.connections += 1
        self.stats.connections_open += 1
        return self._connection_ids

    def connection_closed(self, protocol: SinkSMTP, *, closed_by_421: bool) -> None:
        self._open.discard(protocol)
        self.stats.connections_open -= 1
        if closed_by_421:
            self.stats.closed_by_421 += 1

    # ---------------------------------------------------------------- messages

    def _name(self, message: int, received: float) -> str:
        return unique_name(int(received), message, self._run, self.config.hostname)

    def accept(self, connection: int, envelope: SinkEnvelope) -> str:
        """Store one message and index it (the DATA hook); the reply to send."""
        content = envelope.original_content or b""
        received = time.time()
        message = self.index.next_id
        try:
            self.store.deliver(self._name(message, received), content)
        except OSError as error:
            return f"451 4.3.0 cannot store the message: {error.strerror or error}"
        mail_from = "" if envelope.mail_from in {None, NULL_PATH} else str(envelope.mail_from)
        bounced = [recipient for recipient, _ in envelope.bounces]
        self.index.add(
            received=received,
            connection=connection,
            size=len(content),
            mail_from=mail_from,
            recipients=list(envelope.rcpt_tos),
            message_id=message_id_of(content),
            bounced=bounced,
        )
        self.stats.accepted += 1
        self.stats.accepted_recipients += len(envelope.rcpt_tos)
        self.stats.accepted_bytes += len(content)
        if envelope.bounces:
            self._schedule_bounce(mail_from, list(envelope.bounces), header_section(content), received)
        return f"250 2.0.0 OK queued as {message}"

    def raw(self, message: int) -> bytes:
        """The stored bytes of message `message`."""
        name = self._name(message, self.index.received(message))
        try:
            return self.store.read(name)
        except FileNotFoundError:
            raise NotFound(f"message {message} is no longer in the store") from None

    def delivered(self, message_id: str) -> bool:
        """Whether a message with this Message-ID was accepted (brackets optional)."""
        wanted = message_id.strip()
        if not wanted.startswith("<"):
            wanted = f"<{wanted}>"
        return self.index.has_message_id(wanted)

    async def reset(self, *, keep_files: bool = False) -> int:
        """Forget every message, count and rule attempt; remove the stored files unless told not
        to (DSNs stay: they belong to whoever reads the bounce maildir). Messages forgotten."""
        names = [self._name(message, self.index.received(message)) for message in self.index.ids()]
        self.index.clear()
        # What is live stays: open connections, and bounces that will still be delivered.
        self.stats = SinkStats(
            connections_open=self.stats.connections_open, bounces_pending=self.stats.bounces_pending
        )
        self.rules = RuleSet(self.rules.rules)
        if not keep_files and names:
            await asyncio.to_thread(self._remove, names)
        return len(names)

    def _remove(self, names: Iterable[str]) -> None:
        for name in names:
            self.store.remove(name)

    def set_rules(self, texts: list[str]) -> RuleSet:
        """Replace the rules (and forget `@N` attempt counts)."""
        rules = RuleSet(parse_rules(texts))
        if rules.has_bounces and self.dsn_store is None:
            raise ValidationError("bounce: rules need a DSN maildir (--dsn-maildir)", field="rules")
        self.rules = rules
        return rules

    # ----------------------------------------------------------------- bounces

    def _schedule_bounce(
        self, envelope_from: str, failures: list[tuple[str, Reply]], headers: bytes, arrival: float
    ) -> None:
        if not envelope_from:
            self.stats.dsns_skipped += 1  # never bounce a bounce
            return
        self.stats.bounces_pending += 1
        task = asyncio.get_running_loop().create_task(self._bounce(envelope_from, failures, headers, arrival))
        self._bounces.add(task)
        task.add_done_callback(self._bounces.discard)

    async def _bounce(
        self, envelope_from: str, failures: list[tuple[str, Reply]], headers: bytes, arrival: float
    ) -> None:
        try:
            if self.config.bounce_delay_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), self.config.bounce_delay_s)
            if self.dsn_store is None:
                return
            now = time.time()
            self._dsn_sequence += 1
            data = build_dsn(
                original=headers,
                envelope_from=envelope_from,
                failures=failures,
                reporting_mta=self.config.hostname,
                arrival=arrival,
                now=now,
            )
            name = unique_name(int(now), self._dsn_sequence, self._run, self.config.hostname)
            try:
                self.dsn_store.deliver(name, data)
            except OSError as error:
                log.warning("DSN to %s not delivered: %s", envelope_from, error)
                self.stats.dsns_failed += 1
                return
            self.stats.dsns_delivered += 1
        finally:
            self.stats.bounces_pending -= 1

    async def flush_bounces(self) -> None:
        """Deliver every pending DSN now, without waiting out bounce_delay_s."""
        self._hurry.set()
        try:
            while self._bounces:
                await asyncio.gather(*self._bounces, return_exceptions=True)
        finally:
            if self._server is not None:
                self._hurry.clear()


@contextlib.asynccontextmanager
async def start_sink(config: SinkConfig | None = None, **settings: Any) -> AsyncIterator[SmtpSink]:
    """A started sink on the running loop, stopped on exit: `start_sink(store=path, rules=[...])`
    with SinkConfig fields, or `start_sink(config)`. Yields the sink (host, port, admin_url)."""
    if config is None:
        if isinstance(settings.get("store"), Path):
            settings["store"] = str(settings["store"])
        if isinstance(settings.get("dsn_maildir"), Path):
            settings["dsn_maildir"] = str(settings["dsn_maildir"])
        config = SinkConfig(**settings)
    async with SmtpSink(config) as sink:
        yield sink
