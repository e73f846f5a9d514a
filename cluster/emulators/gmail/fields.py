"""The `fields` parameter (partial responses): `messages(id,threadId),nextPageToken`, `payload/headers`."""

from __future__ import annotations

from typing import Any

FieldMask = dict[str, "FieldMask"]


def parse_fields(text: str) -> FieldMask:
    """The mask as a tree; an empty subtree means the whole value. ValueError when malformed."""
    mask, position = _parse_list(text.replace(" ", ""), 0)
    if position != len(text.replace(" ", "")):
        raise ValueError(f"Invalid field selection {text}")
    return mask


def _parse_list(text: str, position: int) -> tuple[FieldMask, int]:
    mask: FieldMask = {}
    while True:
        start = position
        while position < len(text) and text[position] not in ",()":
            position += 1
        path = text[start:position]
        if not path or any(not name for name in path.split("/")):
            raise ValueError(f"Invalid field selection {text}")
        node = mask
        for name in path.split("/"):
            node = node.setdefault(name, {})
        if position < len(text) and text[position] == "(":
            inner, position = _parse_list(text, position + 1)
            if position >= len(text) or text[position] != ")":
                raise ValueError(f"Invalid field selection {text}")
            position += 1
            _merge(node, inner)
        if position < len(text) and text[position] == ",":
            position += 1
            continue
        return mask, position


def _merge(into: FieldMask, other: FieldMask) -> None:
    for name, sub in other.items():
        _merge(into.setdefault(name, {}), sub)


def apply_fields(value: Any, mask: FieldMask) -> Any:
    if not mask:
        return value
    if isinstance(value, list):
        return [apply_fields(item, mask) for item in value]
    if isinstance(value, dict):
        return {name: apply_fields(value[name], sub) for name, sub in mask.items() if name in value}
    return value
