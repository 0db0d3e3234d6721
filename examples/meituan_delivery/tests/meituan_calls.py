"""Playing Meituan in the tests: the shared secret, the shop code, and signed calls to the webhooks."""
from __future__ import annotations

import json

from meituan_delivery.signing import HEADER, sign

SECRET = "meituan-test-secret-0123456789"
SHOP = "mt-poi-10086"


class MeituanClient:
    """Plays Meituan: signed calls to the plugin's webhooks."""

    def __init__(self, shop):
        self.shop = shop
        self._seq = 0

    def order(self, items=None, *, order_id: str | None = None, total_fen: int | None = None, **fields) -> dict:
        """A new-order body; ``items`` as ``[(product dict, quantity)]`` (default: 2 of the kit's OTC product)."""
        self._seq += 1
        items = items if items is not None else [(self.shop.otc, 2)]
        body = {"order_id": order_id or f"MT{27000000 + self._seq}", "app_poi_code": SHOP,
                "items": [{"sku": p["sku"], "quantity": q} for p, q in items],
                "total_fen": sum(p["price_fen"] * q for p, q in items) if total_fen is None else total_fen,
                "recipient": {"name": "李女士", "phone": "138****0000", "address": "上海市徐汇区漕溪北路88号"}}
        body.update(fields)
        return body

    def post(self, path: str, body, *, secret: str = SECRET, signature: str | None = None):
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if signature != "":
            headers[HEADER] = signature or sign(secret, raw)
        return self.shop.api.request("POST", path, body=raw, headers=headers)

    def send_order(self, body: dict | None = None, **kw):
        return self.post("/meituan/orders", body if body is not None else self.order(), **kw)

    def status(self, meituan_order_id: str, status: str, **fields):
        return self.post("/meituan/delivery-status", {"order_id": meituan_order_id, "status": status, **fields})
