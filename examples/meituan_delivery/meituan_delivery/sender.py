"""The outbox sender: pushes a status change to Meituan's open API over HTTP.

Runs in the job runner after the change committed (never inside a request),
with the dispatcher's Context: the URL, timeout and secret are read from
``[meituan]`` when the message is sent, so the outbox keeps no secret. It
raises on a timeout, a connection failure or a non-2xx answer, so the outbox
retries with backoff; Meituan deduplicates by ``X-Pharmo2o-Message-Id``.
"""
from __future__ import annotations

import json
import urllib.request

from .settings import settings_of
from .signing import HEADER, sign

__all__ = ["KIND", "status_sender"]

KIND = "meituan.order_status"


def status_sender(ctx):
    """The sender of ``KIND`` messages for the dispatcher's ``ctx``."""
    def send(payload: dict) -> None:
        settings = settings_of(ctx.config)
        message = {k: v for k, v in payload.items() if not k.startswith("_")}
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        request = urllib.request.Request(
            f"{settings.api_base}/order/status", data=body, method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", HEADER: sign(settings.require_secret(), body),
                     "X-Pharmo2o-Message-Id": str(payload["_outbox_id"])})
        with urllib.request.urlopen(request, timeout=settings.timeout_seconds) as response:  # noqa: S310 (configured URL)
            if not 200 <= response.status < 300:  # urlopen raises for 4xx/5xx; anything else left is a failure too
                raise RuntimeError(f"Meituan answered {response.status}")
    return send
