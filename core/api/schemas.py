"""Request and response schemas (pydantic v2): one source for validation and the API document.

Request bodies are strict (``"5"`` is not an integer, ``1.0`` is not either)
and refuse unknown fields; query parameters arrive as strings and are
converted; responses allow extra fields because plugins add some (through
``product_serialize``, order ``extra``...).
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, create_model

from ..models import ORDER_STATUSES

__all__ = [name for name in dir() if not name.startswith("_")]  # refined at the end of the module

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
Fen = Annotated[int, Field(ge=0, le=10**12, description="an amount in fen (1/100 yuan)")]
RoleName = Literal["admin", "store_manager", "pharmacist", "clerk"]
RxClass = Literal["rx", "otc_a", "otc_b"]
OrderStatus = Literal[ORDER_STATUSES]  # type: ignore[valid-type]
MovementKind = Literal["receipt", "adjustment", "sale", "reservation", "release", "transfer_out", "transfer_in",
                       "return"]


def Text(max_length: int, min_length: int = 0, **kw) -> Any:  # noqa: N802 - reads like a type
    return Annotated[str, Field(min_length=min_length, max_length=max_length, **kw)]


class Body(BaseModel):
    """Base of request bodies: strict types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """Base of query parameters: converted from strings, unknown parameters refused."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    """Base of responses: plugins may add fields."""

    model_config = ConfigDict(extra="allow", from_attributes=True)


# ----------------------------------------------------------------- shared

class ProblemField(BaseModel):
    field: str = Field(description="the failing field: a body path (lines[1].quantity), parameter or header")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="a stable URI naming the kind of problem")
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[ProblemField] | None = Field(None, description="the failing fields of a validation problem")


class PageQuery(Query):
    limit: int = Field(50, ge=1, le=200, description="page size (at most 200)")
    cursor: str | None = Field(None, max_length=200, description="next_cursor of the previous page")


def page_of(item: type[BaseModel], name: str) -> type[BaseModel]:
    """``{items: [item], next_cursor}``: one page of a list."""
    return create_model(name, __base__=Out, items=(list[item], ...),
                        next_cursor=(str | None, Field(None, description="pass as cursor for the next page; "
                                                                       "null on the last page")))


# ------------------------------------------------------------------- auth

class TokenRequest(Body):
    username: Text(64, 1)
    password: Text(200, 1)


class TokenOut(Out):
    token: str = Field(description="send as Authorization: Bearer <token>")
    expires_at: AwareDatetime
    role: str


class MeOut(Out):
    role: str
    user_id: int | None = None
    customer_id: int | None = None
    store_id: int | None = None
    name: str = ""


# ------------------------------------------------------------------- meta

class HealthDatabase(Out):
    ok: bool
    dialect: str
    error: str | None = None


class HealthLicense(Out):
    state: Literal["none", "valid", "expired"]
    chain: str | None = None
    expires: dt.date | None = None
    modules: list[str] | None = None


class HealthOut(Out):
    status: Literal["ok", "unavailable"]
    version: str
    database: HealthDatabase
    plugins: list[str]
    license: HealthLicense


class PluginOut(Out):
    name: str
    version: str
    summary: str
    depends: list[str]
    enabled: bool
    licensed: bool
    hooks: list[str]


class PluginList(Out):
    items: list[PluginOut]


# ----------------------------------------------------------------- stores

class StoreCreate(Body):
    code: Text(32, 1)
    name: Text(200, 1)
    address: Text(500) | None = None
    phone: Text(40) | None = None
    active: bool = True


class StoreUpdate(Body):
    name: Text(200, 1) | None = None
    address: Text(500) | None = None
    phone: Text(40) | None = None
    active: bool | None = None


class StoreOut(Out):
    id: int
    code: str
    name: str
    address: str
    phone: str
    active: bool
    created_at: AwareDatetime
    updated_at: AwareDatetime


class StoreQuery(PageQuery):
    active: bool | None = None


StorePage = page_of(StoreOut, "StorePage")


# --------------------------------------------------------------- products

class ProductFields(Body):
    barcode: Text(64) | None = None
    brand_name: Text(200) | None = None
    specification: Text(200) | None = None
    pack: Text(100) | None = None
    dosage_form: Text(100) | None = None
    manufacturer: Text(200) | None = None
    mah: Text(200, description="marketing-authorisation holder") | None = None
    category: Text(100) | None = None
    ephedrine: bool | None = None
    online_banned: bool | None = None
    cold_chain: bool | None = None
    storage: Text(200) | None = None
    package_insert: Text(100_000) | None = None
    active: bool | None = None


class ProductCreate(ProductFields):
    sku: Text(64, 1)
    generic_name: Text(200, 1)
    approval_number: Text(64, 1, description="批准文号, e.g. 国药准字H20000001")
    rx_class: RxClass
    price_fen: Fen


class ProductUpdate(ProductFields):
    sku: Text(64, 1) | None = None
    generic_name: Text(200, 1) | None = None
    approval_number: Text(64, 1) | None = None
    rx_class: RxClass | None = None
    price_fen: Fen | None = None


class ProductOut(Out):
    id: int
    sku: str
    barcode: str | None
    generic_name: str
    brand_name: str
    specification: str
    pack: str
    dosage_form: str
    manufacturer: str
    mah: str
    approval_number: str
    category: str
    rx_class: RxClass
    ephedrine: bool
    online_banned: bool
    cold_chain: bool
    storage: str
    package_insert: str | None = Field(description="null when the channel withholds it (Rx before review)")
    price_fen: int
    active: bool
    purchasable: bool = Field(description="whether this caller may buy it on this channel")
    updated_at: str | None
    rx_notice: str | None = None


class ProductQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="search generic or brand name, SKU, barcode")
    rx_class: RxClass | None = None
    category: str | None = Field(None, max_length=100)
    active: bool | None = Field(None, description="staff only: filter by the active flag")
    channel: str | None = Field(None, max_length=40, description="the sales channel whose rules apply "
                                "(customers: an online channel, default web; staff: default store)")


class ChannelQuery(Query):
    channel: str | None = Field(None, max_length=40, description="as for the product list")


ProductPage = page_of(ProductOut, "ProductPage")


# -------------------------------------------------------------- customers

class CustomerCreate(Body):
    name: Text(100) | None = None
    phone: Text(40) | None = None
    openid: Text(64) | None = None
    unionid: Text(64) | None = None
    store_id: Id | None = None


class CustomerOut(Out):
    id: int
    name: str
    phone: str | None
    openid: str | None
    unionid: str | None
    store_id: int | None
    created_at: AwareDatetime


class CustomerQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="search name or phone")
    store_id: Id | None = None


CustomerPage = page_of(CustomerOut, "CustomerPage")


# ------------------------------------------------------------------ users

class UserCreate(Body):
    username: Text(64, 3)
    password: Text(200, 8)
    role: RoleName
    display_name: Text(100) | None = None
    store_id: Id | None = None
    licence_number: Text(64) | None = None
    licence_expiry: dt.date | None = None
    active: bool = True


class UserUpdate(Body):
    password: Text(200, 8) | None = None
    role: RoleName | None = None
    display_name: Text(100) | None = None
    store_id: Id | None = None
    licence_number: Text(64) | None = None
    licence_expiry: dt.date | None = None
    active: bool | None = None


class UserOut(Out):
    id: int
    username: str
    role: str
    display_name: str
    store_id: int | None
    licence_number: str | None
    licence_expiry: dt.date | None
    active: bool
    created_at: AwareDatetime


class UserQuery(PageQuery):
    role: RoleName | None = None
    store_id: Id | None = None
    active: bool | None = None


UserPage = page_of(UserOut, "UserPage")


# ------------------------------------------------------------------ stock

class ReceiptCreate(Body):
    product_id: Id
    lot_no: Text(64, 1)
    expiry: dt.date = Field(description="YYYY-MM-DD; must be in the future")
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    reference: Text(100) | None = Field(None, description="delivery note or purchase order number")


class AdjustmentCreate(Body):
    lot_id: Id
    delta: Annotated[int, Field(ge=-1_000_000, le=1_000_000, description="units to add (negative removes)")]
    reason: Text(500, 1)


class TransferCreate(Body):
    lot_id: Id
    to_store_id: Id
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]


class LotOut(Out):
    lot_id: int
    lot_no: str
    expiry: dt.date
    on_hand: int
    reserved: int
    available: int = Field(description="sellable now: unreserved units of an unexpired lot")
    expired: bool


class StockProductOut(Out):
    product_id: int
    sku: str
    generic_name: str
    specification: str
    on_hand: int
    reserved: int
    available: int
    lots: list[LotOut]


class StockQuery(PageQuery):
    product_id: Id | None = None
    include_empty: bool = Field(False, description="also list lots with nothing on hand")


StockPage = page_of(StockProductOut, "StockPage")


class MovementOut(Out):
    id: int
    store_id: int
    product_id: int
    lot_id: int
    kind: str
    on_hand_delta: int
    reserved_delta: int
    reason: str
    order_id: int | None
    reference: str | None
    actor: str
    created_at: AwareDatetime


class MovementWithLot(Out):
    movement: MovementOut
    lot: LotOut


class TransferOut(Out):
    transfer_out: MovementOut
    transfer_in: MovementOut


class MovementQuery(PageQuery):
    product_id: Id | None = None
    kind: MovementKind | None = None


MovementPage = page_of(MovementOut, "MovementPage")


# ----------------------------------------------------------------- orders

class OrderLineIn(Body):
    product_id: Id
    quantity: Annotated[int, Field(ge=1, le=10_000)]


class OrderCreateBase(Body):
    """The core's order request; plugins add fields (``order_request_fields``)."""

    store_id: Id
    customer_id: Id | None = Field(None, description="staff: the buying customer (optional); "
                                                       "customers: omitted or their own id")
    channel: Text(40, 1) = Field(description="a registered sales channel (store, web, ...)")
    fulfilment: Literal["pickup", "delivery"]
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=100)]
    delivery_address: Text(500) | None = None
    note: Text(500) | None = None


class AllocationOut(Out):
    lot_id: int
    lot_no: str
    expiry: dt.date
    quantity: int


class OrderLineOut(Out):
    id: int
    product_id: int
    product_name: str
    rx_class: str
    quantity: int
    unit_price_fen: int
    line_total_fen: int
    allocations: list[AllocationOut]


class AdjustmentOut(Out):
    code: str
    label: str
    amount_fen: int


class OrderOut(Out):
    id: int
    status: OrderStatus
    store_id: int
    customer_id: int | None
    channel: str
    fulfilment: Literal["pickup", "delivery"]
    subtotal_fen: int
    adjustments_fen: int
    total_fen: int
    hold_reasons: list[str]
    delivery_address: str | None
    note: str | None
    payment_provider: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    paid_at: AwareDatetime | None
    expires_at: AwareDatetime | None
    extra: dict[str, Any]
    lines: list[OrderLineOut]
    adjustments: list[AdjustmentOut]
    pickup_code: str | None = Field(None, description="only shown to the customer who placed the order")


class OrderQuery(PageQuery):
    status: OrderStatus | None = None
    store_id: Id | None = None
    customer_id: Id | None = Field(None, description="staff only")


OrderPage = page_of(OrderOut, "OrderPage")


class ReasonBody(Body):
    reason: Text(500, 1)


class PayBody(Body):
    provider: Text(40, 1) = Field(description="a registered payment provider (cash, manual, ...)")
    amount_fen: Fen | None = Field(None, description="must equal the order total when given")
    reference: Text(100) | None = None


class CompleteBody(Body):
    pickup_code: Text(12) | None = Field(None, description="required for a pickup order: the code the customer shows")


# ------------------------------------------------------------------ audit

class AuditOut(Out):
    id: int
    at: AwareDatetime
    actor: str
    action: str
    entity: str
    entity_id: str | None
    before: Any = None
    after: Any = None
    detail: str


def _iso_time(value):
    """A query parameter's time must be ISO 8601 text: pydantic would also take a number as Unix
    seconds (``until=122804703281025``), which the schema (``format: date-time``) does not allow."""
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO 8601 time with its UTC offset, e.g. 2026-11-26T09:30:00+08:00") from None
    return value


#: a time given as a query parameter: ISO 8601 with its UTC offset
IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_time)]


class AuditQuery(PageQuery):
    actor: str | None = Field(None, max_length=100)
    action: str | None = Field(None, max_length=100)
    entity: str | None = Field(None, max_length=100)
    entity_id: str | None = Field(None, max_length=100)
    since: IsoTime | None = Field(None, description="inclusive, ISO-8601 with offset")
    until: IsoTime | None = Field(None, description="exclusive, ISO-8601 with offset")


AuditPage = page_of(AuditOut, "AuditPage")

__all__ = sorted(name for name, value in globals().items()
                 if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == __name__)
