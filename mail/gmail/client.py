"""GmailClient: the Gmail API for one account, async, quota-aware, refreshing its own tokens.

    client = GmailClient(settings, tokens, email="ana@acme.test", quota=quota, on_tokens=store)
    page = await client.list_messages()
    messages = await client.get_messages([ref.id for ref in page.messages])   # batched
    await client.close()

Each call is built from the discovery document (`mail.gmail.discovery`), charged to the quota
right before it leaves (`mail.gmail.quota`), and sent by the transport, which retries rate
limits and transient failures (`mail.gmail.transport`). The access token is refreshed before it
expires and, once, after a 401; every new token set goes to `on_tokens` so the caller can store
it (encrypted). A second 401 in a row, or a refresh answered `invalid_grant`, is an AuthError:
the account needs a new consent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from mail.errors import AuthError, MailrayError, NotFound, TransientError, ValidationError
from mail.gmail import api_responses, oauth
from mail.gmail.api_request import ApiRequest, ApiResponse
from mail.gmail.backoff import Backoff
from mail.gmail.batch import MAX_BATCH_PARTS
from mail.gmail.discovery import GmailRequests
from mail.gmail.error_mapping import AccessTokenRejected, map_error
from mail.gmail.quota import GmailQuota
from mail.gmail.transport import GmailTransport, TransportStats
from models.gmail import (
    GmailMessage,
    HistoryPage,
    Label,
    MessageFetchError,
    MessagePage,
    MessageRef,
    Profile,
    TokenSet,
    WatchResponse,
)
from models.settings import GmailSettings

DEFAULT_HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")
TokensCallback = Callable[[TokenSet], Awaitable[None]]
_T = TypeVar("_T")


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def _gather_all(coroutines: Sequence[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _is_token_rejection(answer: ApiResponse | MailrayError) -> bool:
    return isinstance(answer, AccessTokenRejected) or (
        isinstance(answer, ApiResponse) and answer.status == 401
    )


class _TokenUse:
    """The access-token source of one call: remembers which refresh generation it handed out,
    so a 401 leads to a refresh only when no other call has replaced that token already."""

    def __init__(self, client: GmailClient) -> None:
        self._client = client
        self.generation = client._generation

    async def __call__(self) -> str:
        token = await self._client._access_token()
        self.generation = self._client._generation
        return token


class GmailClient:
    def __init__(
        self,
        settings: GmailSettings,
        tokens: TokenSet,
        *,
        email: str,
        quota: GmailQuota | None,
        on_tokens: TokensCallback | None = None,
        transport: GmailTransport | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.email = email
        self._settings = settings
        self._tokens = tokens
        self._quota = quota
        self._on_tokens = on_tokens
        self._clock = clock
        self._requests = GmailRequests(settings.api_endpoint)
        self._transport = transport or GmailTransport(settings)
        self._refresh_lock = asyncio.Lock()
        # Bumped by every refresh: a 401 seen under an older generation needs no new refresh.
        self._generation = 0
        self._token_lifetime_s: float | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def tokens(self) -> TokenSet:
        return self._tokens

    @property
    def stats(self) -> TransportStats:
        return self._transport.stats

    async def close(self) -> None:
        await self._transport.close()

    # -- tokens -------------------------------------------------------------------------------

    def _refresh_margin_s(self) -> float:
        # Never more than half a token's life, or short-lived tokens would refresh every call.
        if self._token_lifetime_s is None:
            return oauth.REFRESH_MARGIN_S
        return min(oauth.REFRESH_MARGIN_S, self._token_lifetime_s / 2)

    async def _access_token(self) -> str:
        if oauth.needs_refresh(self._tokens, self._clock(), self._refresh_margin_s()):
            try:
                await self._refresh(self._generation)
            except TransientError:
                # The token endpoint is down; a token that has not expired yet still works.
                if oauth.needs_refresh(self._tokens, self._clock(), margin_s=0):
                    raise
        return self._tokens.access_token

    async def _refresh(self, seen_generation: int) -> None:
        """Refresh unless someone did since `seen_generation`; retries a failing token endpoint."""
        async with self._refresh_lock:
            if self._generation != seen_generation:
                return
            backoff = Backoff()
            attempt = 0
            while True:
                began = self._clock()
                try:
                    tokens = await oauth.refresh(
                        self._settings, self._tokens, session=self._transport.session()
                    )
                    break
                except TransientError:
                    if attempt >= self._settings.max_retries:
                        raise
                await self._transport.sleep(backoff.delay(attempt))
                attempt += 1
            self._token_lifetime_s = (tokens.expires_at - began).total_seconds()
            self._tokens = tokens
            self._generation += 1
            if self._on_tokens is not None:
                await self._on_tokens(tokens)

    async def _charge(self, requests: Sequence[ApiRequest]) -> None:
        if self._quota is not None:
            await self._quota.charge(self.email, requests)

    # -- sending ------------------------------------------------------------------------------

    async def _call(self, request: ApiRequest, *, idempotent: bool = True) -> ApiResponse:
        token = _TokenUse(self)
        try:
            return await self._transport.call(
                request, access_token=token, before_send=self._charge, idempotent=idempotent
            )
        except AccessTokenRejected:
            await self._refresh(token.generation)
        try:
            return await self._transport.call(
                request, access_token=self._access_token, before_send=self._charge, idempotent=idempotent
            )
        except AccessTokenRejected as exc:
            raise AuthError(
                f"{exc.message}, again after a token refresh: the account needs re-authorisation"
            ) from exc

    async def _call_batch(self, requests: Sequence[ApiRequest]) -> list[ApiResponse | MailrayError]:
        token = _TokenUse(self)
        answers = await self._transport.call_batch(requests, access_token=token, before_send=self._charge)
        rejected = [index for index, answer in enumerate(answers) if _is_token_rejection(answer)]
        if not rejected:
            return answers
        await self._refresh(token.generation)
        again = await self._transport.call_batch(
            [requests[index] for index in rejected], access_token=self._access_token, before_send=self._charge
        )
        for index, answer in zip(rejected, again, strict=True):
            if _is_token_rejection(answer):
                raise AuthError(
                    f"Gmail {requests[index].method_id}: HTTP 401 again after a token refresh: "
                    "the account needs re-authorisation"
                )
            answers[index] = answer
        return answers

    def _batch_parts(self, method_id: str) -> int:
        parts = min(self._settings.batch_size, MAX_BATCH_PARTS)
        if self._quota is not None:
            parts = min(parts, self._quota.max_parts(method_id))
        return max(1, parts)

    # -- the API ------------------------------------------------------------------------------

    async def get_profile(self) -> Profile:
        return api_responses.profile((await self._call(self._requests.get_profile())).body)

    async def list_labels(self) -> list[Label]:
        return api_responses.labels((await self._call(self._requests.list_labels())).body)

    async def list_messages(
        self,
        *,
        page_token: str | None = None,
        max_results: int = 500,
        q: str | None = None,
        label_ids: Sequence[str] | None = None,
        include_spam_trash: bool = True,
    ) -> MessagePage:
        request = self._requests.list_messages(
            page_token=page_token,
            max_results=max_results,
            q=q,
            label_ids=label_ids,
            include_spam_trash=include_spam_trash,
        )
        return api_responses.message_page((await self._call(request)).body)

    async def get_message(self, message_id: str, *, format: str = "raw") -> GmailMessage:
        return api_responses.message(
            (await self._call(self._requests.get_message(message_id, format=format))).body
        )

    async def get_messages(
        self, ids: Sequence[str], *, format: str = "raw"
    ) -> list[GmailMessage | MessageFetchError]:
        """Many messages in batches (several in flight), in the order of `ids`.

        A message that is gone (404) or whose id Gmail refuses (400) is a MessageFetchError in
        its place; a part that still fails transiently after the retries raises TransientError.
        """
        if not ids:
            return []
        size = self._batch_parts("users.messages.get")
        chunks = [list(ids[start : start + size]) for start in range(0, len(ids), size)]
        fetched = await _gather_all([self._get_chunk(chunk, format) for chunk in chunks])
        return [item for chunk in fetched for item in chunk]

    async def _get_chunk(self, ids: list[str], format: str) -> list[GmailMessage | MessageFetchError]:
        requests = [self._requests.get_message(message_id, format=format) for message_id in ids]
        answers = await self._call_batch(requests)
        results: list[GmailMessage | MessageFetchError] = []
        for message_id, request, answer in zip(ids, requests, answers, strict=True):
            if isinstance(answer, MailrayError):
                raise answer
            if answer.ok:
                results.append(api_responses.message(answer.body))
                continue
            error = map_error(answer, method_id=request.method_id)
            if not isinstance(error, NotFound | ValidationError):
                raise error
            results.append(MessageFetchError(id=message_id, status=answer.status, reason=error.message))
        return results

    async def list_history(
        self,
        start_history_id: int,
        *,
        page_token: str | None = None,
        history_types: Sequence[str] = DEFAULT_HISTORY_TYPES,
        max_results: int = 500,
    ) -> HistoryPage:
        """One page of changes since `start_history_id`; HistoryExpired when it is too old."""
        request = self._requests.list_history(
            start_history_id, page_token=page_token, history_types=history_types, max_results=max_results
        )
        return api_responses.history_page((await self._call(request)).body)

    async def watch(
        self, topic_name: str, label_ids: Sequence[str], label_filter_action: str = "include"
    ) -> WatchResponse:
        request = self._requests.watch(topic_name, label_ids, label_filter_action)
        return api_responses.watch_response((await self._call(request)).body)

    async def stop_watch(self) -> None:
        await self._call(self._requests.stop_watch())

    async def get_attachment(self, message_id: str, attachment_id: str) -> bytes:
        request = self._requests.get_attachment(message_id, attachment_id)
        return api_responses.attachment_data((await self._call(request)).body)

    async def send_raw(self, raw: bytes, *, thread_id: str | None = None) -> MessageRef:
        """Send an RFC 822 message. Not retried after a 5xx or a dropped connection: Gmail may
        have sent it, so that TransientError is the caller's to resolve (never send twice)."""
        request = self._requests.send_message(api_responses.encode_base64url(raw), thread_id=thread_id)
        return api_responses.message_ref((await self._call(request, idempotent=False)).body)
