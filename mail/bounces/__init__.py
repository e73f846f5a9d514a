"""Bounces: RFC 3464 reports, text bounces and provider webhooks, read and classified.

`parse_bounce(raw)` reads any message (mail.bounces.parse: RFC 3464 reports in mail.bounces.dsn,
text bounces in mail.bounces.heuristics); `classify` says why a recipient failed and whether the
address is dead (mail.bounces.classify); Amazon SES and SendGrid webhooks are read by
mail.bounces.webhooks; `mailray bounces classify` prints mail.bounces.summary's lines. Records
are in models.bounces; benchmarks/bounce_agreement.py measures all of it against sisimai's
labelled corpus.
"""

from mail.bounces.classify import classify
from mail.bounces.parse import parse_bounce

__all__ = ["classify", "parse_bounce"]
