"""In headless Chromium: the store's live order queue, waiting times, and every hand-over step."""
from __future__ import annotations

from .seed import seed_world

POLL_WAIT_MS = 12_000  # the queue polls every 5 s


def card(c, order_id):
    return c.page.locator(f"article.card[data-order='{order_id}']")


def lane_count(c, status) -> int:
    return int(c.page.inner_text(f"[data-lane={status}] h2 .count"))


def status_of(api, order_id) -> str:
    return api.get(f"/api/v1/orders/{order_id}").json["status"]


def test_queue_shows_each_state_with_waiting_times_and_updates_live(live, console):
    api, _server = live
    world = seed_world(api, history=False)
    o = world.orders
    c = console.login("clerk")
    c.go("orders")
    assert {s: lane_count(c, s) for s in ("awaiting_payment", "awaiting_review", "paid", "ready", "dispatched")} == {
        "awaiting_payment": 1, "awaiting_review": 1, "paid": 2, "ready": 1, "dispatched": 1}
    review = card(c, o["review"]["id"])
    assert "waiting 2 h 10 min" in review.inner_text() and "late" in review.get_attribute("class")
    assert "prescription needs pharmacist review" in review.inner_text()
    assert "waiting 42 min" in card(c, o["prepare"]["id"]).inner_text()
    assert "slow" in card(c, o["deliver"]["id"]).get_attribute("class")  # 18 min
    paid_lane = c.page.locator("[data-lane=paid] article.card")
    assert [paid_lane.nth(i).get_attribute("data-order") for i in range(2)] == \
        [str(o["prepare"]["id"]), str(o["deliver"]["id"])]  # longest waiting first
    assert c.page.locator("article.card button:has-text('Refund')").count() == 0  # clerks do not refund
    c.shot("queue-clerk")

    placed = api.post("/api/v1/orders", role="customer", json={
        "store_id": api.store_id, "channel": "web", "fulfilment": "pickup",
        "lines": [{"product_id": world.vitc["id"], "quantity": 1}]}).json
    card(c, placed["id"]).wait_for(timeout=POLL_WAIT_MS)  # appears without a reload
    assert lane_count(c, "awaiting_payment") == 2
    assert "web" in card(c, placed["id"]).inner_text()
    c.assert_clean()


def test_mark_ready_dispatch_and_hand_over_with_the_pickup_code(live, console):
    api, _server = live
    world = seed_world(api, history=False)
    o = world.orders
    c = console.login("clerk")
    c.go("orders")
    page = c.page

    card(c, o["prepare"]["id"]).get_by_role("button", name="Mark ready").click()
    page.locator(f"[data-lane=ready] article.card[data-order='{o['prepare']['id']}']").wait_for()
    card(c, o["deliver"]["id"]).get_by_role("button", name="Dispatch").click()
    page.locator(f"[data-lane=dispatched] article.card[data-order='{o['deliver']['id']}']").wait_for()
    assert (status_of(api, o["prepare"]["id"]), status_of(api, o["deliver"]["id"])) == ("ready", "dispatched")

    card(c, o["ready"]["id"]).get_by_role("button", name="Hand over").click()
    dialog = page.locator("dialog[open]")
    dialog.locator("button[type=submit]").click()
    assert dialog.locator("[data-field=pickup_code] .error").inner_text() == "enter the customer's pickup code"
    wrong = "999999" if world.pickup_code != "999999" else "111111"
    dialog.locator("input[name=pickup_code]").fill(wrong)
    dialog.locator("button[type=submit]").click()
    error = dialog.locator("[data-field=pickup_code] .error")
    error.filter(has_text="does not match").wait_for()
    assert dialog.locator("input[name=pickup_code]").get_attribute("aria-invalid") == "true"
    c.shot("hand-over-wrong-code")
    assert status_of(api, o["ready"]["id"]) == "ready"  # refused: nothing changed

    dialog.locator("input[name=pickup_code]").fill(world.pickup_code)
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="detached")
    card(c, o["ready"]["id"]).wait_for(state="detached")
    assert status_of(api, o["ready"]["id"]) == "completed"

    card(c, o["dispatched"]["id"]).get_by_role("button", name="Delivered").click()
    page.locator("dialog[open] button[type=submit]").click()
    card(c, o["dispatched"]["id"]).wait_for(state="detached")
    assert status_of(api, o["dispatched"]["id"]) == "completed"
    c.assert_clean()


def test_a_manager_cancels_and_refunds_with_a_reason(live, console):
    api, _server = live
    world = seed_world(api, history=False)
    o = world.orders
    c = console.login("store_manager")
    c.go("orders")
    page = c.page

    card(c, o["new"]["id"]).get_by_role("button", name="Cancel").click()
    dialog = page.locator("dialog[open]")
    dialog.locator("button[type=submit]").click()
    assert dialog.locator("[data-field=reason] .error").inner_text() == "a reason is required"
    dialog.locator("select[name=preset]").select_option("Out of stock")
    assert dialog.locator("input[name=reason]").input_value() == "Out of stock"
    dialog.locator("button[type=submit]").click()
    card(c, o["new"]["id"]).wait_for(state="detached")
    assert status_of(api, o["new"]["id"]) == "cancelled"

    card(c, o["prepare"]["id"]).get_by_role("button", name="Refund").click()
    dialog = page.locator("dialog[open]")
    assert "¥45.00" in dialog.inner_text()
    dialog.locator("select[name=preset]").select_option("other")
    dialog.locator("input[name=reason]").fill("顾客改变主意，商品未出店")
    c.shot("refund-dialog")
    dialog.locator("button[type=submit]").click()
    card(c, o["prepare"]["id"]).wait_for(state="detached")
    assert status_of(api, o["prepare"]["id"]) == "refunded"
    entries = {e["action"]: e for e in api.get("/api/v1/audit", params={"entity": "order"}).json["items"]}
    assert entries["order.refund"]["detail"] == "顾客改变主意，商品未出店"
    assert entries["order.refund"]["actor"] == entries["order.cancel"]["actor"] == "user:store_manager"
    assert entries["order.cancel"]["detail"] == "Out of stock"

    # a completed order is out of the queue: found by its number, and refunded from there
    page.fill("input[name=order]", str(o["ready"]["id"]))
    api.post(f"/api/v1/orders/{o['ready']['id']}/complete", role="clerk", json={"pickup_code": world.pickup_code})
    page.click("form button:has-text('Find')")
    found = page.locator(f".found article.card[data-order='{o['ready']['id']}']")
    found.wait_for()
    assert "completed" in found.inner_text()
    found.get_by_role("button", name="Refund").click()
    page.locator("dialog[open] select[name=preset]").select_option(index=1)
    page.locator("dialog[open] button[type=submit]").click()
    page.locator("dialog[open]").wait_for(state="detached")
    assert status_of(api, o["ready"]["id"]) == "refunded"
    c.assert_clean()


def test_hand_over_at_tablet_width(live, tablet):
    api, _server = live
    world = seed_world(api, history=False)
    c = tablet.login("clerk")
    c.go("orders")
    card(c, world.orders["ready"]["id"]).get_by_role("button", name="Hand over").click()
    dialog = c.page.locator("dialog[open]")
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 820
    dialog.locator("input[name=pickup_code]").fill(world.pickup_code)
    c.shot("hand-over-dialog")
    dialog.locator("button[type=submit]").click()
    card(c, world.orders["ready"]["id"]).wait_for(state="detached")
    assert status_of(api, world.orders["ready"]["id"]) == "completed"
    c.assert_clean()
