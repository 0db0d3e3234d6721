"""Structured logs: one JSON access line per request with its request id, and never a token or password."""
from __future__ import annotations

import json
import logging

from core.api.logs import JsonFormatter
from core.testing import TEST_PASSWORD


def lines(caplog):
    fmt = JsonFormatter()
    return [json.loads(fmt.format(rec)) for rec in caplog.records]


def test_access_line_is_json_with_request_id_actor_and_status(api, caplog):
    with caplog.at_level(logging.INFO, logger="pharmo2o.api.access"):
        api.get("/api/v1/stores", role="clerk", headers={"X-Request-Id": "trace-me"})
    [line] = [x for x in lines(caplog) if x["logger"] == "pharmo2o.api.access"]
    assert line["request_id"] == "trace-me" and line["status"] == 200 and line["method"] == "GET"
    assert line["path"] == "/api/v1/stores" and line["actor"] == "user:clerk"
    assert line["route"] == "/api/v1/stores" and line["duration_ms"] >= 0
    assert line["ts"].endswith("+00:00")


def test_no_token_or_password_reaches_the_log(api, caplog):
    with caplog.at_level(logging.DEBUG):
        r = api.client.simulate_post("/api/v1/auth/token", json={"username": "clerk", "password": TEST_PASSWORD})
        token = r.json["token"]
        api.client.simulate_get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        api.client.simulate_get("/api/v1/auth/me", headers={"Authorization": "Bearer wrong-token-value"})
    text = "\n".join(JsonFormatter().format(rec) for rec in caplog.records)
    assert "pharmo2o.api.access" in text
    for secret in (token, TEST_PASSWORD, "wrong-token-value", api.tokens["clerk"]):
        assert secret not in text


def test_secret_named_extras_are_redacted():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    record.authorization = "Bearer abc"
    record.request_id = "r1"
    line = json.loads(JsonFormatter().format(record))
    assert line["authorization"] == "[redacted]" and line["request_id"] == "r1" and line["msg"] == "hello"
