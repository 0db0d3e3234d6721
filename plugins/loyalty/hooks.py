"""Hook implementations of the loyalty plugin.

Order lifecycle → points (each step idempotent by its ledger source key)::

    placed with redeem_points --(order_price_adjustments)--> hold (available → held), discount line
    paid       --> held points spent; points earned as pending (member joined if auto_join)
    cancelled  --> held points released
    completed  --> online: vest (pending → available, a new lot); offline: vest when the
                   return window closes (`pharmo2o loyalty vest`, or now if it is 0)
    refunded   --> earned points clawed back, redeemed points given back (proportionally)
"""
from __future__ import annotations

from core import hookimpl
from core.errors import ValidationFailed
from core.orders import channels

from . import services
from .earning import DISCOUNT_CODE
from .schemas import RedeemPoints
from .settings import registry_for, settings_of


def _context(session):
    registry = registry_for(session)
    return registry, settings_of(registry.config)


def _online(registry, channel: str) -> bool:
    info = channels(registry).get(channel)
    return bool(info and info.get("online"))


@hookimpl
def startup(registry):
    settings_of(registry.config)  # a bad [loyalty] section fails at start, naming the key


@hookimpl
def order_request_fields():
    return {"redeem_points": (RedeemPoints, None)}


@hookimpl
def order_validate(session, order, extra, caller):
    _registry, settings = _context(session)
    _points, problems = services.check_redeem_request(order, extra, settings)
    return problems or None


@hookimpl
def order_price_adjustments(session, order, extra, caller):
    registry, settings = _context(session)
    points, problems = services.check_redeem_request(order, extra, settings)
    if problems:  # order_validate normally refused it already
        field, message = problems[0]
        raise ValidationFailed.one(field, message)
    if not points:
        return None
    fen = services.hold(session, settings, order, points, _online(registry, order.channel), caller.actor)
    return [{"code": DISCOUNT_CODE, "label": f"{points} points redeemed", "amount_fen": -fen}]


@hookimpl
def order_status_changed(session, order, old_status, new_status, caller):
    if order.customer_id is None:
        return
    registry, settings = _context(session)
    actor = caller.actor if caller is not None else "system"
    if new_status == "paid":
        if old_status is not None:  # an order created paid (a recorded sale) never held points to spend:
            services.spend(session, order, actor)  # redemption is refused on it (check_redeem_request)
        services.earn(session, settings, order, _online(registry, order.channel), actor)
    elif new_status == "cancelled":
        services.release(session, settings, order, actor)
    elif new_status == "completed":
        services.schedule_vest(session, settings, order, actor)
    elif new_status == "refunded":
        services.refund(session, settings, order, actor)


@hookimpl
def register_commands(cli):
    from .cli import loyalty
    cli.add_command(loyalty)


@hookimpl
def register_jobs():
    """Vesting hourly, expiry and tier ageing daily: each run is idempotent (ledger source keys)."""
    from core.jobs import Job

    def vest(ctx):
        done = services.run_vest(ctx, settings_of(ctx.config), None)["orders"]
        return f"vested the points of {done} order(s)" if done else ""

    def expire(ctx):
        result = services.run_expire(ctx, settings_of(ctx.config), None)
        return f"expired {result['points']} point(s)" if result["points"] else ""

    def tiers(ctx):
        changed = services.run_tiers(ctx, settings_of(ctx.config), None)["changed"]
        return f"{changed} member(s) changed tier" if changed else ""

    return [Job("loyalty.vest", 3600, vest), Job("loyalty.expire", 24 * 3600, expire),
            Job("loyalty.tiers", 24 * 3600, tiers)]


@hookimpl
def register_routes():
    from .api import routes
    return routes()
