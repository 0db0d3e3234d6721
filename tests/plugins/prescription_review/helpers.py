"""Builders shared by the prescription_review tests: a chain with a licensed pharmacist, Rx and OTC
products in stock, orders held for review, and multipart uploads built as a browser sends them."""
from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid
import zoneinfo

from core.testing import TEST_PASSWORD
from tests.api.helpers import product, receive

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
_seq = itertools.count(1)

#: the smallest files each type check accepts (the check reads content, not names)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(base: str = "11010519491231002") -> str:
    """An 18-character resident ID with the right check digit (GB 11643)."""
    return base + "10X98765432"[sum(int(d) * w for d, w in zip(base, _ID_WEIGHTS)) % 11]


def today() -> dt.date:
    return dt.datetime.now(SHANGHAI).date()


def unique_doc(kind: bytes = JPEG) -> bytes:
    """A document with its own hash (so two uploads are two documents)."""
    return kind + uuid.uuid4().bytes


def rx_api(make_api, tmp_path, enabled=("prescription_review",), **settings):
    """The API with the plugin, documents under ``tmp_path``, a licensed pharmacist (``pharmacist``) and a
    second one (``api.pharmacist2``), an Rx and an OTC product with stock (``api.rx``, ``api.otc``)."""
    conf = {"prescription_review.storage_dir": str(tmp_path / "rx-docs")}
    conf.update({f"prescription_review.{k}": v for k, v in settings.items()})
    api = make_api(enabled=list(enabled), settings=conf)
    licence(api, api.user_ids["pharmacist"], "PH-0001")
    api.pharmacist2 = add_pharmacist(api, "pharmacist2", "PH-0002")
    api.rx = product(api, rx_class="rx", generic_name="阿莫西林胶囊", specification="0.25g×24粒",
                     package_insert="【适应症】敏感菌所致感染", price_fen=2600)["id"]
    api.rx2 = product(api, rx_class="rx", generic_name="氨氯地平片", specification="5mg×28片",
                      package_insert="【用法用量】口服", price_fen=3900)["id"]
    api.otc = product(api, rx_class="otc_b", generic_name="维生素C片", price_fen=500)["id"]
    for pid in (api.rx, api.rx2, api.otc):
        receive(api, api.store_id, pid, 50)
    return api


def licence(api, user_id: int, number: str | None, expiry: dt.date | None = None, **fields) -> None:
    body = {"licence_number": number,
            "licence_expiry": (expiry or today() + dt.timedelta(days=365)).isoformat(), **fields}
    r = api.patch(f"/api/v1/users/{user_id}", json=body)
    assert r.status_code == 200, r.json


def add_pharmacist(api, username: str, number: str | None = "PH-X", expiry: dt.date | None = None,
                   store_id: int | None = None) -> dict:
    """Create a pharmacist of the home store (licensed unless ``number`` is None); ``{"id", "token"}``."""
    r = api.post("/api/v1/users", json={
        "username": username, "password": TEST_PASSWORD, "role": "pharmacist", "display_name": username,
        "store_id": store_id or api.store_id, "licence_number": number,
        "licence_expiry": (expiry or today() + dt.timedelta(days=365)).isoformat() if number else None})
    assert r.status_code == 201, r.json
    return {"id": r.json["id"], "token": api.token(user_id=r.json["id"])}


def as_token(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def new_customer(api) -> dict:
    r = api.post("/api/v1/customers", role="clerk", json={"name": f"李{next(_seq)}", "phone": "13900000000"})
    assert r.status_code == 201, r.json
    return {"id": r.json["id"], "token": api.token(customer_id=r.json["id"])}


def order(api, lines, *, role="customer", channel="web", headers=None, **fields):
    """Place an order (``lines``: ``[(product_id, qty)]``) as the test customer on an online channel."""
    body = {"store_id": api.store_id, "channel": channel, "fulfilment": "pickup",
            "lines": [{"product_id": p, "quantity": q} for p, q in lines], **fields}
    if role not in ("customer", None) and "customer_id" not in fields:
        body["customer_id"] = api.customer_id
    if headers is not None:
        return api.request("POST", "/api/v1/orders", json=body, headers=headers)
    return api.post("/api/v1/orders", role=role, json=body)


def held(api, lines, **kw) -> dict:
    r = order(api, lines, **kw)
    assert r.status_code == 201, r.json
    assert r.json["status"] == "awaiting_review", r.json
    return r.json


def form(fields: dict, document: bytes | None, filename: str = "rx.jpg",
         content_type: str = "image/jpeg") -> tuple[bytes, str]:
    """A multipart/form-data body as a browser builds it; returns ``(body, content_type_header)``."""
    boundary = f"----p2o{uuid.uuid4().hex}"
    out = bytearray()
    for name, value in fields.items():
        if value is None:
            continue
        out += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n".encode()
        out += (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)).encode() + b"\r\n"
    if document is not None:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"document\"; filename=\"{filename}\"\r\n"
                f"Content-Type: {content_type}\r\n\r\n").encode()
        out += document + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def rx_fields(items, *, number=None, institution="北京协和医院", issue_date=None, **over) -> dict:
    fields = {"patient_name": "王小明", "patient_id_number": resident_id(), "relationship": "self",
              "prescriber": "张医生", "institution": institution,
              "prescription_number": number or f"RX{uuid.uuid4().hex[:10].upper()}",
              "issue_date": issue_date if isinstance(issue_date, str) else (issue_date or today()).isoformat(),
              "items": [{"product_id": p, "quantity": q} for p, q in items]}
    fields.update(over)
    return fields


def upload(api, order_id, items=None, *, document=None, role="customer", headers=None, fields=None,
           content_type="image/jpeg", **over):
    """POST the order's prescription; ``items`` default to the order's own Rx lines."""
    if items is None and fields is None:
        lines = api.get(f"/api/v1/orders/{order_id}").json["lines"]
        items = [(ln["product_id"], ln["quantity"]) for ln in lines if ln["rx_class"] == "rx"]
    body, ctype = form(fields if fields is not None else rx_fields(items, **over),
                       unique_doc() if document is None else document, content_type=content_type)
    if headers is not None:
        return api.request("POST", f"/api/v1/orders/{order_id}/prescription", body=body,
                           headers={**headers, "Content-Type": ctype})
    return api.post(f"/api/v1/orders/{order_id}/prescription", role=role, body=body,
                    headers={"Content-Type": ctype})


def submitted(api, lines=None, **kw) -> tuple[dict, dict]:
    """An order held for review with its prescription uploaded: ``(order, prescription)``."""
    o = held(api, lines or [(api.rx, 2)])
    r = upload(api, o["id"], **kw)
    assert r.status_code == 201, r.json
    return o, r.json


def decide(api, pid, action, role="pharmacist", headers=None, **body):
    path = f"/api/v1/prescriptions/{pid}/{action}"
    if action == "reject":
        body.setdefault("reason_code", "illegible")
    if headers is not None:
        return api.request("POST", path, json=body, headers=headers)
    return api.post(path, role=role, json=body)


def fields_of(result) -> dict[str, str]:
    return {e["field"]: e["message"] for e in result.json.get("errors", [])}
