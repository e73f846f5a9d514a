"""Events on Redis (pub/sub channels for WebSocket clients, streams for workers), as tagged Structs.

Encoders and decoders are built once here, never per call.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec


class EmailParty(msgspec.Struct, frozen=True, kw_only=True):
    email: str | None
    name: str | None = None


class EmailReceivedData(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: int
    account_id: UUID
    subject: str
    sender: EmailParty = msgspec.field(name="from")
    preview: str
    received_at: datetime | None


class EmailReceived(msgspec.Struct, frozen=True, kw_only=True, tag="email.received", tag_field="event"):
    workspace_id: UUID = msgspec.field(name="workspaceId")
    data: EmailReceivedData


class EngagementData(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    email_id: int
    campaign_id: UUID | None
    occurred_at: datetime
    is_machine: bool
    machine_reason: str | None
    device: str
    client: str
    link_url: str | None = None


class EmailOpened(msgspec.Struct, frozen=True, kw_only=True, tag="email.opened", tag_field="event"):
    workspace_id: UUID = msgspec.field(name="workspaceId")
    data: EngagementData


class EmailClicked(msgspec.Struct, frozen=True, kw_only=True, tag="email.clicked", tag_field="event"):
    workspace_id: UUID = msgspec.field(name="workspaceId")
    data: EngagementData


class EmailUnsubscribed(
    msgspec.Struct, frozen=True, kw_only=True, tag="email.unsubscribed", tag_field="event"
):
    workspace_id: UUID = msgspec.field(name="workspaceId")
    data: EngagementData


class BounceAlertData(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    campaign_id: UUID
    recipient: str
    reason: str
    status: str
    diagnostic: str


class BounceAlert(msgspec.Struct, frozen=True, kw_only=True, tag="bounce.blocked", tag_field="event"):
    """A receiver refused a campaign's message for policy, spam or a blocklist: the sender's
    reputation, not the address, is the problem (mail.bounces.ingest)."""

    workspace_id: UUID = msgspec.field(name="workspaceId")
    data: BounceAlertData


Event = EmailReceived | EmailOpened | EmailClicked | EmailUnsubscribed | BounceAlert

event_encoder = msgspec.json.Encoder()
# Annotated: `Event` is a union, which msgspec's stubs type as Decoder[Any] without it.
event_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


def workspace_channel(workspace_id: UUID) -> str:
    """The pub/sub channel of a workspace's email events (the design document's naming)."""
    return f"workspace:{workspace_id}:emails"


NEW_MAIL_STREAM = "mailray:stream:new-mail"
