"""Bearer tokens: issued at random, stored only as SHA-256, expiring, revocable.

Plugins mint tokens through :func:`issue_customer_token` (e.g. after a
WeChat OAuth login) and never see another token's value again.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..auth import STAFF_ROLES, Caller
from ..db import utcnow
from ..errors import NotFound
from ..models import ApiToken, Customer, User

__all__ = ["IssuedToken", "token_hash", "issue_user_token", "issue_customer_token", "resolve", "revoke",
           "revoke_user_tokens", "token_ttl", "DEFAULT_TTL_HOURS", "Prefetch", "resolve_with"]

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
    return resolve_with(bind, token, None, now=now)[0]


class Prefetch:
    """A row a read-only operation needs, read in its token's statement: one round trip, not two.

    ``columns`` (Core columns of one table) are joined to the token lookup with
    ``LEFT OUTER JOIN table ON onclause``; ``onclause`` names the row by bind
    parameters that ``params(route_params)`` fills, e.g. ``products.id = :pk``
    with ``lambda p: {"pk": p["product_id"]}``. The responder finds the row's
    values in ``req.context.prefetched`` (a tuple in ``columns`` order; ``None``
    when the token was not valid, or no prefetch ran). A row that does not
    exist comes back as all ``NULL``: :meth:`found` tells (``key`` is the index
    of a column that is never ``NULL`` in a row that exists, such as the id).

    Nothing is exposed through it that the operation's own read would not
    return: the responder applies the same checks (roles first: an unauthorised
    caller never reaches it), and the statement is built once.
    """

    def __init__(self, columns, onclause, params: Callable[[dict], dict], key: int = 0) -> None:
        self.columns = tuple(columns)
        self.onclause = onclause
        self.params = params
        self.key = key
        table = self.columns[0].table
        self.statement = _RESOLVE.outerjoin(table, onclause).add_columns(
            *(c.label(f"prefetch_{i}") for i, c in enumerate(self.columns)))

    def found(self, values: tuple | None) -> bool:
        return values is not None and values[self.key] is not None


_WIDTH = len(_RESOLVE.selected_columns)


def resolve_with(bind: Session | Connection, token: str, prefetch: Prefetch | None, params: dict | None = None, *,
                 now: dt.datetime | None = None) -> tuple[tuple[Caller, str] | None, tuple | None]:
    """:func:`resolve`, reading ``prefetch``'s row in the same statement: ``(resolved, values)``;
    ``values`` (``prefetch.columns`` order) is ``None`` when the token is not valid."""
    if len(token) > 200:
        return None, None
    digest = token_hash(token)
    conn = bind if isinstance(bind, Connection) else bind.connection()
    if prefetch is None:
        row = conn.execute(_RESOLVE, {"digest": digest}).first()
    else:
        row = conn.execute(prefetch.statement, {"digest": digest, **prefetch.params(params or {})}).first()
    if row is None:
        return None, None
    revoked_at, expires_at, role, user_id, customer_id, u_id, active, user_role, store_id, username, c_id, \
        customer_name = row[:_WIDTH]
    if revoked_at is not None or expires_at <= (now or utcnow()):
        return None, None
    if user_id is not None:
        if u_id is None or not active or user_role not in STAFF_ROLES:
            return None, None
        caller = Caller(role=user_role, user_id=u_id, store_id=store_id, name=username)
    elif customer_id is not None and role == "customer" and c_id is not None:
        caller = Caller(role="customer", customer_id=c_id, store_id=None, name=customer_name)
    else:
        return None, None
    return (caller, digest), (tuple(row[_WIDTH:]) if prefetch is not None else None)


def revoke(session: Session, digest: str, *, now: dt.datetime | None = None) -> bool:
    """Revoke the token with this hash; ``True`` if it was live."""
    done = session.execute(update(ApiToken).where(ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None))
                           .values(revoked_at=now or utcnow())).rowcount
    return bool(done)


def revoke_user_tokens(session: Session, user_id: int, *, now: dt.datetime | None = None) -> int:
    """Revoke every live token of a user (after a password change or deactivation)."""
    return session.execute(update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
                           .values(revoked_at=now or utcnow())).rowcount
