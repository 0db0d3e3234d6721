"""Pydantic types the loyalty plugin adds to the API's request schemas."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["RedeemPoints"]

#: the order-create field added through ``order_request_fields``
RedeemPoints = Annotated[int | None, Field(
    ge=0, le=1_000_000_000,
    description="loyalty: points to redeem on this order; they are held when it is placed, spent when it is "
                "paid, released if it is cancelled (not on offline POS sales)")]

