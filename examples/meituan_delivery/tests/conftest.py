"""The plugin's test set-up: pharmo2o's test kit (the ``pharmo2o`` pytest plugin) does the work;
this file only says which plugin to enable and its configuration."""
from __future__ import annotations

import pytest

from meituan_calls import SECRET, SHOP, MeituanClient


@pytest.fixture
def pharmo2o_enabled():
    return ["meituan_delivery"]


@pytest.fixture
def pharmo2o_settings(fake_http):
    return {"meituan.secret": SECRET, "meituan.api_base": f"{fake_http.url}/api/v1", "meituan.timeout_seconds": 0.5,
            "meituan.shops": {SHOP: "HOME"}}  # HOME is the test kit's store


@pytest.fixture
def meituan(shop) -> MeituanClient:
    """Signed calls to the webhooks, as Meituan makes them."""
    return MeituanClient(shop)
