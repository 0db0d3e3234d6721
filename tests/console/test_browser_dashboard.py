"""In headless Chromium: the dashboard's figures and SVG charts agree with the report API."""
from __future__ import annotations

from .seed import seed_world


def money(fen: int) -> str:
    return f"{'-' if fen < 0 else ''}¥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def kpi(c, name) -> str:
    return c.page.inner_text(f"[data-kpi={name}] .value")


def bars(c, chart) -> dict[str, str]:
    """``{row label: total written at the end}`` of a horizontal bar chart."""
    return c.page.eval_on_selector_all(
        f"[data-chart={chart}] svg g[data-row]",
        "gs => Object.fromEntries(gs.map(g => [g.dataset.row, g.querySelector('.value-label').textContent]))")


def test_chain_dashboard_for_the_admin(live, console):
    api, _server = live
    world = seed_world(api)
    sales = api.get("/api/v1/reports/sales").json
    expiry = api.get("/api/v1/reports/near-expiry").json
    c = console.login("admin")
    assert c.page.url.endswith("/console/dashboard")
    c.wait_ready("dashboard")
    assert kpi(c, "today") == money(sales["today_totals"]["total_fen"])
    assert kpi(c, "period") == money(sales["period_totals"]["total_fen"])
    assert kpi(c, "review") == "1" and "oldest waiting 2 h 10 min" in c.page.inner_text("[data-kpi=review]")
    assert kpi(c, "near") == money(expiry["near_fen"]) and kpi(c, "expired") == money(expiry["expired_fen"])

    daily = c.page.locator("[data-chart=daily] svg g[data-category]")
    assert daily.count() == 30
    drawn = c.page.eval_on_selector_all("[data-chart=daily] svg rect", "rs => rs.length")
    assert drawn == len({(r["date"], r["online"]) for r in sales["rows"]})  # one segment per day and kind
    per_store = {s["name"]: sum(r["total_fen"] for r in sales["rows"] if r["store_id"] == s["id"])
                 for s in sales["stores"]}
    assert bars(c, "stores-period") == {name: money(v) for name, v in per_store.items()}
    assert set(bars(c, "channels")) == {"Counter sale by store staff", "Generic online shop"}
    assert bars(c, "review")["1-4 h"] == "1"
    assert c.page.locator("[data-chart=review] tbody tr").filter(has_text=f"#{world.orders['review']['id']}").count() == 1
    assert set(bars(c, "expiry")) == {"Home store", world.store2["name"]}
    c.shot("dashboard-chain")

    c.page.select_option("select[name=store]", str(world.store2["id"]))  # one store
    c.page.locator("[data-chart=stores-period] svg g[data-row]").nth(1).wait_for(state="detached")
    assert set(bars(c, "stores-period")) == {world.store2["name"]}
    c.assert_clean()


def test_a_store_manager_sees_their_store(live, console):
    api, _server = live
    seed_world(api)
    mine = api.get("/api/v1/reports/sales", role="store_manager").json
    c = console.login("store_manager")
    c.wait_ready("dashboard")
    assert c.page.locator("select[name=store]").count() == 0  # no choice: their own store
    assert kpi(c, "period") == money(mine["period_totals"]["total_fen"])
    assert set(bars(c, "stores-today")) == {"Home store"}
    c.shot("dashboard-store-manager")
    c.assert_clean()
