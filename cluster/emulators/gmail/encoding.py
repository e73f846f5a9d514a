"""base64url as the Gmail API writes and reads it.

Gmail writes `raw` padded and `body.data` / attachment `data` without padding (both observed on the
real API); it reads either, with or without padding, and standard base64 as well.
"""

from __future__ import annotations

import base64
import binascii

_TO_URL = bytes.maketrans(b"+/", b"-_")
_FROM_URL = bytes.maketrans(b"-_", b"+/")


def b64url(data: bytes, *, pad: bool = True) -> str:
    encoded = binascii.b2a_base64(data, newline=False).translate(_TO_URL)
    if not pad:
        encoded = encoded.rstrip(b"=")
    return encoded.decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode base64url or base64, padded or not; ValueError when it is neither."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    data = b"".join(data.split()).translate(_FROM_URL).rstrip(b"=")
    data += b"=" * (-len(data) % 4)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"not base64: {error}") from None
