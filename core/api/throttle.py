"""Login throttling: failed logins counted per (username, client address) in the
database, so every gunicorn worker (and every machine) sees the same count.

After ``[api] login_max_failures`` (5) failures within ``login_window_minutes``
(15) the pair is locked for ``login_lockout_minutes`` (15): further attempts,
right or wrong, are refused with 429 and ``Retry-After`` until it expires. A
successful login clears the count.
"""
from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..db import utcnow
from ..models import LoginAttempt

__all__ = ["Policy", "policy", "locked_for", "record_failure", "clear"]


class Policy:
    def __init__(self, max_failures: int = 5, window: dt.timedelta = dt.timedelta(minutes=15),
                 lockout: dt.timedelta = dt.timedelta(minutes=15)) -> None:
        self.max_failures = max_failures  # failures within the window that lock
        self.window = window  # how long failures are counted together
        self.lockout = lockout  # how long a locked pair is refused


def policy(ctx) -> Policy:
    return Policy(int(ctx.setting("api.login_max_failures", 5)),
                  dt.timedelta(minutes=float(ctx.setting("api.login_window_minutes", 15))),
                  dt.timedelta(minutes=float(ctx.setting("api.login_lockout_minutes", 15))))


def _key(username: str, ip: str) -> str:
    return hashlib.sha256(f"{username}\x00{ip}".encode("utf-8", "replace")).hexdigest()


def locked_for(session, username: str, ip: str, now: dt.datetime | None = None) -> dt.timedelta | None:
    """How long the pair is still locked, or ``None``."""
    now = now or utcnow()
    row = session.scalars(select(LoginAttempt).where(LoginAttempt.key_hash == _key(username, ip))).one_or_none()
    if row is not None and row.locked_until is not None and row.locked_until > now:
        return row.locked_until - now
    return None


def record_failure(session, username: str, ip: str, pol: Policy, now: dt.datetime | None = None) -> bool:
    """Count one failure; ``True`` when it locks the pair."""
    now = now or utcnow()
    key = _key(username, ip)
    row = session.scalars(select(LoginAttempt).where(LoginAttempt.key_hash == key).with_for_update()).one_or_none()
    if row is None:
        row = LoginAttempt(key_hash=key, failures=0, window_started_at=now)
        try:
            with session.begin_nested():  # a concurrent first failure inserted it: count on that row
                session.add(row)
                session.flush()
        except IntegrityError:
            row = session.scalars(select(LoginAttempt).where(LoginAttempt.key_hash == key).with_for_update()).one()
    expired_lock = row.locked_until is not None and row.locked_until <= now
    if expired_lock or now - row.window_started_at > pol.window:
        row.failures, row.window_started_at, row.locked_until = 0, now, None
    row.failures += 1
    row.updated_at = now
    locks = row.failures >= pol.max_failures
    if locks:
        row.locked_until = now + pol.lockout
    session.flush()
    return locks


def clear(session, username: str, ip: str) -> None:
    session.execute(delete(LoginAttempt).where(LoginAttempt.key_hash == _key(username, ip)))
