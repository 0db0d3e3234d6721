"""Over real HTTP: gunicorn started by the test (through core.api.server.serve) on a free port."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from core import people
from core.auth import SYSTEM

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(make_ctx, gunicorn):
    """A migrated database with an admin, served by two gunicorn workers; yields the base URL."""
    ctx = make_ctx()
    with ctx.transaction() as s:
        people.create_user(s, {"username": "boss", "password": "boss-password", "role": "admin"}, SYSTEM)
    server = gunicorn(ctx, workers=2)
    return server.url


def test_smoke_over_http(served, tmp_path):
    http = requests.Session()
    r = http.get(f"{served}/api/v1/health")
    assert r.json()["database"]["ok"] is True and r.headers["X-Request-Id"]
    assert http.get(f"{served}/api/v1/stores").status_code == 401
    r = http.post(f"{served}/api/v1/auth/token", json={"username": "boss", "password": "boss-password"})
    assert r.status_code == 200, r.text
    http.headers["Authorization"] = f"Bearer {r.json()['token']}"
    store = http.post(f"{served}/api/v1/stores", json={"code": "BJ01", "name": "北京一店"}).json()
    product = http.post(f"{served}/api/v1/products", json={
        "sku": "IBU-400", "generic_name": "布洛芬片", "approval_number": "国药准字H20000001", "rx_class": "otc_b",
        "price_fen": 1590}).json()
    expiry = (dt.date.today() + dt.timedelta(days=300)).isoformat()
    r = http.post(f"{served}/api/v1/stores/{store['id']}/stock/receipts",
                  json={"product_id": product["id"], "lot_no": "L1", "expiry": expiry, "quantity": 3})
    assert r.status_code == 201, r.text
    order = {"store_id": store["id"], "channel": "store", "fulfilment": "pickup",
             "lines": [{"product_id": product["id"], "quantity": 2}]}
    # several requests, possibly on different workers, all see the same database
    first = http.post(f"{served}/api/v1/orders", json=order, headers={"Idempotency-Key": "smoke-1"})
    again = http.post(f"{served}/api/v1/orders", json=order, headers={"Idempotency-Key": "smoke-1"})
    assert first.status_code == 201 and again.status_code == 200, (first.text, again.text)
    assert first.json()["id"] == again.json()["id"] and first.json()["total_fen"] == 3180
    r = http.post(f"{served}/api/v1/orders", json=order | {"lines": [{"product_id": product["id"], "quantity": 2}]})
    assert r.status_code == 409 and r.headers["Content-Type"] == "application/problem+json"
    assert http.get(f"{served}/api/docs").headers["Content-Type"].startswith("text/html")
    r = http.post(f"{served}/api/v1/auth/logout")
    assert r.status_code == 204
    assert http.get(f"{served}/api/v1/stores").status_code == 401
    # the workers log one JSON line per request, with its request id and without the token
    token = http.headers["Authorization"].split()[1]
    log = served_log(tmp_path)
    access = [json.loads(line) for line in log.splitlines()
              if line.startswith("{") and '"pharmo2o.api.access"' in line]
    assert any(a["path"] == "/api/v1/orders" and a["status"] == 201 and a["request_id"] for a in access), log[-2000:]
    assert token not in log and "boss-password" not in log


def _chunks(data: bytes, size: int = 7):
    """A body requests sends with Transfer-Encoding: chunked (a generator has no length)."""
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_a_chunked_body_is_read_and_its_limit_enforced(served):
    http = requests.Session()
    token = http.post(f"{served}/api/v1/auth/token", json={"username": "boss", "password": "boss-password"}).json()
    http.headers.update({"Authorization": f"Bearer {token['token']}", "Content-Type": "application/json"})
    body = json.dumps({"code": "CQ01", "name": "重庆一店"}).encode()
    r = http.post(f"{served}/api/v1/stores", data=_chunks(body))
    assert r.request.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in r.request.headers
    assert r.status_code == 201, r.text  # read as sent, not as an empty body
    assert r.json()["code"] == "CQ01" and r.json()["name"] == "重庆一店"
    big = json.dumps({"code": "CQ02", "name": "x" * (2 * 1024 * 1024)}).encode()  # over the 1 MiB default
    r = http.post(f"{served}/api/v1/stores", data=_chunks(big, 64 * 1024))
    assert r.status_code == 413 and "larger than 1048576 bytes" in r.json()["detail"], r.text
    stores = http.get(f"{served}/api/v1/stores").json()
    assert [s["code"] for s in stores["items"] if s["code"].startswith("CQ")] == ["CQ01"]  # nothing half-written


def test_gunicorn_conf_loads_the_app(make_ctx, tmp_path):
    ctx = make_ctx()
    config = write_config(tmp_path, ctx.config.database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHARMO2O_")} | {"PHARMO2O_CONFIG": str(config)}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    done = subprocess.run([str(gunicorn), "-c", str(REPO / "gunicorn.conf.py"), "--check-config"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "serve.toml"
    path.write_text(f'database_url = "{url}"\n[plugins]\nenabled = []\n', encoding="utf-8")
    return path


def served_log(tmp_path: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in tmp_path.glob("gunicorn-*/server.log"))


def test_gunicorn_builds_its_access_line_only_when_it_would_be_written(monkeypatch):
    """The app writes the access line; gunicorn's own (gunicorn.access at WARNING) is not built per request."""
    import logging

    from gunicorn import glogging
    from gunicorn.config import Config as GunicornConfig

    from core.api.server import LOGGER_CLASS, GunicornLogger
    assert LOGGER_CLASS == "core.api.server.GunicornLogger"
    built = []
    monkeypatch.setattr(glogging.Logger, "access", lambda self, *a: built.append(a))
    logger = GunicornLogger(GunicornConfig())
    level = logger.access_log.level
    try:
        logger.access_log.setLevel(logging.WARNING)  # as core.api.logs.logging_dict sets it
        logger.access(None, None, {}, dt.timedelta(0))
        assert built == []
        logger.access_log.setLevel(logging.INFO)  # an operator who wants gunicorn's line still gets it
        logger.access(None, None, {}, dt.timedelta(0))
        assert len(built) == 1
    finally:
        logger.access_log.setLevel(level)
