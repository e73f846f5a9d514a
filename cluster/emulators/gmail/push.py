"""users.watch and the Pub/Sub push notifications that follow mailbox changes.

After watch, every change to a watched mailbox (filtered by the watch's labelIds and
labelFilterAction) schedules one notification; changes are coalesced so a user gets at most one
POST per second, carrying the mailbox's history id at send time. The POST is a Pub/Sub push
envelope:

    {"message": {"data": base64({"emailAddress": ..., "historyId": 1234}), "messageId": "...",
                 "message_id": "...", "publishTime": "...", "publish_time": "...", "attributes": {}},
     "subscription": "projects/<project>/subscriptions/<topic>-push"}

with `Authorization: Bearer <OIDC token>` (RS256 by the emulator's key, iss https://accounts.google.com,
aud = the push audience, email gmail-push@<project>.iam.gserviceaccount.com). `push_drop_rate` of
the notifications are dropped, as Pub/Sub may; a failed delivery is retried a few times with backoff.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec

from cluster.emulators.gmail.faults import FaultInjector
from cluster.emulators.gmail.mailbox import HistoryRecord
from cluster.emulators.gmail.oauth import subject_of
from cluster.emulators.gmail.signing import SigningKey
from cluster.emulators.gmail.stats import EmulatorStats

log = logging.getLogger(__name__)

WATCH_TTL_MS = 7 * 24 * 3600 * 1000
MIN_INTERVAL_S = 1.0
MAX_ATTEMPTS = 5
_TOPIC_RE = re.compile(r"^projects/([^/]+)/topics/([^/]+)$")


@dataclass(slots=True)
class Watch:
    topic: str
    label_ids: frozenset[str]
    action: str  # "include" | "exclude"
    expiration_ms: int

    def wants(self, record: HistoryRecord) -> bool:
        if not self.label_ids:
            return True
        touched = any(record.touches(label) for label in self.label_ids)
        return touched if self.action == "include" else not touched


def parse_topic(topic: str) -> tuple[str, str] | None:
    found = _TOPIC_RE.match(topic)
    return (found.group(1), found.group(2)) if found else None


class PushNotifier:
    def __init__(
        self,
        *,
        url: str | None,
        audience: str,
        drop_rate: float,
        project: str,
        signing_key: SigningKey,
        faults: FaultInjector,
        stats: EmulatorStats,
        history_id_of: Callable[[str], int],
    ) -> None:
        self.url = url
        self.audience = audience
        self.drop_rate = drop_rate
        self.project = project
        self._key = signing_key
        self._faults = faults
        self._stats = stats
        self._history_id_of = history_id_of
        self.watches: dict[str, Watch] = {}
        self._dirty: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._last_sent: dict[str, float] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._message_id = 4_000_000_000_000_000
        self._token: tuple[str, str, float] | None = None  # (audience, token, expires at)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._loop = None

    def set(
        self, *, url: str | None = None, audience: str | None = None, drop_rate: float | None = None
    ) -> None:
        if url is not None:
            self.url = url or None
        if audience is not None:
            self.audience = audience
        if drop_rate is not None:
            if not 0.0 <= drop_rate <= 1.0:
                raise ValueError(f"push_drop_rate must be between 0 and 1, got {drop_rate}")
            self.drop_rate = drop_rate

    def watch(self, email: str, topic: str, label_ids: list[str], action: str) -> int:
        expiration = int(time.time() * 1000) + WATCH_TTL_MS
        self.watches[email] = Watch(
            topic=topic, label_ids=frozenset(label_ids), action=action, expiration_ms=expiration
        )
        return expiration

    def unwatch(self, email: str) -> None:
        self.watches.pop(email, None)

    def changed(self, email: str, record: HistoryRecord) -> None:
        """A history record was added to `email`'s mailbox (called on the event loop's thread,
        or from another thread, which hands over to the loop)."""
        watch = self.watches.get(email)
        if watch is None or watch.expiration_ms < time.time() * 1000 or not watch.wants(record):
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._schedule(email)
        else:
            loop.call_soon_threadsafe(self._schedule, email)

    def _schedule(self, email: str) -> None:
        self._dirty.add(email)
        if email not in self._tasks:
            self._tasks[email] = asyncio.get_running_loop().create_task(self._deliver(email))

    async def _deliver(self, email: str) -> None:
        try:
            attempts = 0
            while email in self._dirty:
                wait = self._last_sent.get(email, 0.0) + MIN_INTERVAL_S * (2**attempts) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._dirty.discard(email)
                self._last_sent[email] = time.monotonic()
                watch = self.watches.get(email)
                if watch is None:
                    break
                if await self._send(email, watch):
                    attempts = 0
                elif attempts + 1 < MAX_ATTEMPTS:
                    attempts += 1
                    self._dirty.add(email)  # retry, carrying the newest history id
                else:
                    attempts = 0
        finally:
            self._tasks.pop(email, None)

    def _bearer(self) -> str:
        now = time.time()
        if self._token is None or self._token[0] != self.audience or self._token[2] < now + 300:
            service_account = f"gmail-push@{self.project}.iam.gserviceaccount.com"
            claims = {
                "iss": "https://accounts.google.com",
                "aud": self.audience,
                "azp": subject_of(service_account),
                "sub": subject_of(service_account),
                "email": service_account,
                "email_verified": True,
                "iat": int(now),
                "exp": int(now) + 3600,
            }
            self._token = (self.audience, self._key.sign(claims), now + 3600)
        return self._token[1]

    def envelope(self, email: str, watch: Watch) -> dict[str, Any]:
        self._message_id += 1
        data = msgspec.json.encode({"emailAddress": email, "historyId": self._history_id_of(email)})
        published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        parsed = parse_topic(watch.topic)
        subscription_name = f"{parsed[1]}-push" if parsed else "gmail-push"
        return {
            "message": {
                "attributes": {},
                "data": base64.b64encode(data).decode("ascii"),
                "messageId": str(self._message_id),
                "message_id": str(self._message_id),
                "publishTime": published,
                "publish_time": published,
            },
            "subscription": f"projects/{self.project}/subscriptions/{subscription_name}",
        }

    async def _send(self, email: str, watch: Watch) -> bool:
        """True when the notification is done with (delivered, dropped or nowhere to go)."""
        url = self.url
        if not url:
            return True
        if self._faults.chance(self.drop_rate):
            self._stats.pushes_dropped += 1
            return True
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        headers = {"Authorization": f"Bearer {self._bearer()}", "Content-Type": "application/json"}
        body = msgspec.json.encode(self.envelope(email, watch))
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    self._stats.pushes_sent += 1
                    return True
                log.info("push to %s answered %s", url, response.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            log.info("push to %s failed: %s", url, error)
        self._stats.push_failures += 1
        return False
