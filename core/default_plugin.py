"""The core's own behaviour, registered as the default plugin ``core``.

Like Datasette's default plugins: the core answers its own hooks, so the hook
surface is exercised even with no plugin enabled.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

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
    def notification_senders(self):
        def log_sender(payload):
            log.info("notification: %s", payload)
        return {"log": log_sender}
