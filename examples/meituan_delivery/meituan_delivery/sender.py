"""The outbox sender: pushes a status change to Meituan's open API over HTTP.

Runs in the job runner after the change committed (never inside a request).
It raises on a timeout, a connection failure or a non-2xx answer, so the outbox
retries with backoff; Meituan deduplicates by ``X-Pharmo2o-Message-Id``.
"""
from __future__ import annotations

import urllib.request

from .signing import HEADER

__all__ = ["KIND", "send_status"]

KIND = "meituan.order_status"


def send_status(payload: dict) -> None:
    request = urllib.request.Request(
        payload["url"], data=payload["body"].encode(), method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", HEADER: payload["signature"],
                 "X-Pharmo2o-Message-Id": str(payload["_outbox_id"])})
    with urllib.request.urlopen(request, timeout=payload["timeout_seconds"]) as response:  # noqa: S310 (configured URL)
        if not 200 <= response.status < 300:  # urlopen raises for 4xx/5xx; 1xx/3xx left over are failures too
            raise RuntimeError(f"Meituan answered {response.status}")
