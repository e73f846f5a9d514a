"""The `mailray` command line as a new user runs it, against a database of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from mail.config import load_settings
from mail.crypto import key_id_of, load_keyring
from mail.key_rotation import column_context

pytestmark = [pytest.mark.integration, pytest.mark.storage]

MAILRAY = str(Path(sys.executable).with_name("mailray"))


def _mailray(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAILRAY, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def cli_env(empty_database_factory: Callable[[], str], redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "MAILRAY_DATABASE__URL": empty_database_factory(),
        "MAILRAY_REDIS__URL": redis_url,
        "MAILRAY_APP__DATA_DIR": str(tmp_path / "data"),
    }


def test_a_new_user_gets_a_workspace_and_keys(cli_env: dict[str, str]) -> None:
    migrated = _mailray(cli_env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "migration 0001_core applied" in migrated.stdout
    assert "keyring ready" in migrated.stdout
    assert _mailray(cli_env, "migrate").stdout.count("applied") == 0  # nothing left to do

    created = _mailray(cli_env, "workspace", "create", "Acme Sales", "--owner-email", "ana@acme.test")
    assert created.returncode == 0, created.stderr
    assert "workspace acme-sales" in created.stdout
    assert "API key (shown once): mr_" in created.stdout

    key = _mailray(cli_env, "apikey", "create", "--workspace", "acme-sales", "--name", "laptop")
    assert key.returncode == 0, key.stderr
    assert key.stdout.strip().startswith("mr_")
    with psycopg.connect(cli_env["MAILRAY_DATABASE__URL"]) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM api_keys ORDER BY created_at")]
    assert names == ["created with the workspace", "laptop"]

    duplicate = _mailray(cli_env, "workspace", "create", "Acme Sales")
    assert duplicate.returncode == 2
    assert duplicate.stderr.strip() == "mailray: a workspace with slug 'acme-sales' exists already"


def test_a_bad_setting_stops_with_one_line_naming_the_key(cli_env: dict[str, str]) -> None:
    result = _mailray({**cli_env, "MAILRAY_DATABASE__POOL_MAX_SIZE": "many"}, "migrate")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "mailray: settings: database.pool_max_size (MAILRAY_DATABASE__POOL_MAX_SIZE): expected int, got str"
    ]


def test_production_without_keys_refuses_to_start(cli_env: dict[str, str]) -> None:
    result = _mailray({**cli_env, "MAILRAY_APP__MODE": "production"}, "migrate")
    assert result.returncode == 2
    assert "security.keys" in result.stderr
    assert not (Path(cli_env["MAILRAY_APP__DATA_DIR"]) / "keyring.json").exists()


def test_keys_rotate_re_encrypts_stored_secrets(cli_env: dict[str, str]) -> None:
    assert _mailray(cli_env, "migrate").returncode == 0
    settings = load_settings(environ=cli_env)
    old_keyring = load_keyring(settings)
    with psycopg.connect(cli_env["MAILRAY_DATABASE__URL"]) as conn:
        workspace = conn.execute(
            "INSERT INTO workspaces (name, slug) VALUES ('W', 'w') RETURNING id"
        ).fetchone()
        assert workspace is not None
        user = conn.execute(
            "INSERT INTO users (workspace_id, email) VALUES (%s, 'u@w.test') RETURNING id", workspace
        ).fetchone()
        assert user is not None
        accounts: dict[UUID, str] = {}
        for index in range(25):
            row = conn.execute(
                "INSERT INTO email_accounts (workspace_id, user_id, email, provider) VALUES (%s, %s, %s, 'gmail') RETURNING id",
                (workspace[0], user[0], f"box{index}@w.test"),
            ).fetchone()
            assert row is not None
            token = f"refresh-token-{index}"
            context = column_context("email_accounts", "refresh_token_enc", [row[0]])
            conn.execute(
                "UPDATE email_accounts SET refresh_token_enc = %s WHERE id = %s",
                (old_keyring.encrypt_text(token, context=context), row[0]),
            )
            accounts[row[0]] = token

    rotated = _mailray(cli_env, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "email_accounts.refresh_token_enc: 25 re-encrypted of 25" in rotated.stdout

    new_keyring = load_keyring(settings)
    assert new_keyring.newest_id == old_keyring.newest_id + 1
    with psycopg.connect(cli_env["MAILRAY_DATABASE__URL"]) as conn:
        rows = conn.execute("SELECT id, refresh_token_enc FROM email_accounts").fetchall()
    for account_id, blob in rows:
        assert key_id_of(blob) == new_keyring.newest_id
        context = column_context("email_accounts", "refresh_token_enc", [account_id])
        assert new_keyring.decrypt_text(blob, context=context) == accounts[account_id]
    again = _mailray(cli_env, "keys", "rotate", "--no-new-key")
    assert "email_accounts.refresh_token_enc: 0 re-encrypted of 25" in again.stdout


def test_bounces_ingest_reads_a_maildir_once_and_refuses_a_folder_that_is_none(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    assert _mailray(cli_env, "migrate").returncode == 0
    maildir = tmp_path / "bounces"
    (maildir / "new").mkdir(parents=True)
    (maildir / "new" / "1").write_bytes(
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\nTo: news@sender.test\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        b"--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
        b"Final-Recipient: rfc822; nobody-here@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n--b1--\r\n"
    )
    first = _mailray(cli_env, "bounces", "ingest", "--maildir", str(maildir))
    assert first.returncode == 0, first.stderr
    counts = json.loads(first.stdout)
    assert (counts["reports"], counts["recipients"], counts["unmatched"]) == (
        1,
        1,
        1,
    )  # nothing of ours bounced
    assert [path.name for path in (maildir / "cur").iterdir()] == ["1:2,S"]
    assert (
        json.loads(_mailray(cli_env, "bounces", "ingest", "--maildir", str(maildir)).stdout)["reports"] == 0
    )

    missing = _mailray(cli_env, "bounces", "ingest", "--maildir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"mailray: {tmp_path / 'nowhere'}: not a maildir (it has no new/ folder)"
