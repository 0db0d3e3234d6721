"""The outbox: messages to the outside world written in the business transaction
and delivered after commit, with retries and backoff; a rolled-back transaction
leaves nothing to send, a failed send is retried, never lost.

Delivery is at-least-once: a message is claimed (with a lease), sent, then
marked sent. A sender receives ``payload`` with ``_outbox_id`` added so that
it can make its own side effect idempotent.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import utcnow
from .models import OutboxMessage

__all__ = ["enqueue", "dispatch", "DispatchResult"]

log = logging.getLogger(__name__)
LEASE = dt.timedelta(minutes=5)
MAX_ATTEMPTS = 12


def enqueue(session: Session, kind: str, payload: dict, *, dedupe_key: str | None = None) -> OutboxMessage | None:
    """Queue ``payload`` for the sender of ``kind``; sent only if this transaction commits.

    With a ``dedupe_key`` already queued, nothing is added and ``None`` is returned.
    """
    if dedupe_key is not None:
        existing = session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key))
        if existing is not None:
            return None
    msg = OutboxMessage(kind=kind, payload=payload, dedupe_key=dedupe_key, status="pending",
                        attempts=0, next_attempt_at=utcnow())
    if dedupe_key is None:
        session.add(msg)
        session.flush()
        return msg
    try:
        with session.begin_nested():
            session.add(msg)
            session.flush()
    except IntegrityError:
        return None
    return msg


def backoff(attempts: int) -> dt.timedelta:
    """Wait before retry number ``attempts``: 5 s doubling, at most one hour."""
    return dt.timedelta(seconds=min(3600, 5 * 2 ** max(0, attempts - 1)))


@dataclass
class DispatchResult:
    sent: int = 0
    failed: int = 0
    dead: int = 0


def dispatch(ctx, limit: int = 100, now: dt.datetime | None = None) -> DispatchResult:
    """Deliver due messages once; call it from a loop, a timer or after a commit."""
    senders = ctx.registry.merged_dict("notification_senders", "notification kind", ctx=ctx)
    result = DispatchResult()
    now = now or utcnow()
    with ctx.session() as session:
        ids = session.scalars(
            select(OutboxMessage.id)
            .where(OutboxMessage.status.in_(("pending", "sending")), OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.id).limit(limit)).all()
    for msg_id in ids:
        with ctx.transaction() as session:  # claim with a lease: a second dispatcher skips it
            claimed = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == msg_id,
                       or_(OutboxMessage.status == "pending",
                           (OutboxMessage.status == "sending")),
                       OutboxMessage.next_attempt_at <= now)
                .values(status="sending", next_attempt_at=now + LEASE, attempts=OutboxMessage.attempts + 1)
            ).rowcount
            msg = session.get(OutboxMessage, msg_id) if claimed else None
            if msg is None:
                continue
            kind, payload, attempts = msg.kind, dict(msg.payload), msg.attempts
        sender = senders.get(kind)
        error = None
        if sender is None:
            error = f"no enabled plugin sends {kind!r} messages"
        else:
            try:
                sender({**payload, "_outbox_id": msg_id})
            except Exception as exc:  # any failure is retried
                error = f"{type(exc).__name__}: {exc}"
                log.warning("outbox message %s (%s) failed, attempt %s: %s", msg_id, kind, attempts, error)
        with ctx.transaction() as session:
            msg = session.get(OutboxMessage, msg_id)
            if error is None:
                msg.status, msg.sent_at, msg.last_error = "sent", utcnow(), None
                result.sent += 1
            elif attempts >= MAX_ATTEMPTS:
                msg.status, msg.last_error = "dead", error
                result.dead += 1
            else:
                msg.status, msg.last_error = "pending", error
                msg.next_attempt_at = utcnow() + backoff(attempts)
                result.failed += 1
    return result
