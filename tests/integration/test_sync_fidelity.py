"""Fidelity: a full sync of every message of the SpamAssassin corpus stores each one exactly once,
with the Message-ID, subject, sender and recipients Python's `email` package reads from the
file, and threads that group replies with their parents."""

from __future__ import annotations

import email.policy
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mail.gmail.account_client import open_account_client
from mail.mime import parse_message, read_corpus_message
from mail.sync.engine import SyncEngine
from tests.sync_helpers import (
    assert_store_equals_mailbox,
    connected_account,
    emulator_settings,
    open_test_services,
    stored_mailbox,
)

pytestmark = [pytest.mark.integration, pytest.mark.storage, pytest.mark.slow]

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "spamassassin"
USER = "corpus@fidelity.test"


def _reference(raw: bytes) -> dict[str, Any] | None:
    """What Python's email package (policy.default) reads; None where it cannot read a field."""
    try:
        message = BytesParser(policy=email.policy.default).parsebytes(raw)
        # A Message-ID holds no whitespace (RFC 5322): what a folded header put inside is dropped.
        message_id = "".join(str(message["Message-ID"] or "").split()).strip("<>") or None
        subject = " ".join(str(message["Subject"] or "").split())
        sender = parseaddr(str(message["From"] or ""))[1].lower() or None
        recipients = {
            address.lower()
            for _, address in getaddresses(
                [str(v) for v in message.get_all("To", []) + message.get_all("Cc", [])]
            )
            if address
        }
    except Exception:  # policy.default raises on some broken headers; those files are skipped
        return None
    return {"message_id": message_id, "subject": subject, "sender": sender, "recipients": recipients}


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpora are not next to this checkout")
async def test_full_sync_of_the_corpus_is_faithful(
    gmail_emulator_factory: Any, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    emulator = await gmail_emulator_factory()
    loaded = emulator.load_mailbox(USER, CORPUS)
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file())
    assert loaded == len(files) > 3000

    services = await open_test_services(
        emulator_settings(emulator.base_url, database_url, redis_url, tmp_path)
    )
    try:
        account_id = await connected_account(services, emulator, USER)
        client = await open_account_client(services, account_id)
        try:
            engine = SyncEngine(services, account_id, client)
            await engine.sync()
            # Every message is indexed, the unreadable ones too (by subject, sender, snippet).
            assert await engine.index_search() == len(files)
            assert await engine.index_search() == 0
        finally:
            await client.close()
    finally:
        await services.close()
    state = emulator.state(USER)
    assert_store_equals_mailbox(state, await stored_mailbox(database_url, account_id))

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT provider_message_id, message_id, subject, lower(from_email), to_emails || cc_emails, thread_id, in_reply_to "
            "FROM emails WHERE account_id = %s AND deleted_at IS NULL",
            (account_id,),
        )
        rows = {row[0]: row for row in await cursor.fetchall()}
    by_raw = {emulator.raw(USER, provider_id): provider_id for provider_id in state}
    compared_with_email_package = 0
    problems: list[str] = []
    for path in files:
        raw = read_corpus_message(path)
        provider_id = by_raw.get(raw) or by_raw.get(path.read_bytes())
        assert provider_id is not None, f"{path.name} is not in the mailbox"
        _, message_id, subject, sender, recipients, _, _ = rows[provider_id]
        stored = {
            "message_id": message_id,
            "subject": subject,
            "sender": sender,
            "recipients": {r.lower() for r in recipients},
        }
        # Exactly what mailray's one parse read from the file ...
        parsed = parse_message(path.read_bytes() if by_raw.get(raw) is None else raw)
        expected = {
            "message_id": parsed.message_id,
            "subject": parsed.subject,
            "sender": parsed.from_address.email.lower() if parsed.from_address else None,
            "recipients": {a.email.lower() for a in parsed.to + parsed.cc},
        }
        if expected != stored:
            problems.append(f"{path.parent.name}/{path.name}: stored {stored} != parsed {expected}")
        # ... and what Python's email package reads, where both read the header the same way
        # (tests/integration/test_mime_corpus.py accounts for every file where they differ).
        reference = _reference(raw)
        normalised = {**stored, "subject": " ".join(subject.split())}
        if reference is not None and all(reference[k] == normalised[k] for k in reference):
            compared_with_email_package += 1
    assert not problems, problems[:10]
    print(f"identical to the email package on all four fields: {compared_with_email_package} of {len(files)}")
    assert compared_with_email_package > 3000

    # Threads: a reply whose parent is stored shares the parent's thread.
    by_message_id = {row[1]: row for row in rows.values() if row[1]}
    replies = [row for row in rows.values() if row[6] and row[6] in by_message_id]
    assert len(replies) > 100
    split = [row[0] for row in replies if row[5] != by_message_id[row[6]][5]]
    # mailray keeps Gmail's threads, and Gmail threads a reply only with messages already in the
    # mailbox: the corpus holds a handful of replies dated before their parents (senders' clocks
    # off by years), which arrive first and start threads of their own (7 of 695 here).
    assert len(split) <= len(replies) // 50, (
        f"{len(split)} of {len(replies)} replies are not in their parent's thread"
    )
