"""POST /api/v1/orders/{id}/prescription: who may upload, what is checked, where the file goes."""
from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import select

from plugins.prescription_review import documents
from plugins.prescription_review.models import Decision, Prescription, RxDocument
from plugins.prescription_review.settings import settings_of
from tests.api.helpers import store

from .helpers import (JPEG, PDF, PNG, add_pharmacist, as_token, decide, fields_of, form, held, new_customer, order,
                      rx_api, rx_fields, submitted, today, unique_doc, upload)


def test_the_customer_uploads_and_the_file_is_stored_outside_the_database_by_its_hash(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o = held(api, [(api.rx, 2), (api.otc, 1)])
    assert o["hold_reasons"] and "prescription" in o["hold_reasons"][0]
    doc = unique_doc(PNG)
    r = upload(api, o["id"], document=doc, content_type="application/octet-stream")  # the claim is ignored
    assert r.status_code == 201, r.json
    assert r.headers["location"] == f"/api/v1/prescriptions/{r.json['id']}"
    digest = hashlib.sha256(doc).hexdigest()
    assert r.json["document"] == {"sha256": digest, "media_type": "image/png", "size_bytes": len(doc),
                                  "url": f"/api/v1/prescriptions/{r.json['id']}/document"}
    assert r.json["status"] == "pending" and "patient" not in r.json  # the answer carries no personal data
    stored = tmp_path / "rx-docs" / digest[:2] / digest
    assert stored.read_bytes() == doc
    assert stored.stat().st_mode & 0o777 == 0o600
    with api.ctx.session() as s:
        p = s.get(Prescription, r.json["id"])
        assert (p.order_id, p.customer_id, p.store_id, p.status) == (o["id"], api.customer_id, api.store_id, "pending")
        assert p.document.sha256 == digest and p.valid_until == today()
        assert [(i.product_id, i.quantity) for i in p.items] == [(api.rx, 2)]
        assert s.scalars(select(Decision.action).where(Decision.prescription_id == p.id)).all() == ["submit"]
        # nothing of the file is in the database: the row holds its hash, type and size
        assert {c.name for c in RxDocument.__table__.columns} == {"id", "sha256", "media_type", "size_bytes",
                                                                   "uploaded_by", "created_at"}
        assert documents.read(settings_of(api.ctx.config), p.document) == doc
    order_now = api.get(f"/api/v1/orders/{o['id']}", role="customer").json
    assert order_now["status"] == "awaiting_review"


def test_jpeg_png_and_pdf_are_accepted_anything_else_is_refused_by_content(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    for kind, media in ((JPEG, "image/jpeg"), (PNG, "image/png"), (PDF, "application/pdf")):
        o = held(api, [(api.rx, 1)])
        r = upload(api, o["id"], document=unique_doc(kind))
        assert r.status_code == 201 and r.json["document"]["media_type"] == media
    o = held(api, [(api.rx, 1)])
    for bad in (b"GIF89a" + b"\x00" * 40, b"<html><script>alert(1)</script></html>", b"MZ\x90\x00 exe",
                b"\x00\xd8\xff\xe0 almost a jpeg"):
        r = upload(api, o["id"], document=bad, content_type="image/jpeg")  # lies about its type
        assert r.status_code == 422 and "JPEG or PNG image or a PDF" in fields_of(r)["document"], r.json
    r = upload(api, o["id"], document=b"")
    assert r.status_code == 422 and "empty" in fields_of(r)["document"]
    body, ctype = form(rx_fields([(api.rx, 1)]), None)
    r = api.post(f"/api/v1/orders/{o['id']}/prescription", role="customer", body=body, headers={"Content-Type": ctype})
    assert r.status_code == 422 and "document" in fields_of(r)
    with api.ctx.session() as s:
        assert s.scalars(select(Prescription.id).where(Prescription.order_id == o["id"])).all() == []
    assert not list((tmp_path / "rx-docs").rglob(".upload-*"))


def test_documents_over_the_configured_size_are_refused_and_larger_bodies_than_the_api_limit_pass(
        make_api, tmp_path):
    api = rx_api(make_api, tmp_path, max_document_bytes=2 * 1024 * 1024)
    o = held(api, [(api.rx, 1)])
    big = JPEG + b"\x01" * (1536 * 1024)  # 1.5 MiB: over the API's 1 MiB JSON limit, under this route's
    r = upload(api, o["id"], document=big)
    assert r.status_code == 201, r.json
    o2 = held(api, [(api.rx, 1)])
    too_big = JPEG + b"\x02" * (2 * 1024 * 1024)  # over the document limit, still inside the form allowance
    r = upload(api, o2["id"], document=too_big)
    assert r.status_code == 413 and r.json["type"].endswith("/payload-too-large")
    assert fields_of(r) == {"document": f"at most {2 * 1024 * 1024} bytes"}
    huge = JPEG + b"\x03" * (3 * 1024 * 1024)  # the body itself is over the route's limit: refused unread
    r = upload(api, o2["id"], document=huge)
    assert r.status_code == 413 and "at most" in r.json["detail"]
    r = upload(api, o2["id"], document=huge, role=None)  # before authentication, too
    assert r.status_code == 413
    # other routes keep the API's own 1 MiB limit
    r = api.post("/api/v1/stores", body=b'{"code": "' + b"x" * (1024 * 1024) + b'"}',
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    with api.ctx.session() as s:
        assert [p.order_id for p in s.scalars(select(Prescription))] == [o["id"]]


def test_default_document_limit_is_ten_mebibytes(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o = held(api, [(api.rx, 1)])
    r = upload(api, o["id"], document=JPEG + b"\x00" * (10 * 1024 * 1024))
    assert r.status_code == 413 and fields_of(r) == {"document": f"at most {10 * 1024 * 1024} bytes"}
    r = upload(api, o["id"], document=JPEG + b"\x00" * (10 * 1024 * 1024 - len(JPEG)))
    assert r.status_code == 201, r.json


def test_the_form_fields_are_checked_and_named(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o = held(api, [(api.rx, 1)])
    r = upload(api, o["id"], fields={"items": "[{\"product_id\": 1, \"quantity\": 1}]"})
    assert r.status_code == 422
    assert set(fields_of(r)) == {"patient_name", "patient_id_number", "relationship", "prescriber", "institution",
                                 "prescription_number", "issue_date"}
    r = upload(api, o["id"], items=[(api.rx, 1)], patient_id_number="110105194912310021", relationship="friend",
               issue_date="25/11/2026")
    assert r.status_code == 422
    assert set(fields_of(r)) == {"patient_id_number", "relationship", "issue_date"}
    assert "check digit" in fields_of(r)["patient_id_number"]
    r = upload(api, o["id"], fields={**rx_fields([(api.rx, 1)]), "items": "not json"})
    assert r.status_code == 422 and "JSON" in fields_of(r)["items"]
    r = upload(api, o["id"], fields={**rx_fields([]), "items": []})
    assert r.status_code == 422 and "items" in fields_of(r)
    r = upload(api, o["id"], fields={**rx_fields([(api.rx, 1)]), "items": [{"product_id": api.rx, "quantity": 0}]})
    assert r.status_code == 422 and "items[0].quantity" in fields_of(r)
    r = upload(api, o["id"], items=[(api.rx, 1), (999999, 1)])
    assert r.status_code == 422 and "items[1].product_id" in fields_of(r)
    body, ctype = form({**rx_fields([(api.rx, 1)]), "favourite_colour": "blue"}, unique_doc())
    r = api.post(f"/api/v1/orders/{o['id']}/prescription", role="customer", body=body, headers={"Content-Type": ctype})
    assert r.status_code == 422 and "favourite_colour" in fields_of(r)
    r = api.post(f"/api/v1/orders/{o['id']}/prescription", role="customer", json={"patient_name": "x"})
    assert r.status_code == 415 and "multipart/form-data" in r.json["detail"]
    r = api.post(f"/api/v1/orders/{o['id']}/prescription", role="customer", body=b"--x\r\ngarbage",
                 headers={"Content-Type": "multipart/form-data; boundary=zzz"})
    assert r.status_code in (400, 422), r.json
    assert api.get(f"/api/v1/orders/{o['id']}", role="customer").json["status"] == "awaiting_review"


def test_issue_date_validity_same_day_or_up_to_three_days_with_an_extension_note(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    day = dt.timedelta(days=1)
    o = held(api, [(api.rx, 1)])
    r = upload(api, o["id"], issue_date=today() - day)
    assert r.status_code == 422 and "expired" in fields_of(r)["issue_date"]
    assert "extension_note" in fields_of(r)["issue_date"]
    r = upload(api, o["id"], issue_date=today() - 4 * day, extension_note="延长至3天 张医生")
    assert r.status_code == 422 and "at most 3 days" in fields_of(r)["issue_date"]
    r = upload(api, o["id"], issue_date=today() + day)
    assert r.status_code == 422 and "after today" in fields_of(r)["issue_date"]
    r = upload(api, o["id"], issue_date=today() - 3 * day, extension_note="因患者行动不便，延长有效期至3天")
    assert r.status_code == 201, r.json
    assert r.json["valid_until"] == today().isoformat()
    o2 = held(api, [(api.rx, 1)])
    r = upload(api, o2["id"], issue_date=today())
    assert r.status_code == 201 and r.json["valid_until"] == today().isoformat()


def test_the_prescribed_items_must_cover_the_rx_lines_with_the_same_products(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o = held(api, [(api.rx, 3), (api.rx2, 1), (api.otc, 5)])
    r = upload(api, o["id"], items=[(api.rx, 2), (api.rx2, 1)])
    assert r.status_code == 422 and "3 ordered, 2 prescribed" in fields_of(r)["items"]
    assert r.json["reason_codes"] == ["not_covered"]
    r = upload(api, o["id"], items=[(api.rx, 3)])
    assert r.status_code == 422 and "not on the prescription" in r.json["detail"]
    assert "substituted" in r.json["detail"] and r.json["reason_codes"] == ["substitution"]
    r = upload(api, o["id"], items=[(api.rx, 3), (api.otc, 1), (api.rx2, 1)])  # the OTC line needs nothing
    assert r.status_code == 201, r.json
    o2 = held(api, [(api.rx, 1)])
    r = upload(api, o2["id"], items=[(api.rx, 5), (api.rx2, 2)])  # more than ordered, other drugs: fine
    assert r.status_code == 201, r.json


def test_only_the_orders_customer_or_staff_of_its_store_may_upload(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o = held(api, [(api.rx, 1)])
    other = new_customer(api)
    r = upload(api, o["id"], headers=as_token(other["token"]))
    assert r.status_code == 404  # another customer's order does not exist for them
    r = upload(api, o["id"], role=None)
    assert r.status_code == 401
    away = store(api)
    outsider = add_pharmacist(api, "far_away", store_id=away["id"])
    r = upload(api, o["id"], headers=as_token(outsider["token"]))
    assert r.status_code == 403
    with api.ctx.session() as s:
        assert s.scalars(select(Prescription)).all() == []
    r = upload(api, o["id"], role="clerk")  # the counter scans the paper prescription for the customer
    assert r.status_code == 201, r.json
    with api.ctx.session() as s:
        assert s.get(Prescription, r.json["id"]).submitted_by == "user:clerk"


def test_an_order_takes_one_prescription_an_identical_retry_is_answered_again(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    o = held(api, [(api.rx, 1)])
    fields, doc = rx_fields([(api.rx, 1)]), unique_doc()
    first = upload(api, o["id"], fields=fields, document=doc)
    assert first.status_code == 201
    again = upload(api, o["id"], fields=fields, document=doc)  # the answer was lost: same upload
    assert again.status_code == 200 and again.json["id"] == first.json["id"]
    other = upload(api, o["id"], items=[(api.rx, 1)])
    assert other.status_code == 409 and other.json["prescription_id"] == first.json["id"]
    with api.ctx.session() as s:
        assert len(s.scalars(select(Prescription)).all()) == 1


def test_orders_without_rx_lines_or_not_awaiting_review_take_none(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    r = order(api, [(api.otc, 1)])
    assert r.status_code == 201 and r.json["status"] == "awaiting_payment"  # OTC-only orders are untouched
    r = upload(api, r.json["id"], items=[(api.rx, 1)])
    assert r.status_code == 409 and "no prescription (Rx) lines" in r.json["detail"]
    o = held(api, [(api.rx, 1)])
    assert api.post(f"/api/v1/orders/{o['id']}/cancel", role="customer", json={"reason": "changed mind"}).status_code == 200
    r = upload(api, o["id"])
    assert r.status_code == 409 and "cancelled" in r.json["detail"]


def test_the_same_prescription_or_document_is_not_used_for_two_orders(make_api, tmp_path):
    api = rx_api(make_api, tmp_path)
    doc = unique_doc()
    o1, p1 = submitted(api, [(api.rx, 1)], document=doc, number="NO-1", institution="北京协和医院")
    o2 = held(api, [(api.rx, 1)])
    r = upload(api, o2["id"], number="NO-1", institution="北京协和医院")  # another photo of the same paper
    assert r.status_code == 409 and f"prescription #{p1['id']} for order #{o1['id']}" in r.json["detail"]
    r = upload(api, o2["id"], document=doc)  # the same file under another number
    assert r.status_code == 409 and "waiting for review" in r.json["detail"]
    assert decide(api, p1["id"], "approve").status_code == 200
    for attempt in ({"number": "no-1", "institution": " 北京协和医院 "},  # normalised: case, spaces, width
                    {"number": "ＮＯ－１", "institution": "北京协和医院"},
                    {"document": doc}):
        r = upload(api, o2["id"], **attempt)
        assert r.status_code == 409, (attempt, r.json)
        assert f"already approved as prescription #{p1['id']}" in r.json["detail"]
        assert r.json["reason_codes"] == ["reused"]
    assert upload(api, o2["id"], number="NO-2").status_code == 201  # a different prescription is fine
