"""Opaque list cursors: the keyset position (an id) wrapped so clients do not build them."""
from __future__ import annotations

import base64
import binascii

from ..errors import ValidationFailed

__all__ = ["encode_cursor", "decode_cursor", "page_body"]

_PREFIX = "p2o1:"


def encode_cursor(position: int | None) -> str | None:
    if position is None:
        return None
    return base64.urlsafe_b64encode(f"{_PREFIX}{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The position in ``cursor``; a cursor that was not made here is a 422 naming ``cursor``."""
    if cursor is None or cursor == "":
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not text.startswith(_PREFIX):
            raise ValueError
        value = int(text[len(_PREFIX):])
        if not 0 <= value < 2**63:
            raise ValueError
        return value
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValidationFailed.one("cursor", "is not a cursor returned by this list") from None


def page_body(items: list, next_position: int | None) -> dict:
    return {"items": items, "next_cursor": encode_cursor(next_position)}
