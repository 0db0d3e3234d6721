"""The pos_sync REST resources: terminal management for store staff, catalogue and sales for terminals.

Terminals do not hold staff tokens: they authenticate with their own secret
(``Authorization: Bearer pos_...``) and name their local database
(``X-POS-Database-Id``). The core's auth middleware resolves only staff and
customer tokens, so the terminal operations are declared ``public`` to it and
authenticate the terminal themselves, first thing, through
:func:`plugins.pos_sync.devices.authenticate`; the API document still shows
them as bearer-protected and admitting the role ``device``.

The terminal operations manage their own transactions (a sales batch
commits chunk by chunk), so they never open the request's unit of work.
"""
from __future__ import annotations

import json

from core.api import operation
from core.api.errors import MalformedJson, Unauthorized
from core.api.operations import read_json_body
from core.api.pagination import decode_cursor, page_body

from . import catalog, devices, reports, sales
from .devices import device_caller
from .models import PosDevice
from .schemas import (CatalogPage, CatalogQuery, DeviceCreate, DeviceCredentials, DeviceOut, DevicePage, DeviceQuery,
                      DiscrepancyOut, DiscrepancyPage, FlagOut, FlagPage, FlagQuery, NoteBody, ReviewQuery,
                      RevokeBody, SalesBatchIn, SalesBatchOut, SyncStatusOut, SyncStatusQuery)

__all__ = ["routes"]

V1 = "/api/v1/pos"
ID = "int(min=1, max=9223372036854775807)"
MANAGERS = ("admin", "store_manager")
TAGS = ("pos",)
SCOPE = "A store manager acts on their own store's terminals only (another store's: 403)."
TERMINAL_DOC = (
    "**Terminals only** (role `device`): send `Authorization: Bearer <terminal secret>` (from "
    "POST /api/v1/pos/devices) and `X-POS-Database-Id: <the terminal's database id>`. 401 for an unknown "
    "secret; 403 `pos-device-refused` for a revoked terminal or a known secret from another terminal "
    "database (a restored or cloned terminal: re-register it).")


def _terminal_doc(text: str) -> dict:
    """OpenAPI keys of a terminal operation (the core would document it as public)."""
    return {"description": f"{text}\n\n{TERMINAL_DOC}", "security": [{"bearerAuth": []}], "x-public": False,
            "x-roles": ["device"]}


CATALOG_DOC = ("Pull until `has_more` is false, storing `next_cursor` with each page; an unknown cursor "
               "answers a full resync (`reset: true`).")
BATCH_DOC = ("Up to 500 sales. Each sale is idempotent by its `client_sale_id`: re-sending returns `duplicate` "
             "with the stored result; the same id with other content is `rejected` and flagged for review. A "
             "malformed or refused sale is rejected alone, never its batch. Sales are committed in chunks before "
             "the answer: after a lost answer, re-send the whole batch.")


def _terminal(req) -> PosDevice:
    """The terminal behind the request, authenticated with its own credentials."""
    header = req.get_header("Authorization")
    scheme, _, secret = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("a terminal sends 'Authorization: Bearer <terminal secret>'")
    device = devices.authenticate(req.context.ctx, secret.strip(), req.get_header("X-POS-Database-Id"))
    if device is None:
        raise Unauthorized("the terminal secret is unknown (a re-registration replaces it)")
    req.context.caller = device_caller(device)
    return device


def _credentials(device, creds) -> dict:
    return {**devices.serialize_device(device), "secret": creds.secret}


class Devices:
    @operation("pos.devices.list", roles=MANAGERS, query=DeviceQuery, response=DevicePage, tags=TAGS,
               summary="List POS terminals", description=SCOPE, errors=(403,))
    def on_get(self, req, resp):
        q = req.context.query
        page = devices.list_devices(req.context.session, req.context.caller, store_id=q.store_id,
                                    after=decode_cursor(q.cursor), limit=q.limit)
        resp.media = page_body([devices.serialize_device(d) for d in page.items], page.next_after)

    @operation("pos.devices.register", roles=MANAGERS, body=DeviceCreate, response=DeviceCredentials, status=201,
               tags=TAGS, idempotency="none", summary="Register a POS terminal for a store",
               description="Answers the terminal's secret once; only its hash is stored (so no Idempotency-Key "
                           "replay either: a retried registration makes another terminal, revoke the spare). "
                           + SCOPE, errors=(403,))
    def on_post(self, req, resp):
        b = req.context.body
        device, creds = devices.register(req.context.session, store_id=b.store_id, name=b.name,
                                         caller=req.context.caller)
        resp.status = 201
        resp.location = f"{V1}/devices/{device.id}"
        resp.media = _credentials(device, creds)


class DeviceItem:
    @operation("pos.devices.get", roles=MANAGERS, response=DeviceOut, tags=TAGS, summary="Get a POS terminal",
               description=SCOPE, errors=(403, 404))
    def on_get(self, req, resp, device_id):
        device = devices.managed_device(req.context.session, device_id, req.context.caller, lock=False)
        resp.media = devices.serialize_device(device)


class DeviceRevoke:
    @operation("pos.devices.revoke", roles=MANAGERS, body=RevokeBody, response=DeviceOut, tags=TAGS,
               summary="Revoke a POS terminal (lost, stolen, retired)",
               description="Every further request of the terminal is refused. " + SCOPE, errors=(403, 404))
    def on_post(self, req, resp, device_id):
        device = devices.revoke(req.context.session, device_id, req.context.caller, req.context.body.reason)
        resp.media = devices.serialize_device(device)


class DeviceReregister:
    @operation("pos.devices.reregister", roles=MANAGERS, response=DeviceCredentials, tags=TAGS, idempotency="none",
               summary="Issue a new secret and forget the bound terminal database",
               description="After a terminal was restored from a backup or replaced: the old secret stops "
                           "working, the next terminal database to call is bound. The terminal keeps its id and "
                           "history (re-sent sales stay duplicates). A revoked terminal cannot be re-registered. "
                           + SCOPE, errors=(403, 404))
    def on_post(self, req, resp, device_id):
        device, creds = devices.reregister(req.context.session, device_id, req.context.caller)
        resp.media = _credentials(device, creds)


class Catalog:
    @operation("pos.catalog", public=True, query=CatalogQuery, response=CatalogPage, tags=TAGS,
               summary="Pull the catalogue, prices, restrictions and the store's stock since a cursor",
               description=CATALOG_DOC, errors=(401, 403), extra=_terminal_doc(CATALOG_DOC))
    def on_get(self, req, resp):
        device = _terminal(req)
        q = req.context.query
        resp.media = catalog.pull(req.context.ctx, device, q.since, q.limit)


class SalesBatch:
    @operation("pos.sales.batch", public=True, body=SalesBatchIn, raw_body=True, response=SalesBatchOut,
               tags=TAGS, idempotency="model",
               summary="Upload offline sales: one result per sale (accepted, duplicate or rejected)",
               description=BATCH_DOC, errors=(401, 403), extra=_terminal_doc(BATCH_DOC))
    def on_post(self, req, resp):
        device = _terminal(req)
        raw = read_json_body(req)
        try:
            data = json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            raise MalformedJson(f"the body is not valid JSON: {exc}") from None
        resp.media = sales.upload(req.context.ctx, device, data)


class Discrepancies:
    @operation("pos.discrepancies.list", roles=MANAGERS, query=ReviewQuery, response=DiscrepancyPage, tags=TAGS,
               summary="Stock discrepancies raised by offline sales, newest first",
               description="An accepted offline sale that took more than the recorded on-hand. " + SCOPE,
               errors=(403,))
    def on_get(self, req, resp):
        q = req.context.query
        page = reports.list_discrepancies(req.context.session, req.context.caller, store_id=q.store_id,
                                          state=q.state, before=decode_cursor(q.cursor), limit=q.limit)
        resp.media = page_body([reports.serialize_discrepancy(d) for d in page.items], page.next_after)


class DiscrepancyResolve:
    @operation("pos.discrepancies.resolve", roles=MANAGERS, body=NoteBody, response=DiscrepancyOut, tags=TAGS,
               summary="Close a stock discrepancy with a note (audited)",
               description="Correcting the count is a separate stock adjustment. " + SCOPE, errors=(403, 404, 409))
    def on_post(self, req, resp, discrepancy_id):
        row = reports.resolve_discrepancy(req.context.session, discrepancy_id, req.context.caller,
                                          req.context.body.note)
        resp.media = reports.serialize_discrepancy(row)


class Flags:
    @operation("pos.flags.list", roles=MANAGERS, query=FlagQuery, response=FlagPage, tags=TAGS,
               summary="Uploads flagged for review, newest first",
               description="Kinds: content_mismatch (a known sale id with other content), stale_price, "
                           "clock_drift, sequence_reused, database_mismatch. " + SCOPE, errors=(403,))
    def on_get(self, req, resp):
        q = req.context.query
        page = reports.list_flags(req.context.session, req.context.caller, store_id=q.store_id, state=q.state,
                                  kind=q.kind, before=decode_cursor(q.cursor), limit=q.limit)
        resp.media = page_body([reports.serialize_flag(f) for f in page.items], page.next_after)


class FlagReview:
    @operation("pos.flags.review", roles=MANAGERS, body=NoteBody, response=FlagOut, tags=TAGS,
               summary="Mark a flag reviewed with a note (audited)", description=SCOPE, errors=(403, 404, 409))
    def on_post(self, req, resp, flag_id):
        row = reports.review_flag(req.context.session, flag_id, req.context.caller, req.context.body.note)
        resp.media = reports.serialize_flag(row)


class SyncStatus:
    @operation("pos.sync_status", roles=MANAGERS, query=SyncStatusQuery, response=SyncStatusOut, tags=TAGS,
               summary="Per terminal: last contact, queued/accepted/rejected counts, sequence gaps, lag",
               description=SCOPE, errors=(403,))
    def on_get(self, req, resp):
        resp.media = {"items": reports.sync_status(req.context.session, req.context.caller,
                                                   store_id=req.context.query.store_id)}


def routes() -> list[tuple[str, object]]:
    """``(uri_template, resource)`` of every pos_sync route (new resource objects each call)."""
    device = f"{V1}/devices/{{device_id:{ID}}}"
    return [
        (f"{V1}/devices", Devices()),
        (device, DeviceItem()),
        (f"{device}/revoke", DeviceRevoke()),
        (f"{device}/reregister", DeviceReregister()),
        (f"{V1}/catalog", Catalog()),
        (f"{V1}/sales:batch", SalesBatch()),
        (f"{V1}/discrepancies", Discrepancies()),
        (f"{V1}/discrepancies/{{discrepancy_id:{ID}}}/resolve", DiscrepancyResolve()),
        (f"{V1}/flags", Flags()),
        (f"{V1}/flags/{{flag_id:{ID}}}/review", FlagReview()),
        (f"{V1}/sync-status", SyncStatus()),
    ]
