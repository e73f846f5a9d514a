"""An SMTP sink: the campaign sender's test bed. A real SMTP server (aiosmtpd; ESMTP, PIPELINING,
8BITMIME, SMTPUTF8, optional AUTH PLAIN/LOGIN) that stores every accepted message in a maildir,
refuses recipients by pattern at RCPT TO (permanently, transiently, for the first N attempts,
or with a 421 that closes the connection), bounces asynchronously with RFC 3464 DSNs into a
bounce maildir, and answers an admin HTTP API.

    from cluster.emulators.smtp import SinkConfig, SmtpSink, SmtpSinkAdmin, start_sink
"""

from cluster.emulators.smtp.admin_client import SmtpSinkAdmin
from cluster.emulators.smtp.config import SinkConfig
from cluster.emulators.smtp.index import IndexEntry, MessagePage
from cluster.emulators.smtp.server import SmtpSink, start_sink
from cluster.emulators.smtp.stats import SinkStats

__all__ = ["IndexEntry", "MessagePage", "SinkConfig", "SinkStats", "SmtpSink", "SmtpSinkAdmin", "start_sink"]
