"""Keyset pagination shared by the services' ``list_*`` functions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

__all__ = ["Page", "keyset", "like_pattern", "MAX_LIMIT"]

T = TypeVar("T")
MAX_LIMIT = 200


@dataclass
class Page(Generic[T]):
    """One page of rows; ``next_after`` is the id to continue after (``None`` at the end)."""

    items: list[T]  # the rows of this page, in list order
    next_after: int | None  # pass back as ``after`` for the next page


def keyset(session: Session, stmt: Select, id_column, *, after: int | None = None, limit: int = 50,
           descending: bool = False) -> Page:
    """Run ``stmt`` ordered by ``id_column`` from just past ``after``, at most ``limit`` rows.

    Ascending lists continue with ids greater than ``after``, descending
    (newest first) ones with ids smaller than it. Stable under inserts: a row
    added while a client pages is either seen once or not at all.
    """
    limit = max(1, min(int(limit), MAX_LIMIT))
    if after is not None:
        stmt = stmt.where(id_column < after if descending else id_column > after)
    stmt = stmt.order_by(id_column.desc() if descending else id_column.asc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)


def like_pattern(text: str) -> str:
    """``%text%`` for a case-insensitive substring search, LIKE wildcards in ``text`` escaped
    (compare with ``column.ilike(pattern, escape="\\")``)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
