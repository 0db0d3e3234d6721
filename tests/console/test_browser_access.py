"""In headless Chromium: signing in and out, the token's handling, and every page for every role that may
open it (screenshots), while the roles that may not neither see it nor get its data from the API."""
from __future__ import annotations

import pytest

from core.console import collect_pages

from .seed import seed_world

ROLES = ("admin", "store_manager", "pharmacist", "clerk")
PAGES = {  # page -> roles whose navigation shows it (the fixture plugin adds rx-review)
    "dashboard": {"admin", "store_manager"},
    "orders": set(ROLES), "stock": set(ROLES),
    "rx-review": {"admin", "pharmacist"},
    "catalogue": {"admin", "store_manager"},
    "stores": {"admin"}, "users": {"admin"}, "plugins": {"admin"}, "audit": {"admin"},
}
#: an API call each page depends on, refused (403) for the roles that may not open the page
PAGE_API = {
    "dashboard": ("GET", "/api/v1/reports/sales", None),
    "catalogue": ("POST", "/api/v1/products", {"sku": "X"}),
    "stores": ("POST", "/api/v1/stores", {"code": "X", "name": "X"}),
    "users": ("GET", "/api/v1/users", None),
    "plugins": ("POST", "/api/v1/plugins/enable", {"names": ["loyalty"]}),
    "audit": ("GET", "/api/v1/audit", None),
}
VISITS = [(page, role) for page, roles in PAGES.items() for role in ROLES if role in roles]


def test_policy_table_matches_the_declared_pages(api):
    assert {p["id"]: set(p["roles"]) for p in collect_pages(api.ctx.registry)} == PAGES


def test_sign_in_refuses_a_wrong_password_and_sign_out_revokes_the_token(live, console):
    api, _server = live
    c = console.open()
    page = c.page
    page.fill("input[name=username]", "clerk")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    page.wait_for_selector(".form-error:has-text('Wrong username or password')")
    assert page.evaluate("sessionStorage.getItem('pharmo2o.token')") is None
    c.shot("login-refused")

    c.login("clerk")
    token = page.evaluate("sessionStorage.getItem('pharmo2o.token')")
    assert token and page.evaluate("localStorage.length") == 0
    assert api.client.simulate_get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert page.inner_text("[data-role]") == "Clerk"
    c.shot("signed-in-clerk")
    assert all(token not in url for url in c.api_requests)  # never in an address
    assert token not in page.content()

    page.click("#logout")
    page.wait_for_selector(".form-error:has-text('signed out')")
    assert page.evaluate("sessionStorage.getItem('pharmo2o.token')") is None
    assert api.client.simulate_get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    page.reload()
    page.wait_for_selector("input[name=username]")  # signed out stays signed out
    c.assert_clean()


def test_a_revoked_session_returns_to_the_sign_in(live, console):
    api, _server = live
    c = console.login("store_manager")
    c.go("stock")
    token = c.page.evaluate("sessionStorage.getItem('pharmo2o.token')")
    api.client.simulate_post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    c.page.click("nav.sidenav a[data-page=orders]")
    c.page.wait_for_selector(".form-error:has-text('session has ended')")
    assert c.page.evaluate("sessionStorage.getItem('pharmo2o.token')") is None


@pytest.mark.parametrize("role", ROLES)
def test_navigation_shows_only_the_pages_of_the_role(live, console, role):
    api, _server = live
    c = console.login(role)
    expected = [p["id"] for p in collect_pages(api.ctx.registry) if role in p["roles"]]
    assert c.nav_ids() == expected
    assert c.page.url.endswith(f"/console/{expected[0]}")  # /console/ opens the first page of the role
    c.wait_ready(expected[0])
    for page_id in sorted(set(PAGES) - set(expected)):
        c.page.goto(f"{c.server.url}/console/{page_id}")  # typed into the address bar
        c.page.wait_for_selector(f"[data-refused='{page_id}']")
        if page_id in PAGE_API:  # and the API refuses what the page does, with this user's own token
            method, url, body = PAGE_API[page_id]
            status = c.page.evaluate(
                """async ([method, url, body]) => (await fetch(url, {method, body: body && JSON.stringify(body),
                       headers: {'Content-Type': 'application/json',
                                 Authorization: 'Bearer ' + sessionStorage.getItem('pharmo2o.token')}})).status""",
                [method, url, body])
            assert status == 403, (role, page_id, method, url)
    c.shot(f"refused-{role}")
    c.assert_clean()


@pytest.mark.parametrize("role", ROLES)
def test_every_page_renders_for_each_role_that_may_open_it(live, console, role):
    api, _server = live
    seed_world(api)
    c = console.login(role)
    for page_id in [p for p, r in VISITS if r == role]:
        c.go(page_id)
        main = c.page.locator("main")
        assert main.locator("h1").first.is_visible()
        assert c.page.locator(f"nav.sidenav a[data-page={page_id}][aria-current=page]").count() == 1
        assert main.locator(".banner.error").count() == 0
        c.shot(f"{page_id}-{role}")
    c.assert_clean()


@pytest.mark.parametrize("role", ["store_manager", "clerk", "admin"])
def test_tablet_width_pages_fit_without_sideways_scrolling(live, tablet, role):
    api, _server = live
    seed_world(api)
    c = tablet.login(role)
    assert c.page.locator("nav.sidenav .section").first.is_hidden()  # the navigation is a top bar here
    for page_id in c.nav_ids():
        c.go(page_id)
        overflow = c.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{page_id} is {overflow}px wider than the tablet"
        c.shot(f"{page_id}-{role}")
    c.assert_clean()
