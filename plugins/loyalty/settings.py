"""The ``[loyalty]`` configuration section, read once per configuration and checked.

Every key is optional; see the plugin's README for what each one means.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from core.config import SectionCache

__all__ = ["Settings", "Tier", "settings_of", "registry_for", "SettingsError"]


class SettingsError(ValueError):
    """A ``[loyalty]`` value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Tier:
    name: str  # shown to customers
    min_spend_fen: int  # rolling 12-month eligible spend needed
    multiplier: Decimal  # applied to the points of an order earned in this tier


DEFAULT_TIERS = (
    {"name": "member", "min_spend_fen": 0, "multiplier": 1},
    {"name": "silver", "min_spend_fen": 200_000, "multiplier": "1.2"},
    {"name": "gold", "min_spend_fen": 500_000, "multiplier": "1.5"},
)


@dataclass(frozen=True)
class Settings:
    points_per_yuan: Decimal = Decimal(1)  # points per yuan of eligible self-paid amount
    fen_per_point: int = 1  # discount one redeemed point is worth
    product_multipliers: dict[str, Decimal] = field(default_factory=dict)  # by SKU
    category_multipliers: dict[str, Decimal] = field(default_factory=dict)  # by product category
    tiers: tuple[Tier, ...] = ()  # ascending min_spend_fen, the first at 0
    earn_on_rx: bool = False  # count Rx lines as eligible
    exclude_medical_insurance: bool = True  # no points on amounts paid by 医保
    auto_join: bool = True  # a customer becomes a member on their first paid order
    return_window_days: int = 7  # offline sales: pending this long after the sale
    online_return_window_days: int = 0  # online orders: pending this long after completion
    expiry_months: int = 12  # a lot expires at the end of the calendar month this many months after earning
    timezone: dt.tzinfo = dt.timezone.utc  # where "end of month" is measured
    negative_balance: str = "forbid"  # refund of already spent points: "allow" (debt) or "forbid" (write off)
    max_redeem_percent: int = 100  # at most this share of the eligible lines' total may be paid with points
    min_redeem_points: int = 1
    redeem_on_rx: bool = False  # may points pay for Rx lines
    no_redemption_channels: tuple[str, ...] = ("pos",)  # besides every sale recorded after the fact
    max_adjustment_points: int = 1_000_000
    expiring_within_days: int = 30  # default window of "points expiring soon"

    def tier(self, name: str) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        return self.tiers[0]

    def tier_for(self, spend_fen: int) -> Tier:
        chosen = self.tiers[0]
        for t in self.tiers:
            if spend_fen >= t.min_spend_fen:
                chosen = t
        return chosen


def _decimal(key: str, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise SettingsError(f"loyalty.{key}: {value!r} is not a number")
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise SettingsError(f"loyalty.{key}: {value!r} is not a number") from None
    if not d.is_finite() or d < 0:
        raise SettingsError(f"loyalty.{key}: {value!r} must be a number >= 0")
    return d


def _int(key: str, value: Any, lo: int = 0, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise SettingsError(f"loyalty.{key}: {value!r} must be an integer {bound}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"loyalty.{key}: {value!r} must be true or false")
    return value


def _multipliers(key: str, value: Any) -> dict[str, Decimal]:
    if not isinstance(value, dict):
        raise SettingsError(f"loyalty.{key}: must be a table of name = multiplier")
    return {str(k): _decimal(f"{key}.{k}", v) for k, v in value.items()}


def _tiers(value: Any) -> tuple[Tier, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise SettingsError("loyalty.tiers: must be a non-empty list of {name, min_spend_fen, multiplier}")
    tiers = []
    for i, raw in enumerate(value):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"].strip():
            raise SettingsError(f"loyalty.tiers[{i}]: needs a non-empty name")
        tiers.append(Tier(raw["name"].strip(), _int(f"tiers[{i}].min_spend_fen", raw.get("min_spend_fen", 0)),
                          _decimal(f"tiers[{i}].multiplier", raw.get("multiplier", 1))))
    tiers.sort(key=lambda t: t.min_spend_fen)
    if tiers[0].min_spend_fen != 0:
        raise SettingsError("loyalty.tiers: the lowest tier must have min_spend_fen = 0")
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise SettingsError(f"loyalty.tiers: names must be unique, got {names}")
    return tuple(tiers)


def parse(section: dict[str, Any]) -> Settings:
    """Settings from the ``[loyalty]`` table; unknown keys are refused (a typo must not pass silently)."""
    known = set(Settings.__dataclass_fields__)
    unknown = sorted(set(section) - known)
    if unknown:
        raise SettingsError(f"loyalty: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    s = dict(section)
    kw: dict[str, Any] = {}
    if "points_per_yuan" in s:
        kw["points_per_yuan"] = _decimal("points_per_yuan", s["points_per_yuan"])
    for key, hi in (("fen_per_point", 10_000), ("return_window_days", 3650), ("online_return_window_days", 3650),
                    ("expiry_months", 1200), ("max_redeem_percent", 100), ("max_adjustment_points", None),
                    ("expiring_within_days", 3650)):
        if key in s:
            kw[key] = _int(key, s[key], 0, hi)
    if "min_redeem_points" in s:
        kw["min_redeem_points"] = _int("min_redeem_points", s["min_redeem_points"], 1)
    if kw.get("fen_per_point", 1) < 1:
        raise SettingsError("loyalty.fen_per_point: must be at least 1")
    if kw.get("expiry_months", 12) < 1:
        raise SettingsError("loyalty.expiry_months: must be at least 1")
    for key in ("earn_on_rx", "exclude_medical_insurance", "auto_join", "redeem_on_rx"):
        if key in s:
            kw[key] = _bool(key, s[key])
    for key in ("product_multipliers", "category_multipliers"):
        if key in s:
            kw[key] = _multipliers(key, s[key])
    kw["tiers"] = _tiers(s.get("tiers", DEFAULT_TIERS))
    if "timezone" in s:
        try:
            kw["timezone"] = zoneinfo.ZoneInfo(str(s["timezone"]))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"loyalty.timezone: unknown time zone {s['timezone']!r}") from None
    else:
        try:
            kw["timezone"] = zoneinfo.ZoneInfo("Asia/Shanghai")
        except zoneinfo.ZoneInfoNotFoundError:  # no tz database: UTC+8 has no DST
            kw["timezone"] = dt.timezone(dt.timedelta(hours=8))
    if "negative_balance" in s:
        if s["negative_balance"] not in ("allow", "forbid"):
            raise SettingsError(f"loyalty.negative_balance: {s['negative_balance']!r} must be 'allow' or 'forbid'")
        kw["negative_balance"] = s["negative_balance"]
    if "no_redemption_channels" in s:
        value = s["no_redemption_channels"]
        if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
            raise SettingsError("loyalty.no_redemption_channels: must be a list of channel names")
        kw["no_redemption_channels"] = tuple(value)
    return Settings(**kw)


#: the checked settings of a :class:`core.config.Config`, cached by content
settings_of = SectionCache("loyalty", parse)


def registry_for(session):
    """The plugin registry serving ``session`` (through the Context that made it)."""
    from core.context import context_of
    return context_of(session).registry
