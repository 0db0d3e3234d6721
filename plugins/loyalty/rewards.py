"""Rewards: products customers may take for points. Never Rx or OTC-A (DOMAIN.md,
Loyalty): refused when configured, and a reward whose product was later
reclassified is shown as unavailable rather than offered."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.auth import Caller
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.listing import Page, keyset
from core.models import Product

from .models import Reward

__all__ = ["create_reward", "update_reward", "get_reward", "list_rewards", "serialize_reward", "FORBIDDEN_CLASSES"]

FORBIDDEN_CLASSES = ("rx", "otc_a")
_FIELDS = {"product_id", "points_cost", "label", "active"}


def _admin(caller: Caller) -> None:
    if caller.role != "admin":
        raise Forbidden(f"only an admin may configure rewards (caller role: {caller.role!r})")


def _refusal(product: Product | None) -> str | None:
    if product is None:
        return "does not exist"
    if product.rx_class in FORBIDDEN_CLASSES:
        label = {"rx": "a prescription (Rx)", "otc_a": "an OTC-A"}[product.rx_class]
        return f"product {product.id} is {label} drug: Rx and OTC-A products can never be rewards"
    if not product.active:
        return f"product {product.id} is inactive"
    return None


def _check(session: Session, data: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed.one("body", "must be an object")
    errors = [{"field": k, "message": "unknown field"} for k in sorted(set(data) - _FIELDS)]
    out: dict[str, Any] = {}
    if "product_id" in data or not partial:
        pid = data.get("product_id")
        if partial:
            errors.append({"field": "product_id", "message": "cannot be changed: create another reward"})
        else:
            product = session.get(Product, pid) if isinstance(pid, int) and not isinstance(pid, bool) else None
            why = _refusal(product) if product is not None else f"product {pid!r} does not exist"
            if why:
                errors.append({"field": "product_id", "message": why})
            out["product_id"] = pid
    if "points_cost" in data or not partial:
        cost = data.get("points_cost")
        if isinstance(cost, bool) or not isinstance(cost, int) or not 0 < cost <= 10_000_000:
            errors.append({"field": "points_cost", "message": "must be an integer from 1 to 10000000"})
        out["points_cost"] = cost
    if "label" in data:
        label = data["label"]
        if not isinstance(label, str) or len(label) > 200:
            errors.append({"field": "label", "message": "must be a string of at most 200 characters"})
        out["label"] = label
    if "active" in data:
        if not isinstance(data["active"], bool):
            errors.append({"field": "active", "message": "must be true or false"})
        out["active"] = data["active"]
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), fields=errors)
    return out


def serialize_reward(reward: Reward, product: Product | None) -> dict[str, Any]:
    why = _refusal(product)
    return {
        "id": reward.id, "product_id": reward.product_id, "points_cost": reward.points_cost,
        "label": reward.label or (f"{product.generic_name} {product.specification}".strip() if product else ""),
        "active": reward.active, "available": reward.active and why is None, "unavailable_reason": why,
        "created_at": reward.created_at.isoformat(), "updated_at": reward.updated_at.isoformat(),
    }


def create_reward(session: Session, data: dict[str, Any], caller: Caller) -> Reward:
    _admin(caller)
    fields = _check(session, data, partial=False)
    if session.scalar(select(Reward.id).where(Reward.product_id == fields["product_id"])) is not None:
        raise Conflict(f"product {fields['product_id']} is already a reward: change that one",
                       fields=[{"field": "product_id", "message": "already a reward"}])
    reward = Reward(product_id=fields["product_id"], points_cost=fields["points_cost"],
                    label=fields.get("label") or "", active=fields.get("active", True), created_by=caller.actor)
    session.add(reward)
    session.flush()
    audit.record(session, caller, "loyalty.reward_create", "loyalty_reward", reward.id,
                 after={k: getattr(reward, k) for k in ("product_id", "points_cost", "label", "active")})
    return reward


def get_reward(session: Session, reward_id: int) -> Reward:
    reward = session.get(Reward, reward_id) if isinstance(reward_id, int) else None
    if reward is None:
        raise NotFound(f"reward {reward_id} does not exist")
    return reward


def update_reward(session: Session, reward_id: int, data: dict[str, Any], caller: Caller) -> Reward:
    _admin(caller)
    reward = get_reward(session, reward_id)
    fields = _check(session, data, partial=True)
    if fields.get("active"):  # re-activating re-checks the product as it is now
        why = _refusal(session.get(Product, reward.product_id))
        if why:
            raise ValidationFailed.one("active", why)
    before = {k: getattr(reward, k) for k in fields}
    for k, v in fields.items():
        setattr(reward, k, v)
    session.flush()
    audit.record(session, caller, "loyalty.reward_update", "loyalty_reward", reward.id, before=before, after=fields)
    return reward


def list_rewards(session: Session, *, active: bool | None = None, after: int | None = None,
                 limit: int = 50) -> Page[Reward]:
    stmt = select(Reward)
    if active is not None:
        stmt = stmt.where(Reward.active.is_(active))
    return keyset(session, stmt, Reward.id, after=after, limit=limit)
