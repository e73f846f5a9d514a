"""The Gmail HTTP transport: ApiRequests over aiohttp, alone or batched, with retries.

One `GmailTransport` per client owns one aiohttp ClientSession (a bounded connection pool) and
a semaphore that bounds the HTTP exchanges in flight (`max_concurrent_batches`). Every attempt,
first or retried, goes through the same steps while it holds the semaphore:

    before_send(requests)   charge the quota (the sum of the parts of a batch) right before
                            the request leaves, so tokens are spent when the server counts them
    access_token()          the current access token (the client refreshes it when due)
    POST/GET                one exchange; a batch goes to {api_endpoint}/batch/gmail/v1

Rate limits (429, 403 rateLimitExceeded), 5xx and connection failures are retried up to
`max_retries` times with exponential backoff and full jitter (`mail.gmail.backoff`), never
sooner than the server's Retry-After; a batch retries only its failed parts. Everything else
is final at once and mapped by `mail.gmail.error_mapping`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import msgspec

from mail.errors import MailrayError, QuotaExceeded, TransientError
from mail.gmail.api_request import ApiRequest, ApiResponse
from mail.gmail.backoff import Backoff
from mail.gmail.batch import decode_batch, encode_batch
from mail.gmail.error_mapping import CONNECTION_ERRORS, is_retryable, map_error
from models.settings import GmailSettings

BATCH_PATH = "/batch/gmail/v1"
BATCH_METHOD_ID = "batch"
# A server asking for a longer pause than this is not waited for here: the caller reschedules.
MAX_HONOURED_RETRY_AFTER_S = 120.0

AccessTokenSource = Callable[[], Awaitable[str]]
BeforeSend = Callable[[Sequence[ApiRequest]], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


class TransportLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Connection pool and timeouts of one transport."""

    connections: int = 16
    connect_timeout_s: float = 10.0
    # Between two reads of a response; a batch of 50 large raw messages streams for a while.
    read_timeout_s: float = 60.0


DEFAULT_LIMITS = TransportLimits()


class TransportStats(msgspec.Struct, kw_only=True):
    """What one transport did, for diagnostics (this process only)."""

    requests: int = 0  # HTTP exchanges: single calls and batches
    batch_parts: int = 0
    retries: int = 0  # attempts after the first, of a call or of a batch's failed parts
    rate_limited: int = 0  # 429 / rateLimitExceeded answers (calls or parts)
    transient_failures: int = 0  # 5xx, connection failures, timeouts (calls or parts)


def _pause_s(
    backoff: Backoff, attempt: int, errors: Sequence[MailrayError], random_fraction: Callable[[], float]
) -> float | None:
    """How long to wait before retrying after `errors`, or None when waiting is pointless."""
    asked = [
        error.retry_after_s
        for error in errors
        if isinstance(error, QuotaExceeded) and error.retry_after_s is not None
    ]
    retry_after = max(asked) if asked else None
    if retry_after is not None and retry_after > MAX_HONOURED_RETRY_AFTER_S:
        return None
    return backoff.delay(attempt, retry_after_s=retry_after, random_fraction=random_fraction)


class GmailTransport:
    def __init__(
        self,
        settings: GmailSettings,
        *,
        limits: TransportLimits = DEFAULT_LIMITS,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self.api_endpoint = settings.api_endpoint.rstrip("/")
        self.batch_uri = self.api_endpoint + BATCH_PATH
        self.max_retries = settings.max_retries
        self.stats = TransportStats()
        self._limits = limits
        self._backoff = backoff or Backoff()
        self.sleep = sleep  # also paces the client's token refresh retries
        self._random_fraction = random_fraction
        self._in_flight = asyncio.Semaphore(max(1, settings.max_concurrent_batches))
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The transport's aiohttp session (the OAuth calls of its client share it)."""
        # Made on first use: a ClientSession belongs to the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limits.connections),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=self._limits.connect_timeout_s,
                    sock_read=self._limits.read_timeout_s,
                ),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _exchange(
        self,
        method: str,
        uri: str,
        headers: dict[str, str],
        body: bytes | None,
        requests: Sequence[ApiRequest],
        access_token: AccessTokenSource,
        before_send: BeforeSend | None,
    ) -> ApiResponse:
        async with self._in_flight:
            if before_send is not None:
                await before_send(requests)
            token = await access_token()
            self.stats.requests += 1
            async with self.session().request(
                method, uri, headers={**headers, "authorization": f"Bearer {token}"}, data=body
            ) as response:
                content = await response.read()
                return ApiResponse(
                    status=response.status,
                    headers={name.lower(): value for name, value in response.headers.items()},
                    body=content,
                )

    def _count(self, error: MailrayError) -> None:
        if isinstance(error, QuotaExceeded):
            self.stats.rate_limited += 1
        elif isinstance(error, TransientError):
            self.stats.transient_failures += 1

    async def call(
        self,
        request: ApiRequest,
        *,
        access_token: AccessTokenSource,
        before_send: BeforeSend | None = None,
        idempotent: bool = True,
    ) -> ApiResponse:
        """Send one request, retrying what is worth retrying; the 2xx response or the mapped error.

        A call that is not `idempotent` (messages.send) is retried only after a rate-limit
        answer, which says the server did not act on it; after a 5xx or a dropped connection it
        may have, so the caller decides.
        """
        attempt = 0
        while True:
            try:
                response = await self._exchange(
                    request.method,
                    request.uri,
                    request.headers,
                    request.body,
                    (request,),
                    access_token,
                    before_send,
                )
            except CONNECTION_ERRORS as exc:
                error = map_error(exc, method_id=request.method_id)
            else:
                if response.ok:
                    return response
                error = map_error(response, method_id=request.method_id)
            self._count(error)
            pause = _pause_s(self._backoff, attempt, (error,), self._random_fraction)
            retryable = is_retryable(error) and (idempotent or isinstance(error, QuotaExceeded))
            if not retryable or attempt >= self.max_retries or pause is None:
                raise error
            await self.sleep(pause)
            attempt += 1
            self.stats.retries += 1

    async def call_batch(
        self,
        requests: Sequence[ApiRequest],
        *,
        access_token: AccessTokenSource,
        before_send: BeforeSend | None = None,
    ) -> list[ApiResponse | MailrayError]:
        """Send `requests` as one batch, then again only the parts that failed retryably.

        Returns one result per request, in order: the part's last response (2xx, or a status
        that was not worth retrying, or the last of the retried ones) or, when the batch itself
        never got through, the mapped connection or HTTP error.
        """
        results: list[ApiResponse | MailrayError | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        attempt = 0
        while True:
            failures: dict[int, ApiResponse | MailrayError] = {}
            errors: list[MailrayError] = []
            parts = [requests[index] for index in pending]
            body, content_type = encode_batch(parts)
            self.stats.batch_parts += len(parts)
            answers: list[ApiResponse | MailrayError | None]
            try:
                outer = await self._exchange(
                    "POST",
                    self.batch_uri,
                    {"content-type": content_type},
                    body,
                    parts,
                    access_token,
                    before_send,
                )
                if not outer.ok:
                    raise map_error(outer, method_id=BATCH_METHOD_ID)
                answers = list(
                    decode_batch(outer.headers.get("content-type", ""), outer.body, count=len(parts))
                )
            except CONNECTION_ERRORS as exc:
                answers = [map_error(exc, method_id=BATCH_METHOD_ID)] * len(parts)
            except MailrayError as exc:
                answers = [exc] * len(parts)
            for index, answer in zip(pending, answers, strict=True):
                if answer is None:
                    answer = TransientError(f"Gmail batch: no response part for {requests[index].method_id}")
                error = (
                    answer
                    if isinstance(answer, MailrayError)
                    else (None if answer.ok else map_error(answer, method_id=requests[index].method_id))
                )
                if error is not None:
                    self._count(error)
                if error is None or not is_retryable(error):
                    results[index] = answer
                else:
                    failures[index] = answer
                    errors.append(error)
            pause = _pause_s(self._backoff, attempt, errors, self._random_fraction) if errors else None
            if not failures or attempt >= self.max_retries or pause is None:
                for index, answer in failures.items():
                    results[index] = answer
                done = [result for result in results if result is not None]
                assert len(done) == len(requests)
                return done
            await self.sleep(pause)
            attempt += 1
            self.stats.retries += len(failures)
            pending = sorted(failures)
