"""Who may touch which store, customer or order: the scoping rules shared by the resources.

Roles decide which operations a caller may call (see :mod:`core.api.operations`);
these rules decide which rows: staff bound to a store (``users.store_id``)
act only on that store's stock and orders (admins and unbound staff on all),
and a customer sees only their own orders and record.
"""
from __future__ import annotations

from ..auth import Caller
from ..errors import Forbidden, NotFound
from ..models import Order

__all__ = ["store_scope", "check_store", "check_order", "is_store_bound"]


def is_store_bound(caller: Caller) -> bool:
    return caller.is_staff and caller.role != "admin" and caller.store_id is not None


def store_scope(caller: Caller) -> int | None:
    """The only store a caller may act on, or ``None`` when not restricted to one."""
    return caller.store_id if is_store_bound(caller) else None


def check_store(caller: Caller, store_id: int, field: str | None = None) -> None:
    """Refuse (403) a store-bound staff member acting on another store."""
    scope = store_scope(caller)
    if scope is not None and scope != store_id:
        fields = [{"field": field, "message": f"you act for store {scope} only"}] if field else None
        raise Forbidden(f"{caller.role} of store {scope} may not act on store {store_id}", fields=fields)


def check_order(caller: Caller, order: Order) -> None:
    """A customer sees only their orders (others are 404); store staff only their store's (403)."""
    if caller.role == "customer":
        if order.customer_id != caller.customer_id:
            raise NotFound(f"order {order.id} does not exist")
        return
    check_store(caller, order.store_id)
