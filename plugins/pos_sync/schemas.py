"""Request and response schemas of the pos_sync API (they feed /api/v1/openapi.json)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field

from core.api.schemas import Body, Out, PageQuery, Query, page_of

from .catalog import DEFAULT_PAGE, MAX_PAGE
from .models import FLAG_KINDS
from .sales import MAX_BATCH, MAX_QUEUED, PAYMENT_METHODS

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
ClientId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
Fen = Annotated[int, Field(ge=0, le=10**12, description="an amount in fen (1/100 yuan)")]


# ---------------------------------------------------------------- devices

class DeviceCreate(Body):
    store_id: Id = Field(description="the store the terminal sells for")
    name: Annotated[str, Field(min_length=1, max_length=100, description="e.g. 'Counter 1'")]


class DeviceOut(Out):
    id: int
    store_id: int
    name: str
    status: Literal["active", "revoked"]
    database_bound: bool = Field(description="whether a terminal database has been bound by a first contact")
    registered_by: str
    registered_at: AwareDatetime
    revoked_at: AwareDatetime | None
    revoke_reason: str | None
    last_contact_at: AwareDatetime | None
    last_upload_at: AwareDatetime | None


class DeviceCredentials(DeviceOut):
    secret: str = Field(description="the terminal's bearer secret: shown this once, stored only hashed")


class DeviceQuery(PageQuery):
    store_id: Id | None = None


class RevokeBody(Body):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


DevicePage = page_of(DeviceOut, "PosDevicePage")


# ---------------------------------------------------------------- catalogue

class CatalogQuery(Query):
    since: str | None = Field(None, max_length=2000, description="next_cursor of the previous page or pull; "
                                                                 "omitted: everything")
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description=f"rows per page (at most {MAX_PAGE})")


class OfflineRestrictions(Out):
    allowed: bool
    reasons: list[str]
    needs_prescription: bool = Field(description="Rx: the sale needs the id of a prescription approved online")
    needs_buyer_id: bool = Field(description="ephedrine: the buyer's resident ID goes in the register")
    max_units_per_sale: int | None


class OnlineRestrictions(Out):
    allowed: bool
    reasons: list[str]


class Restrictions(Out):
    offline: OfflineRestrictions
    online: OnlineRestrictions


class CatalogProduct(Out):
    id: int
    sku: str
    barcode: str | None
    generic_name: str
    brand_name: str
    specification: str
    rx_class: Literal["rx", "otc_a", "otc_b"]
    ephedrine: bool
    online_banned: bool
    active: bool
    price_fen: int
    price_list_version: int | None = Field(description="the price-list version this price belongs to")
    updated_at: AwareDatetime
    restrictions: Restrictions


class CatalogLot(Out):
    lot_id: int
    product_id: int
    lot_no: str
    expiry: str
    on_hand: int
    reserved: int
    available: int
    sellable: bool


class CatalogPage(Out):
    reset: bool = Field(description="true: the cursor was unknown; drop the local catalogue, this is a full resync")
    store_id: int
    price_list_version: int
    products: list[CatalogProduct]
    stock: list[CatalogLot] = Field(description="the terminal's store lots changed since the cursor")
    next_cursor: str = Field(description="store it with this page; send it as `since` next time")
    has_more: bool = Field(description="true: pull again at once with next_cursor")
    server_time: AwareDatetime


# ---------------------------------------------------------------- sales

class SaleLineIn(Body):
    line_id: ClientId = Field(description="client-generated, unique within the sale")
    product_id: Id
    quantity: Annotated[int, Field(ge=1, le=10_000)]
    unit_price_fen: Fen = Field(description="the price charged per unit")
    price_list_version: Annotated[int, Field(ge=0)] = Field(description="the price-list version the terminal used")
    lot_no: Annotated[str, Field(max_length=64)] | None = Field(None, description="the lot scanned, if any")


class PaymentIn(Body):
    method: Literal[PAYMENT_METHODS]  # type: ignore[valid-type]
    amount_fen: Annotated[int, Field(ge=1, le=10**12)]
    reference: Annotated[str, Field(max_length=100)] | None = None


class SaleIn(Body):
    client_sale_id: ClientId = Field(description="client-generated id: the key that makes a re-send harmless")
    device_seq: Annotated[int, Field(ge=0)] = Field(description="the terminal's own running sale number")
    sold_at: AwareDatetime = Field(description="the terminal's clock at the sale, with its UTC offset")
    lines: Annotated[list[SaleLineIn], Field(min_length=1, max_length=100)]
    payments: Annotated[list[PaymentIn], Field(min_length=1)] = Field(description="must add up to the lines")
    customer_id: Id | None = None
    buyer_id_number: Annotated[str, Field(max_length=18)] | None = Field(
        None, description="ephedrine-containing products: the buyer's 18-digit resident ID")
    prescription_id: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="Rx lines: the id of a prescription approved online")
    note: Annotated[str, Field(max_length=500)] | None = None


class SalesBatchIn(Body):
    sales: Annotated[list[SaleIn], Field(min_length=1, max_length=MAX_BATCH)] = Field(
        description="each sale is checked on its own: a malformed one is rejected alone")
    device_time: AwareDatetime | None = Field(None, description="the terminal's clock when sending (drift check)")
    queued: Annotated[int, Field(ge=0, le=MAX_QUEUED)] | None = Field(
        None, description="sales queued on the terminal, this batch included (for sync-status)")


class SaleDiscrepancy(Out):
    line_id: str
    product_id: int
    short: int


class SaleResult(Out):
    client_sale_id: str | None
    status: Literal["accepted", "duplicate", "rejected", "deferred"] = Field(
        description="deferred: not processed within the request's time budget; send it again")
    sale_id: int | None = None
    order_id: int | None = None
    total_fen: int | None = None
    flags: list[str] = []
    discrepancies: list[SaleDiscrepancy] = []
    reason: str | None = None


class SalesBatchOut(Out):
    results: list[SaleResult] = Field(description="one per sale, in the order sent")
    accepted: int
    duplicate: int
    rejected: int
    deferred: int
    server_time: AwareDatetime
    price_list_version: int
    clock_offset_s: int | None


# ---------------------------------------------------------------- review

class ReviewQuery(PageQuery):
    store_id: Id | None = None
    state: Literal["open", "resolved", "all"] = "open"


class FlagQuery(ReviewQuery):
    kind: Literal[FLAG_KINDS] | None = None  # type: ignore[valid-type]  # an unknown kind is a 422, not an empty list


class NoteBody(Body):
    note: Annotated[str, Field(min_length=1, max_length=500)]


class DiscrepancyOut(Out):
    id: int
    store_id: int
    product_id: int
    device_id: int
    sale_id: int
    order_id: int
    client_sale_id: str
    line_id: str
    quantity_short: int
    created_at: AwareDatetime
    resolved_at: AwareDatetime | None
    resolved_by: str | None
    note: str | None


class FlagOut(Out):
    id: int
    kind: str
    store_id: int
    device_id: int
    sale_id: int | None
    client_sale_id: str | None
    detail: str
    payload: Any = None
    created_at: AwareDatetime
    reviewed_at: AwareDatetime | None
    reviewed_by: str | None


DiscrepancyPage = page_of(DiscrepancyOut, "PosDiscrepancyPage")
FlagPage = page_of(FlagOut, "PosFlagPage")


class SyncStatusQuery(Query):
    store_id: Id | None = None


class TerminalStatus(Out):
    device_id: int
    name: str
    store_id: int
    status: str
    last_contact_at: AwareDatetime | None
    last_upload_at: AwareDatetime | None
    since_last_contact_s: int | None
    queued: int = Field(description="sales the terminal still had queued at its last upload")
    accepted: int
    rejected: int
    last_sequence: int | None
    sequence_gaps: int = Field(description="device sequence numbers not received between the first and last")
    lag_s: int | None = Field(description="at the last upload: receive time minus the oldest accepted sale's time")
    clock_offset_s: int | None
    open_flags: int
    open_discrepancies: int


class SyncStatusOut(Out):
    items: list[TerminalStatus]
