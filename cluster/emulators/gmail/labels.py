"""Gmail's labels: the system labels every mailbox has, and user labels (ids Label_1, Label_2, ...)."""

from __future__ import annotations

from typing import Any

import msgspec

# In the order users.labels.list shows them.
SYSTEM_LABELS: tuple[str, ...] = (
    "CHAT",
    "SENT",
    "INBOX",
    "IMPORTANT",
    "TRASH",
    "DRAFT",
    "SPAM",
    "CATEGORY_FORUMS",
    "CATEGORY_UPDATES",
    "CATEGORY_PERSONAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_SOCIAL",
    "STARRED",
    "UNREAD",
)
# Hidden from users.messages.list unless includeSpamTrash or asked for.
SPAM_TRASH = frozenset({"SPAM", "TRASH"})

_VISIBLE_SYSTEM = {"INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "CHAT"}


class Label(msgspec.Struct, kw_only=True):
    id: str
    name: str
    type: str = "user"  # "system" | "user"
    message_list_visibility: str | None = None  # "show" | "hide"
    label_list_visibility: str | None = None  # "labelShow" | "labelShowIfUnread" | "labelHide"
    color: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.message_list_visibility is not None:
            body["messageListVisibility"] = self.message_list_visibility
        if self.label_list_visibility is not None:
            body["labelListVisibility"] = self.label_list_visibility
        if self.color is not None:
            body["color"] = self.color
        body["type"] = self.type
        return body


def system_labels() -> dict[str, Label]:
    labels: dict[str, Label] = {}
    for label_id in SYSTEM_LABELS:
        if label_id in _VISIBLE_SYSTEM:
            labels[label_id] = Label(
                id=label_id,
                name=label_id,
                type="system",
                message_list_visibility="hide" if label_id in {"INBOX", "SENT", "DRAFT"} else None,
                label_list_visibility="labelShow" if label_id != "CHAT" else "labelHide",
            )
        else:
            labels[label_id] = Label(id=label_id, name=label_id, type="system")
    return labels
