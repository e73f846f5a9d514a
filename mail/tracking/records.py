"""What a tracking endpoint records, as it travels: endpoint -> Redis stream (or spool) -> writer.

Several events travel in one stream entry: the endpoint batches the requests that arrive
together into one XADD. Each event carries its own id, made at the endpoint, so however often an
entry is delivered (a redelivery after a crash, a spool replay of an entry Redis did take), the
writer stores the event once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

import msgspec

EventKind = Literal["open", "click", "unsubscribe"]

TRACKING_STREAM = "mailray:stream:tracking"
WRITER_GROUP = "event-writer"
# Field of a stream entry holding the msgpack-encoded list of events.
ENTRY_FIELD = b"e"


class RawEvent(msgspec.Struct, frozen=True, array_like=True):
    """One request to a tracking endpoint, as the endpoint saw it (array-like: compact msgpack)."""

    event_id: bytes  # 16 bytes (a UUID)
    kind: EventKind
    email_id: int
    recipient_id: int | None
    link: int | None
    occurred_at_us: int  # microseconds since the epoch, UTC
    ip: str | None
    user_agent: str | None
    method: str

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromtimestamp(self.occurred_at_us / 1_000_000, tz=UTC)

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self.event_id)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[RawEvent])


def encode_batch(events: list[RawEvent]) -> bytes:
    return _encoder.encode(events)


def decode_batch(payload: bytes) -> list[RawEvent]:
    """Decode one stream entry; raises msgspec.DecodeError on a malformed one."""
    return _decoder.decode(payload)
