"""Logging in and out: bearer tokens for staff users, throttled per username and address."""
from __future__ import annotations

import math
from functools import lru_cache

from sqlalchemy import select

from ...auth import hash_password, verify_password
from ...models import User
from .. import throttle, tokens
from ..errors import TooManyRequests, Unauthorized
from ..operations import EVERYONE, operation
from ..schemas import MeOut, TokenOut, TokenRequest

__all__ = ["Token", "Logout", "Me", "client_address"]


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so both cases take as long."""
    return hash_password("pharmo2o-no-such-user")


def client_address(req) -> str:
    """The client's address; with ``[api] trust_forwarded_for``, the last ``X-Forwarded-For`` hop.

    The last hop is the one our own proxy wrote (whether it overwrites the header or appends to
    it); anything before it, and ``Forwarded``/``X-Real-IP``, the client could have made up.
    """
    if req.context.ctx.setting("api.trust_forwarded_for", False):
        hops = [h.strip() for h in (req.get_header("X-Forwarded-For") or "").split(",") if h.strip()]
        if hops:
            return hops[-1]
    return req.remote_addr or "unknown"


class Token:
    @operation("auth.token", public=True, body=TokenRequest, response=TokenOut, tags=("auth",),
               summary="Log in: exchange a username and password for a bearer token",
               description="Tokens expire after `[api] token_ttl_hours` (12 by default). Repeated failures for "
                           "one username from one address lock further attempts for a while (429 with "
                           "Retry-After), whichever worker answers.",
               errors=(401, 429), idempotency="none")
    def on_post(self, req, resp):
        ctx, body = req.context.ctx, req.context.body
        ip = client_address(req)
        policy = throttle.policy(ctx)
        # short units of their own, not the request's: the count must persist even when refusing,
        # and the password is checked (slowly) outside any transaction
        with ctx.session() as session:
            wait = throttle.locked_for(session, body.username, ip)
        if wait is not None:
            raise TooManyRequests(f"too many failed logins for {body.username!r} from this address; "
                                  f"retry in {math.ceil(wait.total_seconds())} s",
                                  headers={"Retry-After": str(max(1, math.ceil(wait.total_seconds())))})
        with ctx.session() as session:
            user = session.scalars(select(User).where(User.username == body.username)).one_or_none()
            stored = (user.id, user.password_hash, user.active) if user is not None else None
        ok = verify_password(stored[1] if stored else _dummy_hash(), body.password) and stored is not None \
            and stored[2]
        with ctx.transaction() as session:
            if not ok:
                throttle.record_failure(session, body.username, ip, policy)
                issued = None
            else:
                throttle.clear(session, body.username, ip)
                issued = tokens.issue_user_token(session, session.get(User, stored[0]), tokens.token_ttl(ctx))
        if issued is None:
            raise Unauthorized("wrong username or password, or the account is inactive")
        resp.media = {"token": issued.token, "expires_at": issued.expires_at.isoformat(), "role": issued.role}


class Logout:
    @operation("auth.logout", roles=EVERYONE, summary="Revoke the token of this request", tags=("auth",),
               status=204, idempotency="none")
    def on_post(self, req, resp):
        tokens.revoke(req.context.session, req.context.token_hash)
        resp.status = 204


class Me:
    @operation("auth.me", roles=EVERYONE, summary="Who the token stands for", response=MeOut, tags=("auth",))
    def on_get(self, req, resp):
        c = req.context.caller
        resp.media = {"role": c.role, "user_id": c.user_id, "customer_id": c.customer_id, "store_id": c.store_id,
                      "name": c.name}
