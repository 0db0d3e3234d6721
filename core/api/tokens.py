"""Bearer tokens: issued at random, stored only as SHA-256, expiring, revocable.

Plugins mint tokens through :func:`issue_customer_token` (e.g. after a
WeChat OAuth login) and never see another token's value again.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..auth import STAFF_ROLES, Caller
from ..db import utcnow
from ..errors import NotFound
from ..models import ApiToken, Customer, User

__all__ = ["IssuedToken", "token_hash", "issue_user_token", "issue_customer_token", "resolve", "revoke",
           "revoke_user_tokens", "token_ttl", "DEFAULT_TTL_HOURS"]

DEFAULT_TTL_HOURS = 12


@dataclass(frozen=True)
class IssuedToken:
    """A freshly minted token: the only moment its value is known."""

    token: str  # the bearer value to hand to the client
    expires_at: dt.datetime  # UTC
    role: str  # staff role or "customer"
    user_id: int | None = None
    customer_id: int | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_ttl(ctx, customer: bool = False) -> dt.timedelta:
    """``[api] token_ttl_hours`` (default 12), ``customer_token_ttl_hours`` for customers."""
    hours = ctx.setting("api.token_ttl_hours", DEFAULT_TTL_HOURS)
    if customer:
        hours = ctx.setting("api.customer_token_ttl_hours", hours)
    return dt.timedelta(hours=float(hours))


def _issue(session: Session, ttl: dt.timedelta, role: str, *, user_id=None, customer_id=None,
           now: dt.datetime | None = None) -> IssuedToken:
    token = secrets.token_urlsafe(32)
    expires = (now or utcnow()) + ttl
    session.add(ApiToken(token_hash=token_hash(token), role=role, user_id=user_id, customer_id=customer_id,
                         expires_at=expires))
    session.flush()
    return IssuedToken(token, expires, role, user_id, customer_id)


def issue_user_token(session: Session, user: User, ttl: dt.timedelta, *, now: dt.datetime | None = None) -> IssuedToken:
    """A token for an active staff user (the caller has checked the password)."""
    return _issue(session, ttl, user.role, user_id=user.id, now=now)


def issue_customer_token(ctx, session: Session, customer_id: int, *, ttl: dt.timedelta | None = None,
                         now: dt.datetime | None = None) -> IssuedToken:
    """A token acting as customer ``customer_id`` (role ``customer``), in ``session``'s transaction."""
    if session.get(Customer, customer_id) is None:
        raise NotFound(f"customer {customer_id} does not exist")
    return _issue(session, ttl or token_ttl(ctx, customer=True), "customer", customer_id=customer_id, now=now)


#: the token with its user or customer, one round trip (a Core select: no ORM identity work per request)
_RESOLVE = (
    select(ApiToken.revoked_at, ApiToken.expires_at, ApiToken.role, ApiToken.user_id, ApiToken.customer_id,
           User.id.label("u_id"), User.active, User.role.label("user_role"), User.store_id, User.username,
           Customer.id.label("c_id"), Customer.name.label("customer_name"))
    .select_from(ApiToken)
    .outerjoin(User, User.id == ApiToken.user_id)
    .outerjoin(Customer, Customer.id == ApiToken.customer_id)
    .where(ApiToken.token_hash == bindparam("digest"))
)


def resolve(bind: Session | Connection, token: str, *, now: dt.datetime | None = None) -> tuple[Caller, str] | None:
    """The caller a bearer token stands for, with the token's hash; ``None`` if it is unknown,
    expired, revoked, or its user was deactivated. A staff token carries the user's
    current role and store, so a role change applies at once. ``bind`` is a session or a
    connection (the API passes the request's connection: no session is needed to authenticate)."""
    if len(token) > 200:
        return None
    digest = token_hash(token)
    conn = bind if isinstance(bind, Connection) else bind.connection()
    row = conn.execute(_RESOLVE, {"digest": digest}).first()
    now = now or utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if row.user_id is not None:
        if row.u_id is None or not row.active or row.user_role not in STAFF_ROLES:
            return None
        return Caller(role=row.user_role, user_id=row.u_id, store_id=row.store_id, name=row.username), digest
    if row.customer_id is not None and row.role == "customer":
        if row.c_id is None:
            return None
        return Caller(role="customer", customer_id=row.c_id, store_id=None, name=row.customer_name), digest
    return None


def revoke(session: Session, digest: str, *, now: dt.datetime | None = None) -> bool:
    """Revoke the token with this hash; ``True`` if it was live."""
    done = session.execute(update(ApiToken).where(ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None))
                           .values(revoked_at=now or utcnow())).rowcount
    return bool(done)


def revoke_user_tokens(session: Session, user_id: int, *, now: dt.datetime | None = None) -> int:
    """Revoke every live token of a user (after a password change or deactivation)."""
    return session.execute(update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
                           .values(revoked_at=now or utcnow())).rowcount
