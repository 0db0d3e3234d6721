"""Staff adjustments (admin only, audited, never on one's own account) and rewards (never Rx / OTC-A)."""
import pytest
from sqlalchemy import select

from core import catalog, people
from core.auth import Caller
from core.errors import Conflict, Forbidden, IdempotencyConflict, ValidationFailed
from core.models import AuditEntry, Product
from plugins.loyalty import rewards, services
from plugins.loyalty.settings import settings_of
from tests.core.factories import ADMIN, product

from .helpers import CLERK, balances, entries, loyalty_ctx, seed


def make_admin(ctx, name):
    with ctx.transaction() as s:
        u = people.create_user(s, {"username": name, "password": "a-long-password-1", "role": "admin"}, ADMIN)
        return Caller(role="admin", user_id=u.id, name=name)


def adjust(ctx, caller, cid, points, reason="goodwill", key=None):
    with ctx.transaction() as s:
        return services.adjust(s, settings_of(ctx.config), cid, {"points": points, "reason": reason}, caller,
                               key=key)[0].id


def audit_rows(ctx, action):
    with ctx.session() as s:
        return [(a.actor, a.entity_id, a.detail, a.after) for a in
                s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))]


def test_adjustments_are_admin_only_need_a_reason_and_are_audited(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    _sid, _pid, cid = seed(ctx)
    boss = make_admin(ctx, "boss")
    for caller in (CLERK, Caller(role="store_manager", user_id=9, name="m"), Caller(role="customer", customer_id=cid)):
        with pytest.raises(Forbidden):
            adjust(ctx, caller, cid, 100)
    with pytest.raises(ValidationFailed) as err:
        adjust(ctx, boss, cid, 100, reason="  ")
    assert err.value.fields == [{"field": "reason", "message": "is required"}]
    with pytest.raises(ValidationFailed) as err:
        adjust(ctx, boss, cid, 0)
    assert err.value.fields[0]["field"] == "points"
    assert balances(ctx, cid) is None and audit_rows(ctx, "loyalty.adjust") == []
    adjust(ctx, boss, cid, 100, reason="compensation for a late delivery")
    adjust(ctx, boss, cid, -30, reason="double credit corrected")
    with pytest.raises(ValidationFailed) as err:  # a debit never overdraws
        adjust(ctx, boss, cid, -71)
    assert balances(ctx, cid) == (70, 0, 0)
    rows = audit_rows(ctx, "loyalty.adjust")
    assert [(actor, eid, detail, after["points"]) for actor, eid, detail, after in rows] == [
        ("user:boss", str(cid), "compensation for a late delivery", 100),
        ("user:boss", str(cid), "double credit corrected", -30)]


def test_an_admin_cannot_credit_their_own_customer_account(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    _sid, _pid, cid = seed(ctx)
    alice, bob = make_admin(ctx, "alice"), make_admin(ctx, "bob")
    with ctx.transaction() as s:
        services.link_staff(s, alice.user_id, cid, bob)
    with pytest.raises(Forbidden) as err:
        adjust(ctx, alice, cid, 500)
    assert "own loyalty account" in err.value.detail
    with pytest.raises(Forbidden):  # nor remove the link that stops her
        with ctx.transaction() as s:
            services.unlink_staff(s, alice.user_id, alice)
    adjust(ctx, bob, cid, 500)  # another admin may
    assert balances(ctx, cid) == (500, 0, 0)
    assert [a[0] for a in audit_rows(ctx, "loyalty.staff_link")] == ["user:bob"]
    with ctx.transaction() as s:
        other = people.create_customer(s, {"name": "李四"}, ADMIN).id
    with pytest.raises(Conflict):  # one customer account per staff member
        with ctx.transaction() as s:
            services.link_staff(s, alice.user_id, other, bob)
    with ctx.transaction() as s:
        services.unlink_staff(s, alice.user_id, bob)
    adjust(ctx, alice, cid, 1)
    assert [a[0] for a in audit_rows(ctx, "loyalty.staff_unlink")] == ["user:bob"]


def test_an_adjustment_retried_with_its_key_applies_once(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    _sid, _pid, cid = seed(ctx)
    boss = make_admin(ctx, "boss")
    first = adjust(ctx, boss, cid, 100, key="k1")
    assert adjust(ctx, boss, cid, 100, key="k1") == first
    with pytest.raises(IdempotencyConflict):
        adjust(ctx, boss, cid, 999, key="k1")
    assert balances(ctx, cid) == (100, 0, 0) and len(entries(ctx, cid)) == 1


def new_reward(ctx, pid, caller=None, cost=500):
    with ctx.transaction() as s:
        return rewards.create_reward(s, {"product_id": pid, "points_cost": cost}, caller or ADMIN).id


@pytest.mark.parametrize("rx_class", ["rx", "otc_a"])
def test_rx_and_otc_a_products_can_never_be_rewards(make_ctx, rx_class):
    ctx = loyalty_ctx(make_ctx)
    with ctx.transaction() as s:
        pid = product(s, rx_class=rx_class).id
    with pytest.raises(ValidationFailed) as err:
        new_reward(ctx, pid)
    assert err.value.fields[0]["field"] == "product_id" and "can never be rewards" in err.value.detail
    with ctx.session() as s:
        assert rewards.list_rewards(s).items == []


def test_a_reward_whose_product_became_otc_a_is_not_offered(make_ctx):
    ctx = loyalty_ctx(make_ctx)
    with ctx.transaction() as s:
        pid = product(s, rx_class="otc_b").id
    with pytest.raises(Forbidden):
        new_reward(ctx, pid, caller=CLERK)
    rid = new_reward(ctx, pid)
    with pytest.raises(Conflict):
        new_reward(ctx, pid)
    with ctx.transaction() as s:
        catalog.update_product(s, pid, {"rx_class": "otc_a"}, ADMIN)
        rewards.update_reward(s, rid, {"active": False}, ADMIN)
    with ctx.session() as s:
        reward = rewards.get_reward(s, rid)
        view = rewards.serialize_reward(reward, s.get(Product, pid))
        assert view["available"] is False and "OTC-A" in view["unavailable_reason"]
    with pytest.raises(ValidationFailed) as err:
        with ctx.transaction() as s:
            rewards.update_reward(s, rid, {"active": True}, ADMIN)
    assert err.value.fields[0]["field"] == "active"
    assert [a[0] for a in audit_rows(ctx, "loyalty.reward_create")] == ["user:admin"]
