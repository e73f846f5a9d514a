"""VERP return paths: each message's envelope sender names its recipient, so that a bounce says
whom it is about even when it names another address (mail forwarded on) or none at all.

    verp_sender("bounces@mail.acme.test", "ann@example.org") == "bounces+ann=example.org@mail.acme.test"

The bounce comes back to that address; mail.bounces.parse reads the recipient back from the
bounce's To, Delivered-To, X-Original-To or Envelope-To, and mail.bounces.ingest links by it when
the failed address matches nothing sent.
"""

from __future__ import annotations

import re

# What reads back unchanged: no "+" or "=" (the separators), no "@", quotes, spaces or <>.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*./?^_`{|}~-]+")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}")


def valid_return_path(address: str) -> bool:
    """Whether `address` can carry recipients: local@domain with neither "+" nor "=" before the @
    (and, the same test, whether a recipient's address reads back from a VERP local part)."""
    local, _, domain = address.rpartition("@")
    return bool(_LOCAL.fullmatch(local)) and bool(_DOMAIN.fullmatch(domain))


def verp_sender(return_path: str, recipient: str) -> str:
    """`return_path` with `recipient` in its local part; `return_path` as it is for a recipient
    whose address would not read back (a local part with "+" or "=", an address literal)."""
    if not valid_return_path(recipient):
        return return_path
    local, _, domain = recipient.rpartition("@")
    base_local, _, base_domain = return_path.rpartition("@")
    return f"{base_local}+{local}={domain.lower()}@{base_domain}"
