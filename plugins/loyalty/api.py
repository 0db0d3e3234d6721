"""The loyalty plugin's REST resources (mounted through ``register_routes``).

::

    GET    /api/v1/members/{customer_id}              balances, tier, points expiring soon (the customer, staff)
    POST   /api/v1/members/{customer_id}              join explicitly (the customer, staff)
    GET    /api/v1/members/{customer_id}/ledger       the member's entries, newest first (the customer, staff)
    POST   /api/v1/members/{customer_id}/adjustments  a staff correction (admin; audited; not one's own account)
    GET    /api/v1/loyalty/rewards                    rewards (customers: the available ones)
    POST   /api/v1/loyalty/rewards                    configure one (admin; never Rx / OTC-A)
    GET    /api/v1/loyalty/rewards/{reward_id}
    PATCH  /api/v1/loyalty/rewards/{reward_id}        (admin)
    GET    /api/v1/loyalty/staff-links                staff users who are also customers (admin)
    POST   /api/v1/loyalty/staff-links                (admin)
    DELETE /api/v1/loyalty/staff-links/{user_id}      (admin; not one's own)

Points are redeemed on order creation (``redeem_points``, see the order schema).
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from core.api import EVERYONE, operation
from core.api.pagination import decode_cursor, page_body
from core.api.resources.common import ID, V1
from core.api.schemas import Body, Id, Out, PageQuery, Query, Text, page_of
from core.errors import NotFound
from core.models import Customer, Product

from . import rewards, services
from .models import ENTRY_KINDS
from .settings import settings_of

__all__ = ["routes"]

TAGS = ("loyalty",)
EntryKind = Literal[ENTRY_KINDS]  # type: ignore[valid-type]


# --------------------------------------------------------------------- schemas

class LoyaltyExpiringLot(Out):
    points: int
    expires_at: AwareDatetime


class LoyaltyExpiring(Out):
    within_days: int = Field(description="the window asked for")
    points: int = Field(description="available points whose lot expires within the window")
    lots: list[LoyaltyExpiringLot]


class LoyaltyNextTier(Out):
    name: str
    min_spend_fen: int


class LoyaltyMemberOut(Out):
    customer_id: int
    tier: str
    tier_multiplier: str = Field(description='a decimal such as "1.2"')
    tier_since: AwareDatetime
    rolling_spend_fen: int = Field(description="eligible spend of the last 365 days, net of refunds, at the last "
                                               "tier evaluation")
    next_tier: LoyaltyNextTier | None
    available: int = Field(description="points usable now (below zero only after a refund under the 'allow' "
                                       "policy)")
    pending: int = Field(description="earned; usable once the order completes or its return window closes")
    held: int = Field(description="reserved by orders placed and not yet paid")
    expiring: LoyaltyExpiring
    joined_at: AwareDatetime
    joined_via: str


class LoyaltyMemberQuery(Query):
    within_days: int | None = Field(None, ge=0, le=3650,
                                    description="the window of `expiring`, in days (default: configuration)")


class LoyaltyEntryOut(Out):
    id: int
    kind: EntryKind
    available_delta: int
    pending_delta: int
    held_delta: int
    eligible_fen_delta: int = Field(description="change of the spend counted for tiers")
    written_off: int = Field(description="clawback not collected: the points were already spent")
    order_id: int | None
    detail: str
    created_at: AwareDatetime


LoyaltyLedgerPage = page_of(LoyaltyEntryOut, "LoyaltyLedgerPage")


class LoyaltyLedgerQuery(PageQuery):
    kind: EntryKind | None = None


class LoyaltyAdjustmentBody(Body):
    points: Annotated[int, Field(ge=-10**9, le=10**9, description="positive credits, negative debits")]
    reason: Text(500, 1) = Field(description="why; kept in the audit log")


class LoyaltyAdjustmentOut(Out):
    entry: LoyaltyEntryOut
    member: LoyaltyMemberOut


class LoyaltyRewardCreate(Body):
    product_id: Id = Field(description="never an Rx or OTC-A product")
    points_cost: Annotated[int, Field(ge=1, le=10_000_000)]
    label: Text(200) | None = None
    active: bool = True


class LoyaltyRewardUpdate(Body):
    points_cost: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    label: Text(200) | None = None
    active: bool | None = None


class LoyaltyRewardOut(Out):
    id: int
    product_id: int
    points_cost: int
    label: str
    active: bool
    available: bool = Field(description="active, and its product may still be a reward")
    unavailable_reason: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


LoyaltyRewardPage = page_of(LoyaltyRewardOut, "LoyaltyRewardPage")


class LoyaltyRewardQuery(PageQuery):
    active: bool | None = Field(None, description="staff only: filter by the active flag")


class LoyaltyStaffLinkBody(Body):
    user_id: Id
    customer_id: Id


class LoyaltyStaffLinkOut(Out):
    user_id: int
    customer_id: int
    created_by: str
    created_at: AwareDatetime


LoyaltyStaffLinkPage = page_of(LoyaltyStaffLinkOut, "LoyaltyStaffLinkPage")


# ------------------------------------------------------------------- helpers

def _settings(req):
    return settings_of(req.context.ctx.config)


def _visible_member(req, customer_id: int) -> None:
    """A customer sees only their own membership (another's is a 404, as for customers)."""
    caller = req.context.caller
    if caller.role == "customer" and caller.customer_id != customer_id:
        raise NotFound(f"customer {customer_id} is not a loyalty member")


def _member(req, customer_id: int, within_days: int | None = None) -> dict:
    return services.summary(req.context.session, _settings(req), customer_id, within_days=within_days)


def _entry(entry) -> dict:
    return {k: v for k, v in services.serialize_entry(entry).items() if k != "actor"}


def _reward(session, reward) -> dict:
    return rewards.serialize_reward(reward, session.get(Product, reward.product_id))


def _link(link) -> dict:
    return {"user_id": link.user_id, "customer_id": link.customer_id, "created_by": link.created_by,
            "created_at": link.created_at.isoformat()}


# ----------------------------------------------------------------- resources

class Member:
    @operation("loyalty.members.get", roles=EVERYONE, query=LoyaltyMemberQuery, response=LoyaltyMemberOut,
               tags=TAGS, summary="A member's points: available, pending, held, tier, expiring soon",
               description="A customer may read their own membership only.", errors=(404,))
    def on_get(self, req, resp, customer_id):
        _visible_member(req, customer_id)
        resp.media = _member(req, customer_id, req.context.query.within_days)

    @operation("loyalty.members.join", roles=EVERYONE, response=LoyaltyMemberOut, status=201, tags=TAGS,
               summary="Join the loyalty programme",
               description="The customer themself or staff. Joining again answers 200 with the membership "
                           "(customers also join automatically with their first paid order unless configured "
                           "otherwise).", errors=(404,), idempotency="none",
               extra={"x-also-status": [200]})
    def on_post(self, req, resp, customer_id):
        caller = req.context.caller
        if caller.role == "customer" and caller.customer_id != customer_id:
            raise NotFound(f"customer {customer_id} does not exist")
        if req.context.session.get(Customer, customer_id) is None:
            raise NotFound(f"customer {customer_id} does not exist")
        _member_row, created = services.join(req.context.session, _settings(req), customer_id, caller)
        resp.status = 201 if created else 200
        resp.location = f"{V1}/members/{customer_id}"
        resp.media = _member(req, customer_id)


class Ledger:
    @operation("loyalty.ledger.list", roles=EVERYONE, query=LoyaltyLedgerQuery, response=LoyaltyLedgerPage,
               tags=TAGS, summary="A member's points ledger, newest first",
               description="Every change of the member's points, append-only. A customer may read their own "
                           "only.", errors=(404,))
    def on_get(self, req, resp, customer_id):
        _visible_member(req, customer_id)
        q = req.context.query
        page = services.list_ledger(req.context.session, customer_id, kind=q.kind, before=decode_cursor(q.cursor),
                                    limit=q.limit)
        resp.media = page_body([_entry(e) for e in page.items], page.next_after)


class Adjustments:
    @operation("loyalty.adjustments.create", roles=("admin",), body=LoyaltyAdjustmentBody,
               response=LoyaltyAdjustmentOut, status=201, tags=TAGS, summary="Correct a member's points (audited)",
               description="Credits add a lot that expires like earned points; debits take the soonest-expiring "
                           "points and never overdraw. Refused (403) on the admin's own customer account "
                           "(see staff links). Send an `Idempotency-Key` to make a retry safe.",
               errors=(403, 404, 409))
    def on_post(self, req, resp, customer_id):
        body = req.context.body
        entry, _created = services.adjust(req.context.session, _settings(req), customer_id,
                                          {"points": body.points, "reason": body.reason}, req.context.caller)
        resp.status = 201
        resp.media = {"entry": _entry(entry), "member": _member(req, customer_id)}


class Rewards:
    @operation("loyalty.rewards.list", roles=EVERYONE, query=LoyaltyRewardQuery, response=LoyaltyRewardPage,
               tags=TAGS, summary="Rewards customers may take for points",
               description="Customers see the available ones only.")
    def on_get(self, req, resp):
        q, session = req.context.query, req.context.session
        customer = req.context.caller.role == "customer"
        page = rewards.list_rewards(session, active=True if customer else q.active, after=decode_cursor(q.cursor),
                                    limit=q.limit)
        items = [_reward(session, r) for r in page.items]
        if customer:
            items = [r for r in items if r["available"]]
        resp.media = page_body(items, page.next_after)

    @operation("loyalty.rewards.create", roles=("admin",), body=LoyaltyRewardCreate, response=LoyaltyRewardOut,
               status=201, tags=TAGS, summary="Configure a reward (never an Rx or OTC-A product)",
               errors=(409,))
    def on_post(self, req, resp):
        session = req.context.session
        reward = rewards.create_reward(session, req.context.body.model_dump(exclude_none=True), req.context.caller)
        resp.status = 201
        resp.location = f"{V1}/loyalty/rewards/{reward.id}"
        resp.media = _reward(session, reward)


class RewardItem:
    @operation("loyalty.rewards.get", roles=EVERYONE, response=LoyaltyRewardOut, tags=TAGS, summary="Get a reward",
               errors=(404,))
    def on_get(self, req, resp, reward_id):
        session = req.context.session
        view = _reward(session, rewards.get_reward(session, reward_id))
        if req.context.caller.role == "customer" and not view["available"]:
            raise NotFound(f"reward {reward_id} does not exist")
        resp.media = view

    @operation("loyalty.rewards.update", roles=("admin",), body=LoyaltyRewardUpdate, response=LoyaltyRewardOut,
               tags=TAGS, summary="Change a reward's cost, label or active flag",
               description="Re-activating re-checks the product: an Rx or OTC-A product is refused.", errors=(404,))
    def on_patch(self, req, resp, reward_id):
        session = req.context.session
        reward = rewards.update_reward(session, reward_id, req.context.body.model_dump(exclude_none=True),
                                       req.context.caller)
        resp.media = _reward(session, reward)


class StaffLinks:
    @operation("loyalty.staff_links.list", roles=("admin",), query=PageQuery, response=LoyaltyStaffLinkPage,
               tags=TAGS, summary="Staff users who are also customers")
    def on_get(self, req, resp):
        q = req.context.query
        page = services.list_staff_links(req.context.session, after=decode_cursor(q.cursor), limit=q.limit)
        resp.media = page_body([_link(link) for link in page.items], page.next_after)

    @operation("loyalty.staff_links.create", roles=("admin",), body=LoyaltyStaffLinkBody,
               response=LoyaltyStaffLinkOut, status=201, tags=TAGS, summary="Record that a staff user is a customer",
               description="Staff may not adjust the points of the customer account they are linked to. "
                           "Audited.", errors=(409,), idempotency="none")
    def on_post(self, req, resp):
        body = req.context.body
        link = services.link_staff(req.context.session, body.user_id, body.customer_id, req.context.caller)
        resp.status = 201
        resp.media = _link(link)


class StaffLinkItem:
    @operation("loyalty.staff_links.delete", roles=("admin",), status=204, tags=TAGS,
               summary="Remove a staff link (not one's own; audited)", errors=(403, 404), idempotency="none")
    def on_delete(self, req, resp, user_id):
        services.unlink_staff(req.context.session, user_id, req.context.caller)
        resp.status = 204


def routes() -> list[tuple[str, object]]:
    member = f"{V1}/members/{{customer_id:{ID}}}"
    return [
        (member, Member()),
        (f"{member}/ledger", Ledger()),
        (f"{member}/adjustments", Adjustments()),
        (f"{V1}/loyalty/rewards", Rewards()),
        (f"{V1}/loyalty/rewards/{{reward_id:{ID}}}", RewardItem()),
        (f"{V1}/loyalty/staff-links", StaffLinks()),
        (f"{V1}/loyalty/staff-links/{{user_id:{ID}}}", StaffLinkItem()),
    ]
