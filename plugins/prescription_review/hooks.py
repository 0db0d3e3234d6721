"""Hook implementations of the prescription_review plugin.

* catalogue: on online channels the ban list in force hides and refuses products; an Rx product
  shows the notice, is marked not directly purchasable and has its package insert withheld
  until the customer holds an approved prescription covering it (staff see everything);
* orders: Rx lines hold a new order for review (or consume the approved ``prescription_id``
  it names); approval, payment and dispensing are vetoed while the rules are not met;
  cancellation withdraws a pending prescription; dispensing is recorded;
* framework: the ``prescription_review`` capability (the core then accepts Rx online), routes,
  the console page, the CLI.
"""
from __future__ import annotations

import weakref

from sqlalchemy.orm import object_session

from core import hookimpl
from core.catalog import RX_NOTICE
from core.context import context_of
from core.orders import channels

from . import banlist, services
from .reasons import HOLD_REASON
from .settings import settings_of

#: the online channels of each plugin manager: registrations fixed when the plugins are loaded
#: (like routes), so asked once per process rather than once per product read
_ONLINE: "weakref.WeakKeyDictionary[object, frozenset[str]]" = weakref.WeakKeyDictionary()


def _online(registry, channel: str) -> bool:
    cache = _ONLINE.get(registry.pm)
    if cache is None:
        cache = _ONLINE[registry.pm] = frozenset(name for name, info in channels(registry).items() if info.get("online"))
    return channel in cache


def _product_context(product):
    """``(session, ctx)`` of the unit of work that loaded ``product`` (``(None, None)`` when detached)."""
    session = object_session(product)
    if session is None:
        return None, None
    return session, context_of(session)


def _ban(product, channel):
    """The ban-list entry that bans ``product`` on ``channel`` (online only), and the list."""
    session, ctx = _product_context(product)
    if session is None:  # not attached to a unit of work: cannot tell the channel; be strict
        found = banlist.bundled()
        return found.match(product), found
    if not _online(ctx.registry, channel):
        return None, None
    found = banlist.in_force(session, settings_of(ctx.config))
    return found.match(product), found


@hookimpl
def startup(registry):
    settings_of(registry.config)  # a bad [prescription_review] section fails at start, naming the key


@hookimpl
def capabilities():
    return ["prescription_review"]


# ------------------------------------------------------------------ products

@hookimpl
def product_visible(product, channel, caller):
    if caller is not None and caller.is_staff:
        return None
    entry, _list = _ban(product, channel)
    return False if entry is not None else None


@hookimpl
def product_sale_refusal(product, channel, caller):
    entry, found = _ban(product, channel)
    if entry is None:
        return None
    return f"on the online-sale ban list (version {found.version}): {entry.reason}"


@hookimpl(trylast=True)  # after the core's own edits, so that an approved customer gets the insert back
def product_serialize(product, data, channel, caller):
    session, ctx = _product_context(product)
    if session is None or not _online(ctx.registry, channel):
        return
    settings = settings_of(ctx.config)
    entry, found = _ban(product, channel)
    if entry is not None:
        data["online_ban"] = {"version": found.version, "entry": entry.id, "reason": entry.reason}
    if product.rx_class != "rx":
        return
    data["rx_notice"] = RX_NOTICE
    data["prescription_required"] = True
    if caller is not None and caller.is_staff:
        return
    approved = None
    if caller is not None and caller.role == "customer" and caller.customer_id is not None:
        approved = services.approved_for_product(session, caller.customer_id, product.id, settings.today())
    data["approved_prescription_id"] = approved
    if approved is None:
        data["package_insert"] = None  # withheld until a pharmacist approved the buyer's prescription
        data["purchasable"] = False  # no direct buy: order, then upload the prescription for review
        data["purchase_flow"] = "prescription_review"
    else:
        data["package_insert"] = product.package_insert
        data["purchase_flow"] = "approved_prescription"


# -------------------------------------------------------------------- orders

@hookimpl
def order_request_fields():
    return {"prescription_id": (int | None, None)}


@hookimpl
def order_hold(session, order, extra, caller):
    if not services.rx_lines(order):
        return None
    named = (extra or {}).get("prescription_id")
    if named is None:
        return HOLD_REASON
    services.consume_for(session, order, named, caller.actor if caller is not None else "system")
    return None


@hookimpl
def order_before_transition(session, order, old_status, new_status, caller):
    if not services.rx_lines(order):
        return None
    if old_status == "awaiting_review" and new_status == "awaiting_payment":
        p = services.order_prescription(session, order)
        if p is None or p.status != "approved":
            return "its prescription (Rx) lines wait for a pharmacist to approve the prescription"
    elif new_status == "paid":
        return services.payment_refusal(session, order)
    elif new_status in ("ready", "dispatched"):
        return services.dispense_refusal(session, order, caller)
    return None


@hookimpl
def order_status_changed(session, order, old_status, new_status, caller):
    if new_status == "cancelled":
        services.on_order_cancelled(session, order, caller)
    elif new_status in ("ready", "dispatched") and services.rx_lines(order):
        services.record_dispensing(session, order, caller)


# ----------------------------------------------------------------- framework

@hookimpl
def register_routes():
    from .api import routes
    return routes()


@hookimpl
def register_commands(cli):
    from .cli import prescriptions
    cli.add_command(prescriptions)


@hookimpl
def register_console_pages():
    return [{"id": "review", "title": "Prescription review", "roles": ["pharmacist"], "script": "review.js",
             "section": "Pharmacy", "order": 25}]
