"""EmulatorAdmin: the GmailEmulator's operations over its admin API, for an emulator running in
another process (Ray actor tests, benchmarks, the demo).

    admin = EmulatorAdmin("http://127.0.0.1:8025")
    message_id = await admin.add_message("demo@mailray.test", raw, ["INBOX", "UNREAD"])
    await admin.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec

from cluster.emulators.gmail.encoding import b64url
from cluster.emulators.gmail.stats import EmulatorStats


class EmulatorAdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class EmulatorAdmin:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EmulatorAdmin:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _user(self, email: str) -> str:
        return f"/users/{quote(email, safe='@')}"

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300))
        data = msgspec.json.encode(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self._session.request(
            method, f"{self.base_url}/_emulator{path}", data=data, headers=headers
        ) as response:
            payload = await response.read()
            if response.status >= 400:
                try:
                    message = str(msgspec.json.decode(payload)["error"]["message"])
                except (msgspec.DecodeError, KeyError, TypeError):
                    message = payload.decode("utf-8", "replace")[:500]
                if response.status == 404:
                    raise KeyError(message)
                raise EmulatorAdminError(response.status, message)
            return payload

    async def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        payload = await self._call(method, path, body)
        return msgspec.json.decode(payload) if payload else None

    async def add_user(self, email: str) -> None:
        await self._call("POST", "/users", {"email": email})

    async def users(self) -> list[dict[str, Any]]:
        answer = await self._json("GET", "/users")
        return list(answer["users"])

    async def load_mailbox(self, email: str, source: str | Path) -> int:
        """Load from a path on the emulator's machine."""
        answer = await self._json("POST", self._user(email) + "/load", {"source": str(source)})
        return int(answer["count"])

    async def generate(self, email: str, count: int, *, seed: int = 0) -> int:
        answer = await self._json("POST", self._user(email) + "/generate", {"count": count, "seed": seed})
        return int(answer["count"])

    async def add_message(
        self,
        email: str,
        raw: bytes,
        label_ids: Sequence[str] = ("INBOX",),
        internal_date_ms: int | None = None,
    ) -> str:
        body = {"raw": b64url(raw), "labelIds": list(label_ids), "internalDate": internal_date_ms}
        answer = await self._json("POST", self._user(email) + "/messages", body)
        return str(answer["id"])

    async def delete_message(self, email: str, message_id: str) -> None:
        await self._call("DELETE", f"{self._user(email)}/messages/{quote(message_id)}")

    async def modify_labels(
        self, email: str, message_id: str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        body = {"add": list(add), "remove": list(remove)}
        await self._call("POST", f"{self._user(email)}/messages/{quote(message_id)}/labels", body)

    async def create_label(self, email: str, name: str) -> str:
        answer = await self._json("POST", self._user(email) + "/labels", {"name": name})
        return str(answer["id"])

    async def issue_tokens(self, email: str, scopes: Sequence[str] | None = None) -> dict[str, Any]:
        body = {"scopes": list(scopes)} if scopes is not None else {}
        answer: dict[str, Any] = await self._json("POST", self._user(email) + "/tokens", body)
        return answer

    async def expire_access_tokens(self) -> None:
        await self._call("POST", "/tokens/expire")

    async def revoke(self, token: str) -> None:
        await self._call("POST", "/tokens/revoke", {"token": token})

    async def expire_history(self, email: str) -> None:
        await self._call("POST", self._user(email) + "/history/expire")

    async def history_id(self, email: str) -> int:
        answer = await self._json("GET", self._user(email) + "/state")
        return int(answer["historyId"])

    async def state(self, email: str) -> dict[str, dict[str, Any]]:
        answer = await self._json("GET", self._user(email) + "/state")
        return dict(answer["messages"])

    async def raw(self, email: str, message_id: str) -> bytes:
        return await self._call("GET", f"{self._user(email)}/messages/{quote(message_id)}/raw")

    async def set_faults(
        self,
        *,
        fault_rate: float | None = None,
        latency_ms: float | None = None,
        drop_rate: float | None = None,
        push_drop_rate: float | None = None,
    ) -> None:
        body = {
            "fault_rate": fault_rate,
            "latency_ms": latency_ms,
            "drop_rate": drop_rate,
            "push_drop_rate": push_drop_rate,
        }
        await self._call("POST", "/faults", body)

    async def set_quota(self, regime: str) -> None:
        await self._call("POST", "/quota", {"regime": regime})

    async def set_push(self, *, url: str | None = None, audience: str | None = None) -> None:
        await self._call("POST", "/push", {"url": url, "audience": audience})

    async def stats(self) -> EmulatorStats:
        return msgspec.json.decode(await self._call("GET", "/stats"), type=EmulatorStats)

    async def reset_stats(self) -> None:
        await self._call("POST", "/stats/reset")
