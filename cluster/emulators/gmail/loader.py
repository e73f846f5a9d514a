"""Mailboxes from files: a directory of RFC 822 messages (walked recursively), a maildir
(cur/ and new/), or an mbox file.

- A message file that starts with an mbox `From ` line (as in the SpamAssassin corpus) has that
  line removed; the rest is kept byte for byte.
- Files named *.mbox / *.mbx / mbox, and a file given directly whose first line is `From `, are
  split into messages at `From ` lines (with `>From ` unescaped, as mbox writers escape them).
- Files that do not start with a header line (a README, a JSON file) are skipped.
- Labels come from the folder: a path component named like spam or junk -> SPAM, trash -> TRASH,
  sent -> SENT, else INBOX. Maildir `new/` messages and `cur/` messages without the S (seen) flag
  are UNREAD (F: STARRED); elsewhere one message in four, chosen by a hash of its path, is UNREAD.
- internalDate comes from the Date header; without a usable one, a fixed time derived from the
  file's path (so loading twice gives the same mailbox).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from cluster.emulators.gmail import mime
from cluster.emulators.gmail.mailbox import Mailbox

_MBOX_SUFFIXES = {".mbox", ".mbx"}
_FROM_LINE_RE = re.compile(rb"^From [^\n]*\n", re.MULTILINE)
_ESCAPED_FROM_RE = re.compile(rb"^>(>*From )", re.MULTILINE)
_FALLBACK_BASE_MS = 1_000_000_000_000  # 2001-09-09T01:46:40Z
_SKIP_NAMES = {".ds_store", "thumbs.db"}


def _strip_from_line(data: bytes) -> bytes:
    if data.startswith(b"From "):
        newline = data.find(b"\n")
        return b"" if newline < 0 else data[newline + 1 :]
    return data


def split_mbox(data: bytes) -> list[bytes]:
    """The messages of an mbox: split at `From ` lines that start the file or follow a blank line."""
    starts = [
        found.start()
        for found in _FROM_LINE_RE.finditer(data)
        if found.start() == 0 or data[max(0, found.start() - 2) : found.start()] in (b"\n\n", b"\r\n")
    ]
    if not starts:
        return [data] if data.strip() else []
    messages = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(data)
        chunk = _strip_from_line(data[start:end])
        if index + 1 < len(starts):  # the blank line before the next From line belongs to the mbox
            if chunk.endswith(b"\r\n\r\n"):
                chunk = chunk[:-2]
            elif chunk.endswith(b"\n\n"):
                chunk = chunk[:-1]
        chunk = _ESCAPED_FROM_RE.sub(rb"\1", chunk)
        if chunk.strip():
            messages.append(chunk)
    return messages


def _folder_label(relative: Path) -> str:
    for part in relative.parts[:-1]:
        name = part.lower()
        if "spam" in name or "junk" in name:
            return "SPAM"
        if "trash" in name or "deleted" in name:
            return "TRASH"
        if "sent" in name:
            return "SENT"
    return "INBOX"


def _labels(relative: Path, index_in_file: int) -> list[str]:
    labels = [_folder_label(relative)]
    parent = relative.parent.name
    name = relative.name
    if parent in {"cur", "new"}:
        flags = name.rsplit(":2,", 1)[1] if ":2," in name else ""
        if parent == "new" or "S" not in flags:
            labels.append("UNREAD")
        if "F" in flags:
            labels.append("STARRED")
    elif zlib.crc32(f"{relative.as_posix()}#{index_in_file}".encode()) % 4 == 0:
        labels.append("UNREAD")
    return labels


def _fallback_date(relative: Path, index_in_file: int) -> int:
    return _FALLBACK_BASE_MS + (zlib.crc32(f"{relative.as_posix()}#{index_in_file}".encode()) % 10**9) * 1000


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.lower() in _SKIP_NAMES or path.name.startswith("."):
            continue
        if "tmp" in path.relative_to(root).parts[:-1] and (path.parent.parent / "cur").is_dir():
            continue  # a maildir's tmp/: messages being delivered
        yield path


def messages_in(source: str | Path) -> Iterator[tuple[Path, int, bytes]]:
    """(path relative to the source, index within its file, raw bytes) of every message."""
    root = Path(source)
    if root.is_file():
        data = root.read_bytes()
        chunks = split_mbox(data) if data.startswith(b"From ") else [data]
        for index, chunk in enumerate(chunks):
            if mime.looks_like_message(chunk):
                yield Path(root.name), index, chunk
        return
    if not root.is_dir():
        raise FileNotFoundError(f"no such mailbox: {source}")
    for path in _files(root):
        relative = path.relative_to(root)
        data = path.read_bytes()
        if path.suffix.lower() in _MBOX_SUFFIXES or path.name.lower() == "mbox":
            chunks = split_mbox(data)
        else:
            chunks = [_strip_from_line(data)]
        for index, chunk in enumerate(chunks):
            if chunk and mime.looks_like_message(chunk):
                yield relative, index, chunk


def load(mailbox: Mailbox, source: str | Path) -> int:
    """Add every message under `source` to `mailbox` in date order; the number added.

    A real mailbox receives a message before the replies to it, and Gmail threads a reply with
    the messages it references that are already there: loading in file-name order would put
    replies that sort first into threads of their own.
    """
    found = []
    for relative, index, raw in messages_in(source):
        info = mime.header_info(raw)
        internal = info.date_ms if info.date_ms is not None else _fallback_date(relative, index)
        found.append((internal, relative, index, raw, info))
    found.sort(key=lambda item: (item[0], str(item[1]), item[2]))
    for internal, relative, index, raw, info in found:
        mailbox.add(raw, _labels(relative, index), internal, info=info)
    return len(found)
