"""What a terminal may sell offline, shared by the catalogue (to tell the terminal) and the upload
(to check what it did).

* Rx: only with the id of a prescription approved online, and only when some
  plugin offers the ``prescription_review`` capability; that plugin's
  ``order_hold`` finds the id in the sale's ``extra["prescription_id"]`` and
  holds (so refuses) a sale whose prescription it does not know as approved.
  Without the capability, Rx lines are refused offline.
* Ephedrine: the core's own ``order_validate`` asks for
  ``extra["buyer_id_number"]`` and at most ``[limits] ephedrine_packs_per_sale``.
* Every other refusal comes from the ``product_sale_refusal`` hook for the
  offline channel ``pos``.
"""
from __future__ import annotations

from core import catalog as core_catalog
from core.models import Product

__all__ = ["CHANNEL", "has_prescription_review", "offline_restrictions", "RX_WITHOUT_REVIEW",
           "RX_WITHOUT_PRESCRIPTION"]

CHANNEL = "pos"
RX_WITHOUT_REVIEW = ("prescription drugs are not sold offline here: no prescription review is enabled on the "
                     "server, so no prescription can have been approved online")
RX_WITHOUT_PRESCRIPTION = "a prescription (Rx) line needs the id of a prescription approved online (prescription_id)"


def has_prescription_review(ctx) -> bool:
    """Whether an enabled plugin provides the ``prescription_review`` capability."""
    return any("prescription_review" in (caps or []) for caps in ctx.registry.hook.capabilities())


def offline_restrictions(ctx, product: Product, caller) -> dict:
    reasons = list(core_catalog.sale_refusals(ctx.registry, product, CHANNEL, caller))
    if not core_catalog.visible(ctx.registry, product, CHANNEL, caller) and not reasons:
        reasons.append("the product is not sold on POS terminals")
    needs_rx = product.rx_class == "rx"
    if needs_rx and not has_prescription_review(ctx):
        reasons.append(RX_WITHOUT_REVIEW)
    cap = None
    if product.ephedrine:
        value = ctx.setting("limits.ephedrine_packs_per_sale", 2)
        cap = None if value in (None, "", 0) else int(value)
    return {"allowed": not reasons, "reasons": reasons, "needs_prescription": needs_rx,
            "needs_buyer_id": bool(product.ephedrine), "max_units_per_sale": cap}
