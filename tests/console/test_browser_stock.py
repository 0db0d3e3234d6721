"""In headless Chromium: on-hand per lot with expiry highlighting, receiving, adjusting and movement history."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from .seed import seed_world


def lot_row(c, lot_no):
    return c.page.locator(f"tr[data-lot='{lot_no}']")


def on_hand(api, product_id, lot_no) -> int:
    [row] = api.get(f"/api/v1/stores/{api.store_id}/stock", params={"product_id": product_id}).json["items"]
    return {lot["lot_no"]: lot["on_hand"] for lot in row["lots"]}[lot_no]


def test_lots_are_listed_by_expiry_with_expired_and_near_expiry_highlighted(live, console):
    api, _server = live
    seed_world(api, history=False)
    c = console.login("clerk")
    c.go("stock")
    assert "expired" in lot_row(c, "VC-EXPIRED").get_attribute("class")
    assert lot_row(c, "VC-EXPIRED").locator(".badge.expired").inner_text() == "expired"
    assert "expiring" in lot_row(c, "IBU-NEAR").get_attribute("class")
    # seeded 45 days after the machine's date; the page counts from the date in Shanghai (the browser's zone)
    left = 45 - (dt.datetime.now(ZoneInfo("Asia/Shanghai")).date() - dt.date.today()).days
    assert f"{left} d left" in lot_row(c, "IBU-NEAR").inner_text()
    assert lot_row(c, "IBU-2027A").get_attribute("class") == ""
    lots = c.page.eval_on_selector_all("tr[data-product] td:nth-last-child(7)", "els => els.map(e => e.textContent)")
    assert lots.index("IBU-NEAR") < lots.index("IBU-2027A")  # first expiring first
    assert c.page.locator("button:has-text('Adjust')").count() == 0  # clerks receive, managers adjust
    c.page.check("input[name=only_near]")
    shown = c.page.eval_on_selector_all("tr[data-lot]", "els => els.map(e => e.dataset.lot)")
    assert sorted(shown) == ["IBU-NEAR", "VC-EXPIRED"]
    c.shot("stock-near-expiry-only")
    c.assert_clean()


def test_receive_by_barcode_with_the_apis_errors_next_to_the_fields(live, console):
    api, _server = live
    world = seed_world(api, history=False)
    c = console.login("clerk")
    c.go("stock")
    page = c.page
    page.click("button:has-text('Receive delivery')")
    dialog = page.locator("dialog[open]")
    dialog.locator("button[type=submit]").click()
    assert dialog.locator("[data-field=product_id] .error").inner_text() == "search and choose the product"
    dialog.locator("input[name=product_query]").fill("6901234567892")  # the scanner types the barcode + Enter
    dialog.locator("input[name=product_query]").press("Enter")
    dialog.locator("[data-chosen]").filter(has_text="布洛芬缓释胶囊").wait_for()
    dialog.locator("input[name=lot_no]").fill("IBU-NEW")
    dialog.locator("input[name=expiry]").fill((dt.date.today() - dt.timedelta(days=1)).isoformat())
    dialog.locator("input[name=quantity]").fill("24")
    dialog.locator("button[type=submit]").click()
    error = dialog.locator("[data-field=expiry] .error")
    error.filter(has_text="has passed").wait_for()  # the API refuses expired goods, named on the field
    c.shot("receive-expired-refused")
    dialog.locator("input[name=expiry]").fill((dt.date.today() + dt.timedelta(days=500)).isoformat())
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="detached")
    lot_row(c, "IBU-NEW").wait_for()
    assert on_hand(api, world.otc["id"], "IBU-NEW") == 24
    c.assert_clean()


def test_receive_finds_a_product_by_name(live, console):
    api, _server = live
    world = seed_world(api, history=False)
    c = console.login("pharmacist")
    c.go("stock")
    c.page.click("button:has-text('Receive delivery')")
    dialog = c.page.locator("dialog[open]")
    dialog.locator("input[name=product_query]").fill("YP")
    dialog.locator("button:has-text('Search')").click()
    dialog.locator("[data-results] button:has-text('阿莫西林胶囊')").click()
    for name, value in (("lot_no", "AMX-2030"), ("expiry", "2030-06-30"), ("quantity", "5")):
        dialog.locator(f"input[name={name}]").fill(value)
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="detached")
    assert on_hand(api, world.rx["id"], "AMX-2030") == 5


def test_a_manager_adjusts_a_lot_with_a_reason_and_reads_its_history(live, console):
    api, _server = live
    world = seed_world(api, history=False)
    c = console.login("store_manager")
    c.go("stock")
    page = c.page
    lot_row(c, "IBU-2027A").get_by_role("button", name="Adjust").click()
    dialog = page.locator("dialog[open]")
    dialog.locator("input[name=delta]").fill("-1000")
    dialog.locator("select[name=preset]").select_option("Damaged (破损)")
    dialog.locator("button[type=submit]").click()
    dialog.locator("[data-field=delta] .error").filter(has_text="below zero").wait_for()  # the API's 409, on the field
    dialog.locator("input[name=delta]").fill("-2")
    dialog.locator("input[name=reason]").fill("")
    dialog.locator("button[type=submit]").click()
    dialog.locator("[data-field=reason] .error").filter(has_text="required").wait_for()
    dialog.locator("input[name=reason]").fill("Damaged (破损)")
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="detached")
    lot_row(c, "IBU-2027A").filter(has_text="98").wait_for()
    assert on_hand(api, world.otc["id"], "IBU-2027A") == 98
    [entry] = api.get("/api/v1/audit", params={"action": "stock.adjust"}).json["items"]
    assert entry["actor"] == "user:store_manager" and entry["detail"] == "Damaged (破损)"

    page.locator(f"td.product:has-text('{world.otc['generic_name']}') button:has-text('History')").click()
    history = page.locator("dialog[open] [data-history]")
    history.wait_for()
    rows = history.locator("tbody tr")
    first = rows.nth(0).inner_text()
    assert "adjustment" in first and "-2" in first and "Damaged (破损)" in first and "user:store_manager" in first
    kinds = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]
    assert "receipt" in kinds and "sale" in kinds and "reserved" in kinds
    c.shot("movement-history")
    page.locator("dialog[open] button:has-text('Close')").click()
    c.assert_clean()
