"""The hook implementations of meituan_delivery: one sales channel, one payment provider, a price
adjustment, an outbox sender and its messages, two webhooks, a staff route, a CLI group and a console page.

Status changes made by someone other than Meituan (the store dispatching,
refunding or completing an order) are pushed to Meituan through the outbox:
queued in the change's transaction, sent after commit by the job runner, retried
until Meituan answers 2xx.
"""
from __future__ import annotations

from sqlalchemy import select

from core import hookimpl
from core.db import utcnow
from core.errors import Forbidden, ValidationFailed
from core.outbox import enqueue

from .models import MeituanOrder
from .sender import KIND, status_sender
from .service import CHANNEL, PROVIDER, is_meituan
from .settings import settings_of


@hookimpl
def startup(registry):
    settings_of(registry.config)  # a bad [meituan] section fails at start, naming the key


@hookimpl
def register_sales_channels():
    return [{"name": CHANNEL, "online": True, "label": "美团外卖 Meituan delivery"}]


@hookimpl
def product_sale_refusal(product, channel, caller):
    if channel == CHANNEL and product.rx_class == "rx":
        return "prescription drugs are not sold through Meituan delivery"
    return None


@hookimpl
def order_price_adjustments(session, order, extra, caller):
    """Meituan charges its own menu prices: the difference to ours is one adjustment line."""
    paid = (extra or {}).get("meituan_total_fen")
    if order.channel != CHANNEL or paid is None:
        return None
    difference = paid - sum(line.line_total_fen for line in order.lines)
    if difference == 0:
        return None
    return [{"code": "meituan_price", "label": "Meituan price difference", "amount_fen": difference}]


class MeituanPayment:
    """The customer paid Meituan; Meituan settles with the chain. Only Meituan's own calls may use it."""

    name = PROVIDER
    roles: tuple[str, ...] = ()

    def capture(self, session, order, payload, caller):
        if not is_meituan(caller) or order.channel != CHANNEL:
            raise Forbidden("the meituan payment provider is used only by Meituan's order webhook",
                            fields=[{"field": "provider", "message": "not available to this caller"}])
        reference = payload.get("reference")
        if not isinstance(reference, str) or not reference:
            raise ValidationFailed.one("reference", "the Meituan order id is required")
        return {"reference": reference}


@hookimpl
def register_payment_providers():
    return [MeituanPayment()]


@hookimpl
def order_status_changed(session, order, old_status, new_status, caller):
    if order.channel != CHANNEL or old_status is None or is_meituan(caller):
        return  # Meituan already knows what it did itself
    link = session.scalars(select(MeituanOrder).where(MeituanOrder.order_id == order.id)).one_or_none()
    if link is None:
        return
    # queued in this transaction: sent only if the change commits (the sender signs it then)
    enqueue(session, KIND, {"order_id": link.meituan_order_id, "status": new_status, "pharmo2o_order_id": order.id,
                            "at": utcnow().isoformat()}, dedupe_key=f"meituan:{order.id}:{new_status}")


@hookimpl
def notification_senders(ctx):
    return {KIND: status_sender(ctx)}


@hookimpl
def register_routes():
    from .api import routes
    return routes()


@hookimpl
def register_commands(cli):
    from .cli import meituan
    cli.add_command(meituan)


@hookimpl
def register_console_pages():
    return [{"id": "meituan", "title": "Meituan deliveries", "roles": ["admin", "store_manager", "clerk"],
             "script": "deliveries.js", "section": "Channels", "order": 60}]
