"""How many points an order earns, and how much of it may be paid with points.

Pure functions of an order's lines, adjustments and payments and the
settings; the rounding rules are written down in the plugin's README.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from core.models import Order, OrderLine

from .settings import Settings, Tier

__all__ = ["Earning", "earning", "insurance_fen", "redeemable_fen", "line_multiplier", "DISCOUNT_CODE"]

DISCOUNT_CODE = "loyalty_points"


@dataclass(frozen=True)
class Earning:
    eligible_fen: int  # self-paid amount on eligible lines (counts towards tiers)
    points: int  # points the order earns (before any refund)


def line_multiplier(line: OrderLine, settings: Settings) -> Fraction:
    product = line.product
    if product is not None and product.sku in settings.product_multipliers:
        return Fraction(settings.product_multipliers[product.sku])
    if product is not None and product.category in settings.category_multipliers:
        return Fraction(settings.category_multipliers[product.category])
    return Fraction(1)


def insurance_fen(order: Order) -> int | None:
    """The amount of ``extra["payments"]`` paid by medical insurance; ``None`` if an amount is unreadable."""
    total = 0
    for p in (order.extra or {}).get("payments") or []:
        if not isinstance(p, dict) or p.get("method") != "medical_insurance":
            continue
        amount = p.get("amount_fen")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            return None
        total += amount
    return total


def _eligible_lines(order: Order, settings: Settings) -> list[OrderLine]:
    return [line for line in order.lines if settings.earn_on_rx or line.rx_class != "rx"]


def earning(order: Order, settings: Settings, tier: Tier) -> Earning:
    """Points for a paid ``order`` earned in ``tier``.

    eligible = max(0, self-paid total - ineligible lines), where self-paid is
    the order total (after every discount, points included) minus medical
    insurance: insurance and discounts are taken from the eligible lines
    first, so no point is ever earned on them. Points = floor(eligible x the
    eligible lines' average multiplier (weighted by line total) x
    points_per_yuan / 100 x the tier multiplier), rounded once per order.
    """
    lines = _eligible_lines(order, settings)
    base = sum(line.line_total_fen for line in lines)
    insurance = insurance_fen(order) if settings.exclude_medical_insurance else 0
    if insurance is None or base <= 0:
        return Earning(0, 0)
    ineligible = sum(line.line_total_fen for line in order.lines) - base
    self_paid = max(0, order.total_fen - insurance)
    eligible = max(0, min(base, self_paid - ineligible))
    weighted = sum(line.line_total_fen * line_multiplier(line, settings) for line in lines)
    points = Fraction(eligible) * weighted / base * Fraction(settings.points_per_yuan) / 100 \
        * Fraction(tier.multiplier)
    return Earning(eligible, int(points))  # int() floors a non-negative Fraction


def redeemable_fen(order: Order, settings: Settings) -> int:
    """The largest discount points may give on ``order`` (lines as placed, before adjustments)."""
    lines = [line for line in order.lines if settings.redeem_on_rx or line.rx_class != "rx"]
    base = sum(line.line_total_fen for line in lines)
    return base * settings.max_redeem_percent // 100
