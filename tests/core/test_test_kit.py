"""The test kit plugin authors use (core.testing): backend selection, the fixtures that enable a
plugin, the shop helpers, the job and outbox runners, the fake HTTP server."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from core import testing
from core.outbox import enqueue

from .factories import make_plugin


def test_the_backend_is_sqlite_postgresql_or_a_postgresql_url(monkeypatch):
    monkeypatch.delenv("PHARMO2O_TEST_PG_URL", raising=False)
    monkeypatch.setenv("PHARMO2O_TEST_DATABASE", "postgresql://tester@db.example:6543/postgres")
    assert testing.backend() == "postgresql"
    assert testing.pg_admin_url() == "postgresql+psycopg://tester@db.example:6543/postgres"
    monkeypatch.setenv("PHARMO2O_TEST_DATABASE", "postgresql")
    assert testing.pg_admin_url() == "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    monkeypatch.setenv("PHARMO2O_TEST_DATABASE", "mysql")
    with pytest.raises(pytest.UsageError, match="sqlite, postgresql or a postgresql:// URL, not 'mysql'"):
        testing.backend()


@pytest.fixture
def pharmo2o_enabled():
    return ["loyalty"]


@pytest.fixture
def pharmo2o_settings():
    return {"orders.unpaid_ttl_minutes": 5}


def test_plugin_api_enables_the_overridden_plugins_and_settings(plugin_api, db_backend):
    assert plugin_api.get("/api/v1/health", role=None).json["plugins"] == ["loyalty"]
    assert plugin_api.ctx.setting("orders.unpaid_ttl_minutes", None) == 5
    assert plugin_api.ctx.engine.dialect.name == db_backend


def test_shop_places_pays_and_hands_over_through_the_api(shop):
    assert shop.available(shop.otc["id"]) == 50 and shop.rx["rx_class"] == "rx"
    order = shop.place_order([(shop.otc["id"], 3)]).json
    assert order["status"] == "awaiting_payment" and shop.available(shop.otc["id"]) == 47
    shop.pay(order["id"])
    shop.fulfil(order["id"])
    code = shop.api.get(f"/api/v1/orders/{order['id']}", role="customer").json["pickup_code"]
    assert shop.complete(order["id"], code).json["status"] == "completed"
    refused = shop.place_order([(shop.otc["id"], 999)], expect=409)
    assert refused.json["errors"][0]["field"] == "lines[0].quantity"
    with pytest.raises(AssertionError, match="expected 201, got 409"):
        shop.place_order([(shop.otc["id"], 999)])


def test_run_outbox_and_run_jobs(make_api):
    sent = []
    plugin = make_plugin("kit", notification_senders=lambda: {"kit.ping": sent.append},
                         order_status_changed=lambda session, order, old_status, new_status, caller:
                         enqueue(session, "kit.ping", {"order": order.id}) if old_status is None else None)
    shop = testing.Shop(make_api(extra_plugins=[plugin]))
    order = shop.place_order().json
    assert [m["status"] for m in shop.outbox("kit.ping")] == ["pending"] and sent == []
    assert shop.run_jobs("outbox.dispatch") == {"outbox.dispatch": "sent 1, failed 0, dead 0"}
    assert [p["order"] for p in sent] == [order["id"]] and shop.outbox("kit.ping")[0]["status"] == "sent"
    assert shop.run_outbox().sent == 0
    with pytest.raises(ValueError, match="no job named nightly"):
        shop.run_jobs("nightly")


def _post(url: str, body: dict, timeout: float = 5):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "X-Probe": "1"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read())


def test_fake_http_records_requests_and_answers_as_told(fake_http):
    assert _post(f"{fake_http.url}/push?x=1", {"a": 1}) == (200, {"ok": True})
    [seen] = fake_http.received("/push")
    assert (seen["method"], seen["json"], seen["query"], seen["headers"]["x-probe"]) == ("POST", {"a": 1}, {"x": ["1"]}, "1")
    fake_http.answer("/push", json={"code": 0})
    fake_http.answer("/push", status=503, json={"busy": True}, times=1)
    with pytest.raises(urllib.error.HTTPError) as err:
        _post(f"{fake_http.url}/push", {})
    assert err.value.code == 503
    assert _post(f"{fake_http.url}/push", {}) == (200, {"code": 0})  # back to the earlier answer
    fake_http.answer("/slow", delay=2)
    started = time.perf_counter()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        _post(f"{fake_http.url}/slow", {}, timeout=0.3)
    assert time.perf_counter() - started < 1.5
    assert len(fake_http.received()) == 4
