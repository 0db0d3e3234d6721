"""Fixtures for the console tests: the API client per role, a real HTTP server on 127.0.0.1 serving
the app on the test's database, and one headless Chromium (Debian's, driven by Playwright) per session.

Screenshots go to ``tests/console/screenshots/`` (or ``$PHARMO2O_SCREENSHOTS``), one per page and role.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from core.testing import TEST_PASSWORD, LiveServer

SCREENSHOTS = Path(os.environ.get("PHARMO2O_SCREENSHOTS", Path(__file__).parent / "screenshots"))
LAPTOP = {"width": 1366, "height": 900}
TABLET = {"width": 820, "height": 1180}
TIMEOUT_MS = 15_000


@pytest.fixture
def live(api):
    """``(api, server)``: the API test client (tokens per role, a store, a customer) and a live server on the
    same app and database."""
    server = LiveServer(api.app)
    yield api, server
    server.stop()


@pytest.fixture(scope="session")
def screenshot_dir():
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    yield SCREENSHOTS
    print(f"\nconsole screenshots: {SCREENSHOTS} ({len(list(SCREENSHOTS.glob('*.png')))} files)")


class Console:
    """One browser page on the live server, with the steps the tests share."""

    def __init__(self, page, server: LiveServer, shots: Path, name: str, width: str):
        self.page = page
        self.server = server
        self.shots = shots
        self.name = name
        self.width = width
        self.errors: list[str] = []
        self.api_requests: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("console", lambda msg: self.errors.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" and "Failed to load resource" not in msg.text else None)
        page.on("request", lambda req: self.api_requests.append(req.url))

    def open(self, path: str = "/console/"):
        self.page.goto(self.server.url + path)
        return self

    def login(self, role: str, password: str = TEST_PASSWORD, *, path: str = "/console/"):
        """Sign in through the form as the test user named after ``role``; waits for the navigation."""
        self.open(path)
        self.page.fill("input[name=username]", role)
        self.page.fill("input[name=password]", password)
        self.page.click("button[type=submit]")
        self.page.wait_for_selector("nav.sidenav")
        return self

    def nav_ids(self) -> list[str]:
        return self.page.eval_on_selector_all("nav.sidenav a[data-page]", "els => els.map(e => e.dataset.page)")

    def go(self, page_id: str) -> None:
        """Open a page through the navigation and wait until it has rendered."""
        self.page.click(f"nav.sidenav a[data-page={page_id}]")
        self.wait_ready(page_id)

    def wait_ready(self, page_id: str) -> None:
        self.page.wait_for_selector(f".page[data-page={page_id}][data-ready=true]")

    def shot(self, label: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.width}-{label}").strip("-")
        path = self.shots / f"{safe}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        """No script error and no console error was reported by the page."""
        assert self.errors == [], self.errors


def _console(browser, live, screenshot_dir, request, viewport, width_name):
    _api, server = live
    context = browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    console = Console(page, server, screenshot_dir, request.node.name, width_name)
    yield console
    context.close()


@pytest.fixture
def console(browser, live, screenshot_dir, request):
    """A fresh browser context (laptop width, 1366x900) on the live server."""
    yield from _console(browser, live, screenshot_dir, request, LAPTOP, "laptop")


@pytest.fixture
def tablet(browser, live, screenshot_dir, request):
    """A fresh browser context at a store tablet's width (820x1180)."""
    yield from _console(browser, live, screenshot_dir, request, TABLET, "tablet")


@pytest.fixture
def api(make_api):
    """The console tests' API client: the core plus the fixture plugin (Rx orders held for review,
    one console page)."""
    from . import fixture_plugin
    return make_api(extra_plugins=[fixture_plugin])
