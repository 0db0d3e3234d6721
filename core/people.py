"""Stores, customers and staff users: creation and updates with validation."""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from . import audit
from .auth import STAFF_ROLES, Caller, hash_password
from .errors import Forbidden, NotFound, ValidationFailed
from .listing import Page, keyset, like_pattern
from .models import Customer, Store, User

__all__ = ["create_store", "update_store", "create_customer", "create_user", "update_user", "MIN_PASSWORD",
           "list_stores", "list_customers", "list_users"]

MIN_PASSWORD = 8
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")


def _text(data: dict, name: str, errors: list, *, required: bool = False, limit: int = 200) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            errors.append({"field": name, "message": "is required"})
        return None
    if not isinstance(value, str):
        errors.append({"field": name, "message": "must be a string"})
        return None
    value = value.strip()
    if len(value) > limit:
        errors.append({"field": name, "message": f"at most {limit} characters"})
        return None
    if required and not value:
        errors.append({"field": name, "message": "is required"})
    return value


def _raise(errors: list) -> None:
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), fields=errors)


def _unknown(data: dict, allowed: set[str], errors: list) -> None:
    for name in sorted(set(data) - allowed):
        errors.append({"field": name, "message": "unknown field"})


STORE_FIELDS = {"code", "name", "address", "phone", "active"}


def create_store(session: Session, data: dict[str, Any], caller: Caller) -> Store:
    errors: list = []
    _unknown(data, STORE_FIELDS, errors)
    code = _text(data, "code", errors, required=True, limit=32)
    if code:  # an identifier: precomposed and decomposed spellings are one code (NFC)
        code = unicodedata.normalize("NFC", code)
    name = _text(data, "name", errors, required=True)
    address = _text(data, "address", errors, limit=500) or ""
    phone = _text(data, "phone", errors, limit=40) or ""
    active = data.get("active", True)
    if not isinstance(active, bool):
        errors.append({"field": "active", "message": "must be true or false"})
    if code and session.scalar(select(Store.id).where(Store.code == code)) is not None:
        errors.append({"field": "code", "message": f"store code {code!r} is already used"})
    _raise(errors)
    store = Store(code=code, name=name, address=address, phone=phone, active=active)
    session.add(store)
    session.flush()
    audit.record(session, caller, "store.create", "store", store.id, after={"code": code, "name": name})
    return store


def update_store(session: Session, store_id: int, data: dict[str, Any], caller: Caller) -> Store:
    store = session.get(Store, store_id)
    if store is None:
        raise NotFound(f"store {store_id} does not exist")
    errors: list = []
    _unknown(data, STORE_FIELDS - {"code"}, errors)
    changes: dict[str, Any] = {}
    for name, limit in (("name", 200), ("address", 500), ("phone", 40)):
        if name in data:
            value = _text(data, name, errors, required=(name == "name"), limit=limit)
            if value is not None:
                changes[name] = value
    if "active" in data:
        if not isinstance(data["active"], bool):
            errors.append({"field": "active", "message": "must be true or false"})
        else:
            changes["active"] = data["active"]
    _raise(errors)
    if changes.get("active", store.active) != store.active and caller.role not in ("admin", "system"):
        # closing or reopening a store is the chain's decision, as withdrawing a product is
        raise Forbidden(f"role {caller.role!r} may not {'close' if store.active else 'reopen'} store {store_id}",
                        fields=[{"field": "active", "message": "only an admin may close or reopen a store"}])
    before = {k: getattr(store, k) for k in changes}
    for k, v in changes.items():
        setattr(store, k, v)
    session.flush()
    audit.record(session, caller, "store.update", "store", store.id, before=before, after=changes)
    return store


CUSTOMER_FIELDS = {"name", "phone", "openid", "unionid", "store_id"}


def create_customer(session: Session, data: dict[str, Any], caller: Caller) -> Customer:
    errors: list = []
    _unknown(data, CUSTOMER_FIELDS, errors)
    name = _text(data, "name", errors, limit=100) or ""
    phone = _text(data, "phone", errors, limit=40)
    if phone and not re.fullmatch(r"\+?[0-9 -]{5,20}", phone):
        errors.append({"field": "phone", "message": "must be a phone number"})
    openid = _text(data, "openid", errors, limit=64)
    unionid = _text(data, "unionid", errors, limit=64)
    store_id = data.get("store_id")
    if store_id is not None and (not isinstance(store_id, int) or isinstance(store_id, bool)
                                 or session.get(Store, store_id) is None):
        errors.append({"field": "store_id", "message": f"store {store_id!r} does not exist"})
    if openid and session.scalar(select(Customer.id).where(Customer.openid == openid)) is not None:
        errors.append({"field": "openid", "message": "a customer with this openid exists"})
    _raise(errors)
    customer = Customer(name=name, phone=phone, openid=openid, unionid=unionid, store_id=store_id)
    session.add(customer)
    session.flush()
    return customer


def _licence(data: dict, errors: list, changes: dict) -> None:
    if "licence_number" in data:
        changes["licence_number"] = _text(data, "licence_number", errors, limit=64)
    if "licence_expiry" in data:
        value = data["licence_expiry"]
        if value is None:
            changes["licence_expiry"] = None
        else:
            try:
                changes["licence_expiry"] = value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
            except (TypeError, ValueError):
                errors.append({"field": "licence_expiry", "message": "must be a date (YYYY-MM-DD)"})


USER_FIELDS = {"username", "password", "role", "display_name", "store_id", "licence_number", "licence_expiry", "active"}


def _role_and_store(session: Session, data: dict, errors: list, changes: dict) -> None:
    if "role" in data:
        if data["role"] not in STAFF_ROLES:
            errors.append({"field": "role", "message": f"must be one of {', '.join(STAFF_ROLES)}"})
        else:
            changes["role"] = data["role"]
    if "store_id" in data:
        sid = data["store_id"]
        if sid is not None and (not isinstance(sid, int) or isinstance(sid, bool) or session.get(Store, sid) is None):
            errors.append({"field": "store_id", "message": f"store {sid!r} does not exist"})
        else:
            changes["store_id"] = sid


def _password(data: dict, errors: list, changes: dict) -> None:
    if "password" in data:
        pw = data["password"]
        if not isinstance(pw, str) or len(pw) < MIN_PASSWORD or len(pw) > 200:
            errors.append({"field": "password", "message": f"must be {MIN_PASSWORD} to 200 characters"})
        else:
            changes["password_hash"] = hash_password(pw)


def create_user(session: Session, data: dict[str, Any], caller: Caller) -> User:
    errors: list = []
    _unknown(data, USER_FIELDS, errors)
    username = data.get("username")
    if not isinstance(username, str) or not _USERNAME.match(username):
        errors.append({"field": "username", "message": "3-64 letters, digits, _ . @ -"})
    elif session.scalar(select(User.id).where(User.username == username)) is not None:
        errors.append({"field": "username", "message": f"{username!r} is taken"})
    if "role" not in data:
        errors.append({"field": "role", "message": "is required"})
    if "password" not in data:
        errors.append({"field": "password", "message": "is required"})
    changes: dict[str, Any] = {}
    _role_and_store(session, data, errors, changes)
    _password(data, errors, changes)
    _licence(data, errors, changes)
    changes["display_name"] = _text(data, "display_name", errors, limit=100) or ""
    _raise(errors)
    user = User(username=username, active=bool(data.get("active", True)), **changes)
    session.add(user)
    session.flush()
    audit.record(session, caller, "user.create", "user", user.id,
                 after={"username": username, "role": user.role, "store_id": user.store_id})
    return user


def update_user(session: Session, user_id: int, data: dict[str, Any], caller: Caller) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    errors: list = []
    _unknown(data, USER_FIELDS - {"username"}, errors)
    changes: dict[str, Any] = {}
    _role_and_store(session, data, errors, changes)
    _password(data, errors, changes)
    _licence(data, errors, changes)
    if "display_name" in data:
        changes["display_name"] = _text(data, "display_name", errors, limit=100) or ""
    if "active" in data:
        if not isinstance(data["active"], bool):
            errors.append({"field": "active", "message": "must be true or false"})
        else:
            changes["active"] = data["active"]
    _raise(errors)
    before = {k: getattr(user, k) for k in changes if k != "password_hash"}
    for k, v in changes.items():
        setattr(user, k, v)
    session.flush()
    audit.record(session, caller, "user.update", "user", user.id, before=_jsonable(before),
                 after=_jsonable({k: v for k, v in changes.items() if k != "password_hash"}),
                 detail="password changed" if "password_hash" in changes else "")
    return user


def _jsonable(d: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v) for k, v in d.items()}


def list_stores(session: Session, *, active: bool | None = None, after: int | None = None,
                limit: int = 50) -> Page[Store]:
    stmt = select(Store)
    if active is not None:
        stmt = stmt.where(Store.active == active)
    return keyset(session, stmt, Store.id, after=after, limit=limit)


def list_customers(session: Session, *, q: str | None = None, store_id: int | None = None,
                   after: int | None = None, limit: int = 50) -> Page[Customer]:
    """Customers by id; ``q`` matches name or phone (substring)."""
    stmt = select(Customer)
    if q:
        pattern = like_pattern(q.strip())
        stmt = stmt.where(or_(Customer.name.ilike(pattern, escape="\\"), Customer.phone.ilike(pattern, escape="\\")))
    if store_id is not None:
        stmt = stmt.where(Customer.store_id == store_id)
    return keyset(session, stmt, Customer.id, after=after, limit=limit)


def list_users(session: Session, *, role: str | None = None, store_id: int | None = None,
               active: bool | None = None, after: int | None = None, limit: int = 50) -> Page[User]:
    stmt = select(User)
    if role is not None:
        stmt = stmt.where(User.role == role)
    if store_id is not None:
        stmt = stmt.where(User.store_id == store_id)
    if active is not None:
        stmt = stmt.where(User.active == active)
    return keyset(session, stmt, User.id, after=after, limit=limit)
