"""The core's own behaviour, registered as the default plugin ``core``.

Like Datasette's default plugins: the core answers its own hooks, so the hook
surface is exercised even with no plugin enabled.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

from sqlalchemy import func, select

from .catalog import RX_NOTICE
from .errors import ValidationFailed
from .hookspecs import hookimpl

log = logging.getLogger("pharmo2o.core")


@dataclass(frozen=True)
class StaffPayment:
    """Cash or a manually confirmed payment taken by store staff."""

    name: str
    roles: tuple[str, ...] = ("admin", "store_manager", "clerk", "pharmacist")

    def capture(self, session, order, payload, caller):
        amount = payload.get("amount_fen", order.total_fen)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount != order.total_fen:
            raise ValidationFailed.one("amount_fen", f"must equal the order total {order.total_fen}")
        ref = payload.get("reference")
        if ref is not None and (not isinstance(ref, str) or len(ref) > 100):
            raise ValidationFailed.one("reference", "must be a string of at most 100 characters")
        return {"reference": ref or f"{self.name}:{order.id}"}


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_resident_id(value: str) -> bool:
    """An 18-character PRC resident identity number with a correct check digit (GB 11643)."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{17}[0-9Xx]", value):
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == value[17].upper()


class DefaultPlugin:
    """The core's hook implementations; one instance per plugin registry."""

    def __init__(self) -> None:
        self.registry = None
        self._channels: dict | None = None

    @hookimpl
    def startup(self, registry):
        self.registry = registry

    def _online(self, channel: str) -> bool:
        if self._channels is None:
            from .orders import channels
            self._channels = channels(self.registry)
        info = self._channels.get(channel)
        return bool(info and info.get("online"))

    def _has_capability(self, name: str) -> bool:
        return any(name in (caps or []) for caps in self.registry.hook.capabilities())

    @hookimpl
    def register_sales_channels(self):
        return [
            {"name": "store", "online": False, "label": "Counter sale by store staff"},
            {"name": "web", "online": True, "label": "Generic online shop"},
        ]

    @hookimpl
    def product_visible(self, product, channel, caller):
        if self._online(channel) and not (caller and caller.is_staff):
            if not product.active or product.online_banned or product.ephedrine:
                return False
        return None

    @hookimpl
    def product_sale_refusal(self, product, channel, caller):
        if not product.active:
            return "the product is inactive"
        if not self._online(channel):
            return None
        if product.online_banned:
            return "the product is on the online-sale ban list"
        if product.ephedrine:
            return "ephedrine-containing products are sold in store only"
        if product.rx_class == "rx" and not self._has_capability("prescription_review"):
            return "prescription drugs need pharmacist review, which is not enabled for online sale"
        return None

    @hookimpl
    def product_serialize(self, product, data, channel, caller):
        if self._online(channel) and product.rx_class == "rx":
            data["rx_notice"] = RX_NOTICE
            if not (caller and caller.is_staff):
                data["package_insert"] = None

    @hookimpl
    def register_payment_providers(self):
        return [StaffPayment("cash"), StaffPayment("manual")]

    @hookimpl
    def order_request_fields(self):
        return {"buyer_id_number": (str | None, None)}

    def _limit(self, key: str, default):
        value = self.registry.config.get(key, default)
        return None if value in (None, "", 0) else int(value)

    @hookimpl
    def order_validate(self, session, order, extra, caller):
        """Ephedrine register and quantity limits (DOMAIN.md, Stock)."""
        from .models import Order, OrderLine
        problems = []
        eph_units = sum(line.quantity for line in order.lines if line.product.ephedrine)
        if eph_units:
            cap = self._limit("limits.ephedrine_packs_per_sale", 2)
            if cap is not None and eph_units > cap:
                problems.append(("lines", f"at most {cap} packs of ephedrine-containing products per sale"))
            buyer = (extra or {}).get("buyer_id_number")
            if not valid_resident_id(buyer or ""):
                problems.append(("buyer_id_number",
                                 "ephedrine-containing products need the buyer's 18-digit resident ID for the register"))
        per_order = self._limit("limits.product_units_per_order", None)
        per_day = self._limit("limits.product_units_per_customer_per_day", None)
        for i, line in enumerate(order.lines):
            if per_order is not None and line.quantity > per_order:
                problems.append((f"lines[{i}].quantity", f"at most {per_order} units of one product per order"))
            if per_day is not None and order.customer_id is not None:
                since = order.created_at - dt.timedelta(days=1)
                bought = session.scalar(
                    select(func.coalesce(func.sum(OrderLine.quantity), 0)).join(Order, Order.id == OrderLine.order_id)
                    .where(Order.customer_id == order.customer_id, OrderLine.product_id == line.product_id,
                           Order.id != order.id, Order.created_at >= since,
                           Order.status.notin_(("cancelled", "refunded"))))
                if bought + line.quantity > per_day:
                    problems.append((f"lines[{i}].quantity",
                                     f"at most {per_day} units of this product per customer per day ({bought} already)"))
        return problems or None

    @hookimpl
    def register_console_pages(self):
        """The console's own pages: dashboard, order queue, stock, catalogue, chain admin."""
        from .console.pages import CORE_PAGES
        return [dict(page) for page in CORE_PAGES]

    @hookimpl
    def notification_senders(self):
        def log_sender(payload):
            log.info("notification: %s", payload)
        return {"log": log_sender}
