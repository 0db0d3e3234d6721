"""The append-only audit log: who did what, when, with before/after state."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from .auth import Caller
from .models import AuditEntry

__all__ = ["record"]


def record(session: Session, actor: Caller | str, action: str, entity: str, entity_id: Any = None, *,
           before: Any = None, after: Any = None, detail: str = "") -> AuditEntry:
    """Append one entry in the caller's transaction (it commits or rolls back with the change)."""
    entry = AuditEntry(
        actor=actor.actor if isinstance(actor, Caller) else str(actor), action=action, entity=entity,
        entity_id=None if entity_id is None else str(entity_id), before=before, after=after, detail=detail)
    session.add(entry)
    return entry
