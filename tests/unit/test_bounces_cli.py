"""`mailray bounces classify FILE...`: one JSON line per file; exit 1 only for unreadable files."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cluster.cli import app

DSN = b"""\
From MAILER-DAEMON Thu Oct  1 09:00:02 2026
Return-Path: <>
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: news@mailray.test
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Your message could not be delivered to one or more recipients.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; kijitora@example.org
Action: failed
Status: 5.2.2
Diagnostic-Code: smtp; 552 5.2.2 Mailbox full

Final-Recipient: rfc822; mikeneko@example.org
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--b--
"""
NOT_A_BOUNCE = b"From: Kijitora <kijitora@example.org>\nTo: news@mailray.test\nSubject: hello\n\nHi!\n"


def _lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_classify_prints_a_line_per_file(tmp_path: Path) -> None:
    bounce, letter = tmp_path / "bounce.eml", tmp_path / "letter.eml"
    bounce.write_bytes(DSN)
    letter.write_bytes(NOT_A_BOUNCE)

    result = CliRunner().invoke(app, ["bounces", "classify", str(bounce), str(letter)])

    assert result.exit_code == 0, result.output
    first, second = _lines(result.output)
    assert first == {
        "file": str(bounce),
        "is_bounce": True,
        "recipients": ["kijitora@example.org", "mikeneko@example.org"],
        "status": "5.2.2",
        "reply_code": "552",
        "kind": "soft",
        "reason": "mailboxfull",
        "details": [
            {
                "recipient": "kijitora@example.org",
                "kind": "soft",
                "reason": "mailboxfull",
                "status": "5.2.2",
                "reply_code": "552",
                "diagnostic": "552 5.2.2 Mailbox full",
                "action": "failed",
                "remote_mta": "",
            },
            {
                "recipient": "mikeneko@example.org",
                "kind": "hard",
                "reason": "userunknown",
                "status": "5.1.1",
                "reply_code": "550",
                "diagnostic": "550 5.1.1 User unknown",
                "action": "failed",
                "remote_mta": "",
            },
        ],
    }
    assert second == {
        "file": str(letter),
        "is_bounce": False,
        "recipients": [],
        "status": "",
        "reply_code": "",
        "kind": None,
        "reason": None,
        "details": [],
    }


def test_an_unreadable_file_is_an_error_line_and_exit_1(tmp_path: Path) -> None:
    bounce = tmp_path / "bounce.eml"
    bounce.write_bytes(DSN)
    missing = tmp_path / "missing.eml"

    result = CliRunner().invoke(app, ["bounces", "classify", str(missing), str(bounce), str(tmp_path)])

    assert result.exit_code == 1
    lines = _lines(result.output)
    assert [line["file"] for line in lines] == [str(missing), str(bounce), str(tmp_path)]
    assert "error" in lines[0] and "error" in lines[2]
    assert lines[1]["is_bounce"] is True


def test_classify_needs_a_file() -> None:
    result = CliRunner().invoke(app, ["bounces", "classify"])

    assert result.exit_code != 0
