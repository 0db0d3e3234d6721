"""Terminal registration, revocation and authentication.

A terminal is registered by an admin or by the manager of its store and gets
a random secret, shown once and stored as SHA-256 (it is 256 random bits, so
a slow hash adds nothing). Every request of a terminal also names its local
database (``database_id``): the first contact binds it, and a request from
another database with the same secret (a cloned terminal, or one restored
from a backup, which makes a new database) is refused until the device is
re-registered, which issues a new secret and forgets the binding.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.auth import Caller
from core.db import utcnow
from core.errors import Forbidden, NotFound, ValidationFailed
from core.listing import Page, keyset
from core.models import Store

from .models import PosDevice, PosSaleFlag

__all__ = ["SECRET_PREFIX", "DeviceRefused", "Credentials", "register", "reregister", "revoke", "list_devices",
           "get_device", "authenticate", "device_caller", "serialize_device", "secret_hash", "check_store_access",
           "managed_scope", "list_scope", "managed_device",
           "DATABASE_ID_RE"]

SECRET_PREFIX = "pos_"
DATABASE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MANAGERS = ("admin", "store_manager")


class DeviceRefused(Forbidden):
    """A known terminal that may not sync (revoked, or another terminal database)."""

    type = "https://pharmo2o.dev/problems/pos-device-refused"
    title = "Terminal refused"


@dataclass(frozen=True)
class Credentials:
    """What a registration hands the terminal, once."""

    device_id: int
    store_id: int
    secret: str  # the bearer value; only its SHA-256 is stored


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _new_secret() -> tuple[str, str]:
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    return secret, secret_hash(secret)


def managed_scope(caller: Caller) -> int | None:
    """The one store whose terminals ``caller`` manages, or ``None`` for every store.

    Admins manage every store; a store manager their own store (like the
    core's API, a manager bound to no store acts on all); other roles none.
    """
    if caller.role == "admin":
        return None
    if caller.role == "store_manager":
        return caller.store_id
    raise Forbidden(f"role {caller.role!r} may not manage POS terminals")


def check_store_access(caller: Caller, store_id: int | None) -> None:
    """Refuse (403) a caller who does not manage ``store_id``'s terminals."""
    scope = managed_scope(caller)
    if scope is not None and scope != store_id:
        raise Forbidden(f"a store manager manages the terminals of their own store only "
                        f"(store {scope}), not of store {store_id}")


def list_scope(caller: Caller, store_id: int | None) -> int | None:
    """The store a listing is limited to (``None``: all).

    Reading is scoped like the core's API (staff bound to a store see that
    store, admins and unbound staff every store): which roles may read at all
    is the operation's declaration, which a chain may widen through
    ``register_permissions``.
    """
    if not caller.is_staff:
        raise Forbidden(f"role {caller.role!r} may not see POS terminals")
    scope = None if caller.role == "admin" else caller.store_id
    if store_id is not None:
        if scope is not None and scope != store_id:
            raise Forbidden(f"{caller.role} of store {scope} may not see the terminals of store {store_id}")
        return store_id
    return scope


def _name(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed.one("name", "is required (e.g. 'Counter 1')")
    if len(value.strip()) > 100:
        raise ValidationFailed.one("name", "at most 100 characters")
    return value.strip()


def register(session: Session, *, store_id, name, caller: Caller) -> tuple[PosDevice, Credentials]:
    """Register a terminal for ``store_id``; the secret in the credentials is never shown again."""
    if isinstance(store_id, bool) or not isinstance(store_id, int):
        raise ValidationFailed.one("store_id", "must be a store id")
    store = session.get(Store, store_id)
    if store is None or not store.active:
        raise ValidationFailed.one("store_id", f"store {store_id} does not exist or is closed")
    check_store_access(caller, store_id)
    name = _name(name)
    secret, digest = _new_secret()
    device = PosDevice(store_id=store_id, name=name, secret_hash=digest, status="active",
                       registered_by=caller.actor, registered_at=utcnow(), queued=0)
    session.add(device)
    session.flush()
    audit.record(session, caller, "pos.device.register", "pos_device", device.id,
                 after={"store_id": store_id, "name": name})
    return device, Credentials(device.id, store_id, secret)


def get_device(session: Session, device_id, *, lock: bool = False) -> PosDevice:
    device = None
    if isinstance(device_id, int) and not isinstance(device_id, bool):
        q = select(PosDevice).where(PosDevice.id == device_id)
        device = session.scalars(q.with_for_update() if lock else q).one_or_none()
    if device is None:
        raise NotFound(f"POS terminal {device_id!r} does not exist")
    return device


def managed_device(session: Session, device_id, caller: Caller, *, lock: bool = True) -> PosDevice:
    """A terminal of a store ``caller`` manages: another store's is a 403, as for the core's store-bound
    staff (:func:`core.api.access.check_store`); only customers get 404 for what is not theirs."""
    device = get_device(session, device_id, lock=lock)
    check_store_access(caller, device.store_id)
    return device


def reregister(session: Session, device_id, caller: Caller) -> tuple[PosDevice, Credentials]:
    """Issue a new secret and forget the bound terminal database (after a restore or a swap).

    The device keeps its id, so the sales it already uploaded stay known and
    a re-sent sale is still recognised as a duplicate. A revoked terminal
    cannot come back: register a new one.
    """
    device = managed_device(session, device_id, caller)
    if device.status == "revoked":
        raise DeviceRefused(f"POS terminal {device.id} was revoked on {device.revoked_at.isoformat()}: "
                            "register a new terminal instead")
    secret, digest = _new_secret()
    before = {"database_id": device.database_id}
    device.secret_hash = digest
    device.database_id = None
    session.flush()
    audit.record(session, caller, "pos.device.reregister", "pos_device", device.id, before=before,
                 after={"database_id": None}, detail="new secret issued")
    return device, Credentials(device.id, device.store_id, secret)


def revoke(session: Session, device_id, caller: Caller, reason) -> PosDevice:
    """Refuse every further request of the terminal (lost, stolen, retired). Idempotent."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed.one("reason", "is required (why the terminal is revoked)")
    if len(reason) > 500:
        raise ValidationFailed.one("reason", "at most 500 characters")
    device = managed_device(session, device_id, caller)
    if device.status == "revoked":
        return device
    device.status = "revoked"
    device.revoked_at = utcnow()
    device.revoked_by = caller.actor
    device.revoke_reason = reason.strip()
    session.flush()
    audit.record(session, caller, "pos.device.revoke", "pos_device", device.id, before={"status": "active"},
                 after={"status": "revoked"}, detail=reason.strip())
    return device


def list_devices(session: Session, caller: Caller, *, store_id: int | None = None, after: int | None = None,
                 limit: int = 50) -> Page[PosDevice]:
    """Terminals by id; a store manager sees their own store's only."""
    store_id = list_scope(caller, store_id)
    stmt = select(PosDevice)
    if store_id is not None:
        stmt = stmt.where(PosDevice.store_id == store_id)
    return keyset(session, stmt, PosDevice.id, after=after, limit=limit)


def serialize_device(device: PosDevice) -> dict:
    def iso(v):
        return v.isoformat() if v else None
    return {
        "id": device.id, "store_id": device.store_id, "name": device.name, "status": device.status,
        "database_bound": device.database_id is not None, "registered_by": device.registered_by,
        "registered_at": iso(device.registered_at), "revoked_at": iso(device.revoked_at),
        "revoke_reason": device.revoke_reason, "last_contact_at": iso(device.last_contact_at),
        "last_upload_at": iso(device.last_upload_at),
    }


def device_caller(device: PosDevice) -> Caller:
    """The identity a terminal's sales are recorded under (``device:<id>``)."""
    return Caller(role="device", device_id=device.id, store_id=device.store_id, name=device.name)


def authenticate(ctx, secret: str | None, database_id: str | None) -> PosDevice | None:
    """The active terminal a secret belongs to, or ``None`` for an unknown secret.

    Binds ``database_id`` on the first contact after a registration and
    records the contact time. Raises :class:`DeviceRefused` for a revoked
    terminal and for a known secret presented from another terminal database
    (that attempt is committed as a review flag before refusing), and
    :class:`ValidationFailed` when ``database_id`` is missing or malformed.
    Runs its own short transaction.
    """
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
        return None
    digest = secret_hash(secret)
    now = utcnow()
    refusal = None
    with ctx.transaction() as session:
        device = session.scalars(select(PosDevice).where(PosDevice.secret_hash == digest)).one_or_none()
        if device is None:
            return None
        if device.status != "active":
            raise DeviceRefused(f"POS terminal {device.id} is revoked ({device.revoke_reason}): it may not sync")
        if not isinstance(database_id, str) or not DATABASE_ID_RE.match(database_id):
            raise ValidationFailed.one("X-POS-Database-Id", "the terminal must send its database id "
                                       "(8 to 64 letters, digits, '-' or '_')")
        if device.database_id is None:  # first contact since registration: bind, unless a twin won the race
            session.execute(update(PosDevice).where(PosDevice.id == device.id, PosDevice.database_id.is_(None))
                            .values(database_id=database_id))
            session.refresh(device)
        if device.database_id != database_id:
            refusal = DeviceRefused(
                f"POS terminal {device.id} is registered with another terminal database: a restored or cloned "
                "terminal may not sync as the original; ask a store manager to re-register it",
                device_id=device.id)
            key = f"dbmismatch:{device.id}:{device.database_id}:{database_id}"
            try:
                with session.begin_nested():
                    session.add(PosSaleFlag(device_id=device.id, store_id=device.store_id, kind="database_mismatch",
                                            detail=f"a request came from terminal database {database_id!r}, "
                                                   f"registered: {device.database_id!r}",
                                            dedupe_key=key[:200], created_at=now))
            except IntegrityError:
                pass  # flagged already
        else:
            device.last_contact_at = now
        session.flush()
        session.expunge(device)
    if refusal is not None:
        raise refusal
    return device
