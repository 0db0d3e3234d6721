"""Browser fixtures for the review page: the console tests' live server, Chromium and page driver
(tests/console/conftest.py), with this plugin's own screenshot folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.testing import LiveServer
from tests.console.conftest import LAPTOP, TIMEOUT_MS, Console

SCREENSHOTS = Path(os.environ.get("PHARMO2O_RX_SCREENSHOTS", Path(__file__).parent / "screenshots"))


@pytest.fixture
def live_server():
    """``start(app)`` serves an app over real HTTP on 127.0.0.1; stopped after the test."""
    servers = []

    def start(app) -> LiveServer:
        servers.append(LiveServer(app))
        return servers[-1]
    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def console_for(browser, request):
    """``console_for(server)``: a fresh laptop-width browser context on ``server``, like the console tests'."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    contexts = []

    def make(server) -> Console:
        context = browser.new_context(viewport=LAPTOP, locale="zh-CN", timezone_id="Asia/Shanghai")
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return Console(context.new_page(), server, SCREENSHOTS, request.node.name, "laptop")
    yield make
    for context in contexts:
        context.close()
