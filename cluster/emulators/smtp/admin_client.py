"""SmtpSinkAdmin: the sink's admin API from Python, for a sink in another process (the CLI's, a
benchmark's) or in this one.

    async with SmtpSinkAdmin("http://127.0.0.1:8026") as admin:
        await admin.wait_for_count(10)
        page = await admin.messages(recipient="ana@example.com")
        raw = await admin.raw(page.messages[0].id)

A 404 raises NotFound, a 400 ValidationError, anything else MailrayError (mail.errors).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import aiohttp
import msgspec

from cluster.emulators.smtp.index import IndexEntry, MessagePage
from cluster.emulators.smtp.stats import SinkStats
from mail.errors import MailrayError, NotFound, ValidationError


class _Count(msgspec.Struct):
    count: int


class _Rules(msgspec.Struct):
    rules: list[str]


class _Delivered(msgspec.Struct):
    delivered: bool


class _Forgotten(msgspec.Struct):
    forgotten: int


class SmtpSinkAdmin:
    def __init__(self, base_url: str, *, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SmtpSinkAdmin:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None
    ) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        data = msgspec.json.encode(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self._session.request(
            method, self.base_url + path, params=params, data=data, headers=headers
        ) as response:
            payload = await response.read()
            if response.status < 400:
                return payload
            try:
                message = str(msgspec.json.decode(payload)["error"]["message"])
            except (msgspec.DecodeError, KeyError, TypeError):
                message = payload.decode("utf-8", "replace")[:500]
            if response.status == 404:
                raise NotFound(message)
            if response.status == 400:
                raise ValidationError(message)
            raise MailrayError(f"smtp sink admin at {self.base_url}: {response.status} {message}")

    async def healthy(self) -> bool:
        try:
            await self._call("GET", "/healthz")
        except (aiohttp.ClientError, OSError, MailrayError):
            return False
        return True

    async def count(self) -> int:
        return msgspec.json.decode(await self._call("GET", "/messages/count"), type=_Count).count

    async def wait_for_count(self, count: int, *, timeout_s: float = 30.0) -> int:
        """Poll until the sink holds at least `count` messages; the count. TimeoutError if not."""
        deadline = time.monotonic() + timeout_s
        while (found := await self.count()) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the sink holds {found} messages, not {count}, after {timeout_s} s")
            await asyncio.sleep(0.05)
        return found

    async def messages(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        recipient: str | None = None,
        mail_from: str | None = None,
        message_id: str | None = None,
    ) -> MessagePage:
        params = {"after": str(after), "limit": str(limit)}
        for name, value in (("recipient", recipient), ("mail_from", mail_from), ("message_id", message_id)):
            if value is not None:
                params[name] = value
        payload = await self._call("GET", "/messages", params=params)
        return msgspec.json.decode(payload, type=MessagePage)

    async def all_messages(
        self, *, recipient: str | None = None, page_size: int = 1000
    ) -> AsyncIterator[IndexEntry]:
        """Every indexed message (matching `recipient`), page by page."""
        after = 0
        while True:
            page = await self.messages(after=after, limit=page_size, recipient=recipient)
            for entry in page.messages:
                yield entry
            if page.next_after is None:
                return
            after = page.next_after

    async def envelope(self, message: int) -> IndexEntry:
        return msgspec.json.decode(await self._call("GET", f"/messages/{message}/envelope"), type=IndexEntry)

    async def raw(self, message: int) -> bytes:
        return await self._call("GET", f"/messages/{message}")

    async def delivered(self, message_id: str) -> bool:
        payload = await self._call("GET", "/delivered", params={"message_id": message_id})
        return msgspec.json.decode(payload, type=_Delivered).delivered

    async def reset(self, *, keep_files: bool = False) -> int:
        """Forget every message and count; the messages forgotten."""
        params = {"keep_files": "1"} if keep_files else None
        return msgspec.json.decode(
            await self._call("POST", "/reset", params=params), type=_Forgotten
        ).forgotten

    async def stats(self) -> SinkStats:
        return msgspec.json.decode(await self._call("GET", "/stats"), type=SinkStats)

    async def rules(self) -> list[str]:
        return msgspec.json.decode(await self._call("GET", "/rules"), type=_Rules).rules

    async def set_rules(self, rules: list[str]) -> list[str]:
        payload = await self._call("POST", "/rules", body={"rules": rules})
        return msgspec.json.decode(payload, type=_Rules).rules
