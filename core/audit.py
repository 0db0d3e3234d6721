"""The append-only audit log: who did what, when, with before/after state."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .auth import Caller
from .listing import Page, keyset
from .models import AuditEntry

__all__ = ["record", "list_entries"]


def record(session: Session, actor: Caller | str, action: str, entity: str, entity_id: Any = None, *,
           before: Any = None, after: Any = None, detail: str = "") -> AuditEntry:
    """Append one entry in the caller's transaction (it commits or rolls back with the change)."""
    entry = AuditEntry(
        actor=actor.actor if isinstance(actor, Caller) else str(actor), action=action, entity=entity,
        entity_id=None if entity_id is None else str(entity_id), before=before, after=after, detail=detail)
    session.add(entry)
    return entry


def list_entries(session: Session, *, actor: str | None = None, action: str | None = None,
                 entity: str | None = None, entity_id: str | None = None, since: dt.datetime | None = None,
                 until: dt.datetime | None = None, before: int | None = None, limit: int = 50) -> Page[AuditEntry]:
    """Entries newest first; ``since`` inclusive, ``until`` exclusive; ``before`` an entry id to continue from."""
    stmt = select(AuditEntry)
    for column, value in ((AuditEntry.actor, actor), (AuditEntry.action, action), (AuditEntry.entity, entity),
                          (AuditEntry.entity_id, entity_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    return keyset(session, stmt, AuditEntry.id, after=before, limit=limit, descending=True)
