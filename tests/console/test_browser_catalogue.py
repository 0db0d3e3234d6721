"""In headless Chromium: catalogue search, create and edit with the API's field errors, CSV import in chunks."""
from __future__ import annotations

import csv
import io

from .seed import seed_world


def product_by_sku(api, sku):
    items = api.get("/api/v1/products", params={"q": sku}).json["items"]
    return next((p for p in items if p["sku"] == sku), None)


def fill(dialog, **values):
    for name, value in values.items():
        dialog.locator(f"[name={name}]").fill(value)


def test_search_create_and_edit_with_field_errors_next_to_the_fields(live, console):
    api, _server = live
    seed_world(api, history=False)
    c = console.login("store_manager")
    c.go("catalogue")
    page = c.page
    page.fill("input[name=q]", "阿莫西林")
    page.click("form.toolbar button[type=submit]")
    page.locator("tbody tr").filter(has_text="YP200101").wait_for(state="detached")
    assert page.locator("tbody tr").count() == 1 and "国药准字H13023961" in page.inner_text("tbody")

    page.click("button:has-text('New product')")
    dialog = page.locator("dialog[open]")
    fill(dialog, sku="YP200101", approval_number="H2000", price_fen="9.9")
    dialog.locator("select[name=rx_class]").select_option("otc_b")
    dialog.locator("button[type=submit]").click()
    errors = dialog.locator("[data-field=generic_name] .error")
    errors.filter(has_text="required").wait_for()  # the API's errors, each under its own field
    fill(dialog, generic_name="氯雷他定片", specification="10mg×6片")
    dialog.locator("button[type=submit]").click()
    dialog.locator("[data-field=approval_number] .error").filter(has_text="国药准字H20000001").wait_for()
    assert dialog.locator("[data-field=approval_number] input").get_attribute("aria-invalid") == "true"
    assert dialog.locator("[data-field=generic_name] .error").inner_text() == ""  # cleared once fixed
    c.shot("product-create-errors")
    fill(dialog, approval_number="国药准字H20070030")
    dialog.locator("button[type=submit]").click()
    dialog.locator("[data-field=sku] .error").filter(has_text="already used").wait_for()  # duplicate SKU
    fill(dialog, sku="YP400101", price_fen="abc")
    dialog.locator("button[type=submit]").click()
    assert dialog.locator("[data-field=price_fen] .error").inner_text() == "enter a price in yuan, e.g. 12.50"
    fill(dialog, price_fen="18.60")
    dialog.locator("input[name=cold_chain]").check()
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="detached")
    created = product_by_sku(api, "YP400101")
    assert (created["generic_name"], created["price_fen"], created["rx_class"], created["cold_chain"]) == (
        "氯雷他定片", 1860, "otc_b", True)

    page.fill("input[name=q]", "YP400101")
    page.click("form.toolbar button[type=submit]")
    page.locator("tbody tr.clickable").filter(has_text="YP400101").click()
    dialog = page.locator("dialog[open]")
    assert dialog.locator("input[name=price_fen]").input_value() == "18.60"
    fill(dialog, price_fen="19.00", brand_name="开瑞坦")
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="detached")
    edited = product_by_sku(api, "YP400101")
    assert (edited["price_fen"], edited["brand_name"]) == (1900, "开瑞坦")
    [entry] = api.get("/api/v1/audit", params={"action": "product.update", "entity_id": str(edited["id"])}).json["items"]
    assert entry["after"] == {"price_fen": 1900, "brand_name": "开瑞坦"}  # only what changed was sent
    c.assert_clean()


def _csv(rows: int, bad: set[int]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["sku", "generic_name", "approval_number", "rx_class", "price_fen", "package_insert"])
    for i in range(1, rows + 1):
        approval = "国药准字Z0" if i in bad else f"国药准字H{30000000 + i}"
        w.writerow([f"IMP-{i:04d}", f"导入药品{i}", approval, "otc_b", 100 + i, "用法：口服，\n一次1片"])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def test_csv_import_in_chunks_with_progress_and_a_per_row_report(live, console):
    api, _server = live
    c = console.login("admin")
    c.go("catalogue")
    page = c.page
    page.set_input_files("input[name=file]", files=[{"name": "products.csv", "mimeType": "text/csv",
                                                     "buffer": _csv(230, bad={7, 150})}])
    page.check("input[name=dry_run]")
    page.click("button:has-text('Import')")
    page.locator("[data-summary]").wait_for()
    assert "Dry run: would create 228" in page.inner_text("[data-summary]")
    assert product_by_sku(api, "IMP-0001") is None

    page.uncheck("input[name=dry_run]")
    page.click("button:has-text('Import')")
    page.locator("[data-summary]").filter(has_text="Created 228").wait_for()
    assert page.inner_text("[data-progress]") == "230 of 230 rows processed"  # sent in 3 chunks
    assert page.eval_on_selector("progress", "p => p.value === p.max")
    rows = page.locator("[data-import-result] tbody tr")
    assert rows.count() == 2
    assert [rows.nth(i).locator("td").nth(0).inner_text() for i in range(2)] == ["8", "151"]  # as in the file
    assert "IMP-0150" in rows.nth(1).inner_text() and "approval_number" in rows.nth(1).inner_text()
    assert page.locator("a:has-text('Download the error report')").get_attribute("download") == \
        "import-errors-products.csv"
    c.shot("csv-import-report")
    assert product_by_sku(api, "IMP-0230")["package_insert"] == "用法：口服，\n一次1片"  # quoted newline kept
    assert product_by_sku(api, "IMP-0007") is None
    c.assert_clean()


def test_a_file_that_is_not_utf8_or_has_a_bad_header_is_refused_on_the_field(live, console):
    c = console.login("store_manager")
    c.go("catalogue")
    page = c.page
    page.set_input_files("input[name=file]", files=[{"name": "gbk.csv", "mimeType": "text/csv",
                                                     "buffer": "sku,generic_name\nA,布洛芬\n".encode("gbk")}])
    page.click("button:has-text('Import')")
    page.locator("[data-field=file] .error").filter(has_text="not UTF-8").wait_for()
    page.set_input_files("input[name=file]", files=[{"name": "bad.csv", "mimeType": "text/csv",
                                                     "buffer": b"sku,colour\nA,red\n"}])
    page.click("button:has-text('Import')")
    page.locator("[data-field=file] .error").filter(has_text="unknown column").wait_for()
    c.assert_clean()
