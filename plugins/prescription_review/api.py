"""The prescription_review plugin's REST resources (mounted through ``register_routes``).

::

    POST /api/v1/orders/{order_id}/prescription       upload (multipart): the order's customer, or staff of its store
    GET  /api/v1/prescriptions                        queue, oldest first, with waiting time (pharmacists; customers:
                                                      their own)
    GET  /api/v1/prescriptions/{id}                   one prescription beside its order's lines (logged)
    GET  /api/v1/prescriptions/{id}/document          the uploaded image/PDF (logged)
    GET  /api/v1/prescriptions/{id}/access-log        who read it (admin)
    POST /api/v1/prescriptions/{id}/claim             take the review for a while (licensed pharmacist)
    POST /api/v1/prescriptions/{id}/approve           (licensed pharmacist of the order's store)
    POST /api/v1/prescriptions/{id}/reject            coded reason + text for the customer (licensed pharmacist)
    GET  /api/v1/prescriptions/reasons                the coded rejection reasons
    GET  /api/v1/prescriptions/banlist                the online-sale ban list in force (staff)
    POST /api/v1/prescriptions/banlist                load a new version (admin)

Prescriptions are sensitive personal data: only pharmacists and the customer
the prescription belongs to read them, and every read of one (or of its
document) is written to ``rx_access_log`` in the same transaction as the answer.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from core.api import STAFF, operation
from core.api.errors import ApiError, PayloadTooLarge, UnsupportedMediaType, problem_type
from core.api.pagination import decode_cursor, page_body
from core.api.resources.common import ID, V1
from core.api.schemas import Body, Id, Out, PageQuery, Text, page_of
from core.db import utcnow
from core.errors import ValidationFailed

from . import banlist, documents, services
from .models import RELATIONSHIPS, STATUSES, Prescription
from .reasons import REASONS
from .settings import FORM_OVERHEAD_BYTES, settings_of

__all__ = ["routes"]

TAGS = ("prescriptions",)
PHARMACIST = ("pharmacist",)
READERS = ("pharmacist", "customer")
TEXT_FIELDS = ("patient_name", "patient_id_number", "relationship", "prescriber", "institution",
               "prescription_number", "issue_date", "extension_note", "items")
Status = Literal[STATUSES]  # type: ignore[valid-type]
ReasonCode = Literal[tuple(REASONS)]  # type: ignore[valid-type]


# --------------------------------------------------------------------- schemas

class RxItemOut(Out):
    product_id: int
    product_name: str
    quantity: int
    dosage: str | None
    remaining: int | None = Field(None, description="for an approved prescription: what it still covers")


class RxDocumentOut(Out):
    sha256: str
    media_type: str
    size_bytes: int
    url: str = Field(description="GET it with the same bearer token (every read is logged)")


class RxOrderLineOut(Out):
    product_id: int
    product_name: str
    rx_class: str
    quantity: int
    prescribed: int | None = Field(description="the quantity the prescription lists for this product")
    covered: bool | None = Field(description="for an Rx line: whether the prescription covers it")


class RxOrderOut(Out):
    id: int
    status: str
    channel: str
    fulfilment: str
    total_fen: int
    created_at: AwareDatetime
    lines: list[RxOrderLineOut]


class RxProblemOut(Out):
    code: str = Field(description="the rejection reason code it suggests")
    message: str


class RxClaimOut(Out):
    actor: str
    user_id: int
    claimed_at: AwareDatetime
    expires_at: AwareDatetime
    mine: bool


class RxDecisionOut(Out):
    action: str
    actor: str
    licence_number: str | None
    reason_code: str | None
    customer_message: str | None
    note: str
    created_at: AwareDatetime


class RxPatientOut(Out):
    name: str
    id_number: str = Field(description="in full for pharmacists; masked for the customer")
    relationship: str = Field(description="the buyer's relationship to the patient")


class PrescriptionOut(Out):
    id: int
    order_id: int
    store_id: int
    customer_id: int | None
    status: Status
    patient: RxPatientOut
    prescriber: str
    institution: str
    prescription_number: str
    issue_date: dt.date
    extension_note: str | None
    valid_until: dt.date
    valid_today: bool
    submitted_at: AwareDatetime
    waiting_seconds: int = Field(description="pending: since submission; decided: how long it waited")
    decided_at: AwareDatetime | None
    decided_by: str | None
    reason_code: str | None
    reason_label: str | None
    customer_message: str | None = Field(description="the text the customer was shown on rejection")
    document: RxDocumentOut
    items: list[RxItemOut]
    order: RxOrderOut
    problems: list[RxProblemOut] | None = Field(None, description="pharmacists: what stands against approval now")
    claim: RxClaimOut | None = None
    decisions: list[RxDecisionOut] | None = Field(None, description="pharmacists: the review history")


class PrescriptionSummaryOut(Out):
    id: int
    order_id: int
    store_id: int
    status: Status
    patient_name: str = Field(description="masked (张*) in lists")
    items: int
    rx_lines: int
    order_total_fen: int
    issue_date: dt.date
    valid_until: dt.date
    expired: bool
    submitted_at: AwareDatetime
    waiting_seconds: int
    decided_at: AwareDatetime | None
    reason_code: str | None
    customer_message: str | None
    claimed_by: str | None
    claim_expires_at: AwareDatetime | None


PrescriptionPage = page_of(PrescriptionSummaryOut, "PrescriptionPage")


class SubmittedOut(Out):
    id: int
    order_id: int
    status: Status
    submitted_at: AwareDatetime
    valid_until: dt.date
    document: RxDocumentOut
    items: list[RxItemOut]


class PrescriptionQuery(PageQuery):
    status: Status | None = Field(None, description="e.g. pending: the review queue")
    store_id: Id | None = Field(None, description="pharmacists not bound to a store: the store to list")


class ApproveBody(Body):
    note: Text(1000) | None = Field(None, description="internal note (kept with the decision)")


class RejectBody(Body):
    reason_code: ReasonCode = Field(description="one of GET /api/v1/prescriptions/reasons")
    message: Text(500) | None = Field(None, description="shown to the customer (default: the reason's standard "
                                                       "text; required for 'other')")
    note: Text(1000) | None = Field(None, description="internal note (kept with the decision)")


class ReasonOut(Out):
    code: str
    label: str
    customer_text: str


class ReasonList(Out):
    items: list[ReasonOut]


class AccessOut(Out):
    id: int
    action: str
    actor: str
    role: str | None
    request_id: str | None
    created_at: AwareDatetime


AccessPage = page_of(AccessOut, "RxAccessPage")


class BanListVersionOut(Out):
    version: str
    sha256: str
    source: str
    loaded_by: str
    loaded_at: AwareDatetime


class BanListOut(Out):
    version: str
    title: str
    source: str
    origin: Literal["database", "file", "bundled"]
    sha256: str
    entries: list[dict[str, Any]]
    history: list[BanListVersionOut] = Field(description="every version loaded into the database, newest first")


class BanListBody(Body):
    format: Literal[1]
    version: Text(64, 1)
    title: Text(300) = ""
    source: Text(300) = ""
    note: Text(2000) = ""
    entries: list[dict[str, Any]] = Field(min_length=1, max_length=2000)


# ------------------------------------------------------------------ helpers

class LengthRequired(ApiError):
    status = 411
    type = problem_type("length-required")
    title = "Length required"


def _mask_name(name: str) -> str:
    return name[:1] + "*" * max(1, len(name) - 1) if name else ""


def _mask_id(number: str) -> str:
    return number[:3] + "*" * (len(number) - 7) + number[-4:] if len(number) > 7 else "*" * len(number)


def _seconds(p: Prescription, now: dt.datetime) -> int:
    end = p.decided_at if p.status != "pending" and p.decided_at else now
    return max(0, int((end - p.submitted_at).total_seconds()))


def _detail(req, p: Prescription) -> dict:
    from core.orders import get_order
    session, caller = req.context.session, req.context.caller
    settings = settings_of(req.context.ctx.config)
    now = utcnow()
    today = settings.today(now)
    order = get_order(session, p.order_id)
    prescribed = {i.product_id: i.quantity for i in p.items}
    left = services.remaining(session, p) if p.status == "approved" else {}
    pharmacist = caller.role == "pharmacist"
    reason = REASONS.get(p.reason_code) if p.reason_code else None
    data = {
        "id": p.id, "order_id": p.order_id, "store_id": p.store_id, "customer_id": p.customer_id, "status": p.status,
        "patient": {"name": p.patient_name,
                    "id_number": p.patient_id_number if pharmacist else _mask_id(p.patient_id_number),
                    "relationship": p.relationship},
        "prescriber": p.prescriber, "institution": p.institution, "prescription_number": p.prescription_number,
        "issue_date": p.issue_date.isoformat(), "extension_note": p.extension_note,
        "valid_until": p.valid_until.isoformat(), "valid_today": p.issue_date <= today <= p.valid_until,
        "submitted_at": p.submitted_at.isoformat(), "waiting_seconds": _seconds(p, now),
        "decided_at": p.decided_at.isoformat() if p.decided_at else None,
        "decided_by": p.decided_by if pharmacist else None,
        "reason_code": p.reason_code, "reason_label": reason.label if reason else None,
        "customer_message": p.customer_message,
        "document": {"sha256": p.document.sha256, "media_type": p.document.media_type,
                     "size_bytes": p.document.size_bytes, "url": f"{V1}/prescriptions/{p.id}/document"},
        "items": [{"product_id": i.product_id, "product_name": i.product_name, "quantity": i.quantity,
                   "dosage": i.dosage, "remaining": left.get(i.product_id) if p.status == "approved" else None}
                  for i in p.items],
        "order": {"id": order.id, "status": order.status, "channel": order.channel, "fulfilment": order.fulfilment,
                  "total_fen": order.total_fen, "created_at": order.created_at.isoformat(),
                  "lines": [{"product_id": ln.product_id, "product_name": ln.product_name, "rx_class": ln.rx_class,
                             "quantity": ln.quantity, "prescribed": prescribed.get(ln.product_id),
                             "covered": (prescribed.get(ln.product_id, 0) >= ln.quantity)
                             if ln.rx_class == "rx" else None} for ln in order.lines]},
    }
    if pharmacist:
        if p.status == "pending":
            data["problems"] = [{"code": c, "message": m}
                                for c, m in services.review_problems(session, settings, p, order, today)]
        held = services.active_claim(session, p.id, now)
        data["claim"] = None if held is None else {
            "actor": held.actor, "user_id": held.user_id, "claimed_at": held.claimed_at.isoformat(),
            "expires_at": held.expires_at.isoformat(), "mine": held.user_id == caller.user_id}
        data["decisions"] = [{"action": d.action, "actor": d.actor, "licence_number": d.licence_number,
                              "reason_code": d.reason_code, "customer_message": d.customer_message, "note": d.note,
                              "created_at": d.created_at.isoformat()}
                             for d in services.decisions_of(session, p.id)]
    return data


def _summary(session, p: Prescription, order_by_id: dict, claims: dict, today: dt.date, now: dt.datetime) -> dict:
    order = order_by_id[p.order_id]
    held = claims.get(p.id)
    return {
        "id": p.id, "order_id": p.order_id, "store_id": p.store_id, "status": p.status,
        "patient_name": _mask_name(p.patient_name), "items": len(p.items),
        "rx_lines": len(services.rx_lines(order)), "order_total_fen": order.total_fen,
        "issue_date": p.issue_date.isoformat(), "valid_until": p.valid_until.isoformat(),
        "expired": today > p.valid_until, "submitted_at": p.submitted_at.isoformat(),
        "waiting_seconds": _seconds(p, now), "decided_at": p.decided_at.isoformat() if p.decided_at else None,
        "reason_code": p.reason_code, "customer_message": p.customer_message,
        "claimed_by": held.actor if held else None, "claim_expires_at": held.expires_at.isoformat() if held else None,
    }


def _read_upload(req, settings) -> tuple[dict[str, Any], bytes]:
    media = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media != "multipart/form-data":
        raise UnsupportedMediaType(f"send multipart/form-data with the file in a part named 'document', "
                                   f"not {media or 'no Content-Type'}")
    if req.content_length is None:
        raise LengthRequired("send the upload with a Content-Length header")
    fields: dict[str, Any] = {}
    data: bytes | None = None
    for part in req.get_media():
        name = part.name
        if name == "document":
            if data is not None:
                raise ValidationFailed.one("document", "attach one document per prescription")
            data = part.stream.read(settings.max_document_bytes + 1)
            if len(data) > settings.max_document_bytes:
                raise PayloadTooLarge(f"the document is larger than {settings.max_document_bytes} bytes",
                                      fields=[{"field": "document",
                                               "message": f"at most {settings.max_document_bytes} bytes"}])
        elif name in TEXT_FIELDS:
            if name in fields:
                raise ValidationFailed.one(name, "given twice")
            fields[name] = part.get_text()
        else:
            raise ValidationFailed.one(name or "form", f"unknown field; the form takes document and "
                                                       f"{', '.join(TEXT_FIELDS)}")
    if data is None:
        raise ValidationFailed.one("document", "is required: attach the prescription image (JPEG, PNG) or PDF")
    raw_items = fields.get("items")
    if isinstance(raw_items, str) and raw_items.strip():
        try:
            fields["items"] = json.loads(raw_items)
        except json.JSONDecodeError:
            raise ValidationFailed.one("items", 'must be JSON: [{"product_id": 1, "quantity": 2}]') from None
    return fields, data


def _upload_limit(ctx) -> int:
    return settings_of(ctx.config).max_document_bytes + FORM_OVERHEAD_BYTES


UPLOAD_DOC = """A `multipart/form-data` form: `document` (the prescription as JPEG, PNG or PDF — the type is checked
by content; at most `prescription_review.max_document_bytes`, 10 MiB by default), `patient_name`,
`patient_id_number` (18-character resident ID), `relationship` (the buyer to the patient: self, spouse, parent,
child, relative, guardian, other), `prescriber`, `institution`, `prescription_number`, `issue_date`
(YYYY-MM-DD, Asia/Shanghai), optional `extension_note` (the prescriber's note extending validity to at most 3
days), and `items`: JSON `[{"product_id": 1, "quantity": 2, "dosage": "..."}]`. The items must cover the
order's Rx lines (same products — no substitution — and at least the ordered quantities). The same
prescription (institution and number) or the same document already approved, or waiting for review on another
order, is refused (409). Sending the identical upload again answers 200 with the pending prescription."""

UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["document", "patient_name", "patient_id_number", "relationship", "prescriber",
                                   "institution", "prescription_number", "issue_date", "items"],
    "properties": {
        "document": {"type": "string", "format": "binary", "description": "JPEG, PNG or PDF"},
        "patient_name": {"type": "string", "maxLength": 100},
        "patient_id_number": {"type": "string", "maxLength": 18},
        "relationship": {"type": "string", "enum": list(RELATIONSHIPS)},
        "prescriber": {"type": "string", "maxLength": 100},
        "institution": {"type": "string", "maxLength": 200},
        "prescription_number": {"type": "string", "maxLength": 64},
        "issue_date": {"type": "string", "format": "date"},
        "extension_note": {"type": "string", "maxLength": 500},
        "items": {"type": "string", "description": 'JSON: [{"product_id": 1, "quantity": 2, "dosage": "..."}]'},
    }}}}}}


# ---------------------------------------------------------------- resources

class OrderPrescription:
    @operation("prescriptions.submit", roles=STAFF + ("customer",), response=SubmittedOut, status=201, tags=TAGS,
               summary="Upload the prescription of an order held for review", description=UPLOAD_DOC,
               errors=(400, 409, 411, 413, 415, 422), raw_body=True, idempotency="none",
               max_body_bytes=_upload_limit, extra={**UPLOAD_BODY, "x-also-status": [200]})
    def on_post(self, req, resp, order_id):
        ctx, caller, session = req.context.ctx, req.context.caller, req.context.session
        from core.api.access import check_order
        from core.orders import get_order
        check_order(caller, get_order(session, order_id))  # 404/403 before reading anyone's upload
        fields, data = _read_upload(req, settings_of(ctx.config))
        p, created = services.submit(ctx, session, order_id, caller, fields, data)
        resp.status = 201 if created else 200
        resp.location = f"{V1}/prescriptions/{p.id}"
        resp.media = {  # no personal data: the record itself is read through GET (logged)
            "id": p.id, "order_id": p.order_id, "status": p.status, "submitted_at": p.submitted_at.isoformat(),
            "valid_until": p.valid_until.isoformat(),
            "document": {"sha256": p.document.sha256, "media_type": p.document.media_type,
                         "size_bytes": p.document.size_bytes, "url": f"{V1}/prescriptions/{p.id}/document"},
            "items": [{"product_id": i.product_id, "product_name": i.product_name, "quantity": i.quantity,
                       "dosage": i.dosage} for i in p.items]}


class Prescriptions:
    @operation("prescriptions.list", roles=READERS, query=PrescriptionQuery, response=PrescriptionPage, tags=TAGS,
               summary="The review queue (oldest first, with waiting time)",
               description="Pharmacists see their store's prescriptions (`status=pending` is the queue); a "
                           "pharmacist bound to no store passes `store_id`. Customers see their own. Names are "
                           "masked here; open one to read it (logged).")
    def on_get(self, req, resp):
        from core.models import Order
        from sqlalchemy import select
        from .models import Claim
        q, session, caller = req.context.query, req.context.session, req.context.caller
        settings = settings_of(req.context.ctx.config)
        page = services.list_prescriptions(session, caller, status=q.status, store_id=q.store_id,
                                           after=decode_cursor(q.cursor), limit=q.limit)
        now = utcnow()
        ids = [p.id for p in page.items]
        order_by_id = {o.id: o for o in session.scalars(select(Order).where(
            Order.id.in_([p.order_id for p in page.items])))} if ids else {}
        claims = {c.prescription_id: c for c in session.scalars(select(Claim).where(
            Claim.prescription_id.in_(ids), Claim.expires_at > now))} if ids else {}
        today = settings.today(now)
        resp.media = page_body([_summary(session, p, order_by_id, claims, today, now) for p in page.items],
                               page.next_after)


class PrescriptionResource:
    @operation("prescriptions.get", roles=READERS, response=PrescriptionOut, tags=TAGS, writes=True,
               summary="One prescription beside its order's lines (the read is logged)", errors=(404,))
    def on_get(self, req, resp, prescription_id):
        session, caller = req.context.session, req.context.caller
        p = services.get_for(session, prescription_id, caller)
        services.log_access(session, p, caller, "view", req.context.request_id)
        resp.media = _detail(req, p)


class PrescriptionDocument:
    @operation("prescriptions.document", roles=READERS, tags=TAGS, writes=True,
               summary="The uploaded prescription image or PDF (the read is logged)", errors=(404,),
               extra={"x-content-type": sorted(documents.EXTENSIONS)})
    def on_get(self, req, resp, prescription_id):
        session, caller = req.context.session, req.context.caller
        p = services.get_for(session, prescription_id, caller)
        data = documents.read(settings_of(req.context.ctx.config), p.document)
        services.log_access(session, p, caller, "document", req.context.request_id)
        ext = documents.EXTENSIONS.get(p.document.media_type, "bin")
        resp.content_type = p.document.media_type
        resp.set_header("Content-Disposition", f'inline; filename="prescription-{p.id}.{ext}"')
        resp.set_header("Cache-Control", "no-store, private")
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Content-Security-Policy", "default-src 'none'; sandbox")
        resp.set_header("ETag", f'"{p.document.sha256}"')
        resp.data = data


class PrescriptionAccessLog:
    @operation("prescriptions.access_log", roles=("admin",), query=PageQuery, response=AccessPage, tags=TAGS,
               summary="Who read a prescription or its document, oldest first", errors=(404,))
    def on_get(self, req, resp, prescription_id):
        from core.errors import NotFound
        session, q = req.context.session, req.context.query
        if session.get(Prescription, prescription_id) is None:
            raise NotFound(f"prescription {prescription_id} does not exist")
        page = services.access_log_of(session, prescription_id, decode_cursor(q.cursor), q.limit)
        resp.media = page_body([{"id": a.id, "action": a.action, "actor": a.actor, "role": a.role,
                                 "request_id": a.request_id, "created_at": a.created_at.isoformat()}
                                for a in page.items], page.next_after)


class PrescriptionClaim:
    @operation("prescriptions.claim", roles=PHARMACIST, response=RxClaimOut, tags=TAGS, idempotency="none",
               summary="Take the review of a pending prescription for a while",
               description="A licensed pharmacist of the prescription's store; renewing one's own claim extends "
                           "it; another pharmacist's live claim is a 409.", errors=(404, 409))
    def on_post(self, req, resp, prescription_id):
        caller = req.context.caller
        c = services.claim(req.context.ctx, req.context.session, prescription_id, caller)
        resp.media = {"actor": c.actor, "user_id": c.user_id, "claimed_at": c.claimed_at.isoformat(),
                      "expires_at": c.expires_at.isoformat(), "mine": c.user_id == caller.user_id}


class PrescriptionApprove:
    @operation("prescriptions.approve", roles=PHARMACIST, body=ApproveBody, response=PrescriptionOut, tags=TAGS,
               summary="Approve: the order may be paid",
               description="Only a pharmacist whose profile records a licence number, a licence expiry not "
                           "before today and the prescription's store (else 403). Refused (422, with the "
                           "`reason_codes` to reject with) when the prescription expired, does not cover the "
                           "order's Rx lines or was used already; 409 when it was decided meanwhile.",
               errors=(404, 409, 422))
    def on_post(self, req, resp, prescription_id):
        body = req.context.body
        p = services.approve(req.context.ctx, req.context.session, prescription_id, req.context.caller,
                             body.note or "")
        services.log_access(req.context.session, p, req.context.caller, "view", req.context.request_id)
        resp.media = _detail(req, p)


class PrescriptionReject:
    @operation("prescriptions.reject", roles=PHARMACIST, body=RejectBody, response=PrescriptionOut, tags=TAGS,
               summary="Reject with a coded reason: the order is cancelled and the customer told why",
               description="The order is cancelled (its stock released) and a `customer.notify` message "
                           "(`prescription.rejected`) is queued; the customer may order again with a new "
                           "prescription.", errors=(404, 409, 422))
    def on_post(self, req, resp, prescription_id):
        body = req.context.body
        p = services.reject(req.context.ctx, req.context.session, prescription_id, req.context.caller,
                            body.reason_code, body.message, body.note or "")
        services.log_access(req.context.session, p, req.context.caller, "view", req.context.request_id)
        resp.media = _detail(req, p)


class Reasons:
    @operation("prescriptions.reasons", roles=STAFF + ("customer",), response=ReasonList, tags=TAGS,
               summary="The coded reasons a prescription is rejected with")
    def on_get(self, req, resp):
        resp.media = {"items": [r._asdict() for r in REASONS.values()]}


def _banlist_out(session, settings) -> dict:
    found = banlist.in_force(session, settings)
    return {"version": found.version, "title": found.title, "source": found.source, "origin": found.origin,
            "sha256": found.sha256, "entries": found.document.get("entries", []),
            "history": [{"version": v.version, "sha256": v.sha256, "source": v.source, "loaded_by": v.loaded_by,
                         "loaded_at": v.loaded_at.isoformat()} for v in banlist.versions(session)]}


class BanListResource:
    @operation("prescriptions.banlist.get", roles=STAFF, response=BanListOut, tags=TAGS,
               summary="The online-sale ban list in force, and every loaded version")
    def on_get(self, req, resp):
        resp.media = _banlist_out(req.context.session, settings_of(req.context.ctx.config))

    @operation("prescriptions.banlist.load", roles=("admin",), body=BanListBody, response=BanListOut, status=201,
               tags=TAGS, summary="Load a new version of the ban list (in force at once; audited)",
               description="A version id is used once: the same document again is a no-op (200), other content "
                           "under a used version is a 409.", errors=(409,), idempotency="none")
    def on_post(self, req, resp):
        session = req.context.session
        document = req.context.body.model_dump()
        before = len(banlist.versions(session))
        banlist.store_version(session, document, req.context.caller, source=f"API upload by {req.context.caller.actor}")
        resp.status = 201 if len(banlist.versions(session)) > before else 200
        resp.media = _banlist_out(session, settings_of(req.context.ctx.config))


def routes() -> list[tuple[str, object]]:
    item = f"{V1}/prescriptions/{{prescription_id:{ID}}}"
    return [
        (f"{V1}/orders/{{order_id:{ID}}}/prescription", OrderPrescription()),
        (f"{V1}/prescriptions", Prescriptions()),
        (f"{V1}/prescriptions/reasons", Reasons()),
        (f"{V1}/prescriptions/banlist", BanListResource()),
        (item, PrescriptionResource()),
        (f"{item}/document", PrescriptionDocument()),
        (f"{item}/access-log", PrescriptionAccessLog()),
        (f"{item}/claim", PrescriptionClaim()),
        (f"{item}/approve", PrescriptionApprove()),
        (f"{item}/reject", PrescriptionReject()),
    ]
