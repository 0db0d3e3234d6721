"""In headless Chromium: the chain admin's stores, users (pharmacist licence), plugins and audit log."""
from __future__ import annotations

from core import migrations


def test_stores_create_and_edit(live, console):
    api, _server = live
    c = console.login("admin")
    c.go("stores")
    page = c.page
    page.click("button:has-text('New store')")
    dialog = page.locator("dialog[open]")
    dialog.locator("input[name=code]").fill("HOME")
    dialog.locator("input[name=name]").fill("仁和大药房（静安店）")
    dialog.locator("button[type=submit]").click()
    dialog.locator(".form-error, [data-field=code] .error").filter(has_text="HOME").first.wait_for()
    dialog.locator("input[name=code]").fill("SH-03")
    dialog.locator("input[name=address]").fill("上海市静安区南京西路1266号")
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="detached")
    page.locator("tbody tr").filter(has_text="SH-03").click()
    dialog = page.locator("dialog[open]")
    assert dialog.locator("input[name=code]").is_disabled()
    dialog.locator("input[name=name]").fill("")
    dialog.locator("button[type=submit]").click()
    dialog.locator("[data-field=name] .error").wait_for()
    dialog.locator("input[name=name]").fill("仁和大药房（静安寺店）")
    dialog.locator("input[name=active]").uncheck()
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="detached")
    stores = {s["code"]: s for s in api.get("/api/v1/stores").json["items"]}
    assert stores["SH-03"]["name"] == "仁和大药房（静安寺店）" and stores["SH-03"]["active"] is False
    page.locator("tbody tr").filter(has_text="SH-03").filter(has_text="closed").wait_for()
    c.shot("stores-edited")
    c.assert_clean()


def test_users_with_roles_stores_and_a_pharmacists_licence(live, console):
    api, _server = live
    c = console.login("admin")
    c.go("users")
    page = c.page
    page.click("button:has-text('New user')")
    dialog = page.locator("dialog[open]")
    assert dialog.locator("[data-field=licence_number]").is_hidden()  # only for pharmacists
    dialog.locator("select[name=role]").select_option("pharmacist")
    assert dialog.locator("[data-field=licence_number]").is_visible()
    dialog.locator("input[name=username]").fill("wang.yaoshi")
    dialog.locator("input[name=display_name]").fill("王药师")
    dialog.locator("select[name=store_id]").select_option(str(api.store_id))
    dialog.locator("input[name=licence_number]").fill("ZY-31-2024-0518")
    dialog.locator("input[name=licence_expiry]").fill("2029-06-30")
    dialog.locator("input[name=password]").fill("short")
    dialog.locator("button[type=submit]").click()
    dialog.locator("[data-field=password] .error").filter(has_text="8").wait_for()
    c.shot("user-create-errors")
    dialog.locator("input[name=password]").fill("a-long-enough-password")
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="detached")
    row = page.locator("tbody tr").filter(has_text="wang.yaoshi")
    row.filter(has_text="valid to 2029-06-30").wait_for()
    [user] = [u for u in api.get("/api/v1/users").json["items"] if u["username"] == "wang.yaoshi"]
    assert (user["role"], user["store_id"], user["licence_number"], user["licence_expiry"]) == (
        "pharmacist", api.store_id, "ZY-31-2024-0518", "2029-06-30")
    assert api.client.simulate_post("/api/v1/auth/token", json={
        "username": "wang.yaoshi", "password": "a-long-enough-password"}).status_code == 200

    page.locator("select[name=role]").first.select_option("pharmacist")  # the list's filter
    page.locator("tbody tr").filter(has_text="clerk").first.wait_for(state="detached")
    assert page.locator("tbody tr").filter(has_text="no licence recorded").count() == 1  # the seeded pharmacist
    page.locator("tbody tr").filter(has_text="wang.yaoshi").click()
    dialog = page.locator("dialog[open]")
    dialog.locator("input[name=active]").uncheck()
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="detached")
    row.filter(has_text="inactive").wait_for()
    c.assert_clean()


def test_plugins_enable_and_disable_after_confirmation(live, console):
    api, _server = live
    c = console.login("admin")
    c.go("plugins")
    page = c.page
    row = page.locator("tbody tr").filter(has_text="loyalty")
    assert row.locator("[data-action]").inner_text() == "Enable"
    fixture = page.locator("tbody tr").filter(has_text="console_fixture")
    assert "register_console_pages" in fixture.inner_text() and "0.3.1" in fixture.inner_text()
    assert "running" in fixture.inner_text() and "licensed" in fixture.inner_text()

    row.locator("[data-action]").click()
    page.locator("dialog[open]").filter(has_text="Enable loyalty?").wait_for()
    page.click("dialog[open] button:has-text('Cancel')")
    assert api.get("/api/v1/plugins/configuration").json["configured"] == ["console_fixture"]  # nothing changed

    row.locator("[data-action]").click()
    page.click("dialog[open] [data-confirm]")
    page.locator("[data-restart]").wait_for()
    assert "enabled on restart" in row.inner_text() and row.locator("[data-action]").inner_text() == "Disable"
    assert "loyalty" in migrations.current_branches(api.ctx)
    c.shot("plugins-restart-required")

    fixture.locator("[data-action]").click()
    page.locator("dialog[open]").filter(has_text="data are kept").wait_for()
    page.click("dialog[open] [data-confirm]")
    fixture.filter(has_text="disabled on restart").wait_for()
    conf = api.get("/api/v1/plugins/configuration").json
    assert conf["configured"] == ["loyalty"] and conf["running"] == ["console_fixture"]
    actions = [(e["action"], e["entity_id"]) for e in api.get("/api/v1/audit", params={"entity": "plugin"}).json["items"]]
    assert actions == [("plugin.disable", "console_fixture"), ("plugin.enable", "loyalty")]
    c.assert_clean()


def test_audit_log_with_filters(live, console):
    api, _server = live
    api.post("/api/v1/stores", json={"code": "A1", "name": "门店A"})
    api.post("/api/v1/products", role="store_manager", json={
        "sku": "AUD-1", "generic_name": "维生素B1片", "approval_number": "国药准字H11021234", "rx_class": "otc_b",
        "price_fen": 300})
    c = console.login("admin")
    c.go("audit")
    page = c.page
    page.locator("tbody tr").filter(has_text="product.create").wait_for()
    page.locator("tbody tr").filter(has_text="store.create").wait_for()
    page.fill("input[name=actor]", "user:store_manager")
    page.click("form.toolbar button[type=submit]")
    page.locator("tbody tr").filter(has_text="store.create").wait_for(state="detached")
    rows = page.locator("tbody tr")
    assert rows.count() == 1 and "AUD-1" in rows.first.inner_text()
    c.shot("audit-filtered")
    page.fill("input[name=since]", "2000-01-01T00:00")
    page.fill("input[name=until]", "2000-01-02T00:00")
    page.click("form.toolbar button[type=submit]")
    page.locator("td.empty").filter(has_text="No entries match").wait_for()
    page.click("form.toolbar button[type=reset]")
    page.locator("tbody tr").filter(has_text="store.create").wait_for()
    c.assert_clean()
