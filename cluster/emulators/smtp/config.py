"""Settings of one SMTP sink (its rules can be replaced at run time through the admin API)."""

from __future__ import annotations

import msgspec

from cluster.emulators.smtp.rules import parse_rules
from mail.errors import ValidationError

DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024


class SinkConfig(msgspec.Struct, kw_only=True):
    store: str  # the maildir accepted messages are written to (created if missing)
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, see SmtpSink.port after start()
    admin_port: int | None = 0  # the admin HTTP API; 0: a free port, None: no admin API
    # Where the DSNs of `bounce:` rules go; bounce rules are refused without it.
    dsn_maildir: str | None = None
    rules: list[str] = msgspec.field(default_factory=list)  # PATTERN=REPLY, see rules.py
    # "user:password": AUTH PLAIN and LOGIN are offered (without TLS) and required before MAIL.
    credentials: str | None = None
    hostname: str = "sink.mailray.test"  # the greeting, Reporting-MTA and maildir names
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # advertised as SIZE; more is refused (552)
    bounce_delay_s: float = 0.0  # between accepting a message and delivering its DSN
    idle_timeout_s: float = 300.0  # a connection silent this long is closed
    fsync: bool = False  # fsync each stored message before its rename (slower; a test bed rarely needs it)

    def __post_init__(self) -> None:
        for name, value in (("port", self.port), ("admin_port", self.admin_port)):
            if value is not None and not 0 <= value <= 65535:
                raise ValidationError(f"{name} must be between 0 and 65535, got {value}", field=name)
        if not self.store:
            raise ValidationError("store (a maildir directory) is required", field="store")
        if self.credentials is not None and (
            ":" not in self.credentials or not self.credentials.split(":", 1)[0]
        ):
            raise ValidationError("credentials must be user:password", field="credentials")
        if self.max_message_bytes < 1:
            raise ValidationError("max_message_bytes must be positive", field="max_message_bytes")
        if self.bounce_delay_s < 0:
            raise ValidationError("bounce_delay_s must not be negative", field="bounce_delay_s")
        if self.idle_timeout_s <= 0:
            raise ValidationError("idle_timeout_s must be positive", field="idle_timeout_s")
        rules = parse_rules(self.rules)
        if any(rule.bounce for rule in rules) and self.dsn_maildir is None:
            raise ValidationError("bounce: rules need a DSN maildir (--dsn-maildir)", field="dsn_maildir")

    @property
    def login(self) -> tuple[bytes, bytes] | None:
        if self.credentials is None:
            return None
        user, _, password = self.credentials.partition(":")
        return user.encode(), password.encode()
