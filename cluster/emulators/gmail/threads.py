"""Thread assignment as Gmail does it for delivered mail: a message that references (In-Reply-To,
References) a message already in the mailbox joins that message's thread; otherwise it starts a
thread whose id is its own message id. A thread never changes once assigned, and messages that
arrive before the message they reply to are not merged afterwards (Gmail does not merge either).
"""

from __future__ import annotations

from collections.abc import Iterable


class ThreadIndex:
    def __init__(self) -> None:
        self._thread_of_header: dict[str, str] = {}  # RFC 822 Message-ID -> thread id
        self._headers_of_thread: dict[str, list[str]] = {}
        self._members: dict[str, list[str]] = {}  # thread id -> message ids, oldest insert first

    def thread_for(self, parent_ids: Iterable[str], requested: str | None = None) -> str | None:
        """The existing thread a new message joins, or None for a new thread."""
        if requested is not None and requested in self._members:
            return requested
        for parent in parent_ids:
            found = self._thread_of_header.get(parent)
            if found is not None:
                return found
        return None

    def add(self, message_id: str, thread_id: str, header_id: str | None) -> None:
        self._members.setdefault(thread_id, []).append(message_id)
        if header_id is not None and header_id not in self._thread_of_header:
            self._thread_of_header[header_id] = thread_id
            self._headers_of_thread.setdefault(thread_id, []).append(header_id)

    def remove(self, message_id: str, thread_id: str) -> None:
        members = self._members.get(thread_id)
        if members is None:
            return
        members.remove(message_id)
        if not members:
            del self._members[thread_id]
            for header_id in self._headers_of_thread.pop(thread_id, []):
                self._thread_of_header.pop(header_id, None)

    def members(self, thread_id: str) -> list[str]:
        return self._members.get(thread_id, [])

    def __contains__(self, thread_id: object) -> bool:
        return thread_id in self._members

    def __len__(self) -> int:
        return len(self._members)
