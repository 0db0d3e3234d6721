"""The product catalogue: validation of drug fields, create/update, and what a
channel may show and sell (through the product hooks)."""
from __future__ import annotations

import operator
import re
import unicodedata
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, attributes

from . import audit, bulk
from .auth import Caller
from .errors import Forbidden, NotFound, ValidationFailed
from .listing import Page, keyset, like_pattern
from .models import RX_CLASSES, Product

__all__ = ["APPROVAL_NUMBER_RE", "validate_product_fields", "create_product", "update_product",
           "serialize_product", "visible", "get_product", "PRODUCT_COLUMNS", "sale_refusals", "PRODUCT_FIELDS", "RX_NOTICE", "list_products"]

#: 国药准字 + class letter (H chemical, Z TCM, S biological, J/B/T/F others),
#: optional J (imported) / C (HK, Macao, Taiwan), then 8 digits.
APPROVAL_NUMBER_RE = re.compile(r"^国药准字[HZSJBTF][JC]?[0-9]{8}$")
RX_NOTICE = "处方药须凭处方在药师指导下购买和使用"

PRODUCT_FIELDS = (
    "sku", "barcode", "generic_name", "brand_name", "specification", "pack", "dosage_form",
    "manufacturer", "mah", "approval_number", "category", "rx_class", "ephedrine", "online_banned",
    "cold_chain", "storage", "package_insert", "price_fen", "active",
)
REQUIRED = ("sku", "generic_name", "approval_number", "rx_class", "price_fen")
_STR_LIMITS = {"sku": 64, "barcode": 64, "generic_name": 200, "brand_name": 200, "specification": 200,
               "pack": 100, "dosage_form": 100, "manufacturer": 200, "mah": 200, "approval_number": 64,
               "category": 100, "storage": 200}


def validate_product_fields(data: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Check and normalise product fields; :class:`ValidationFailed` lists every bad field."""
    errors: list[dict] = []
    out: dict[str, Any] = {}
    unknown = sorted(set(data) - set(PRODUCT_FIELDS))
    for name in unknown:
        errors.append({"field": name, "message": "unknown field"})
    if not partial:
        for name in REQUIRED:
            if data.get(name) in (None, ""):
                errors.append({"field": name, "message": "is required"})
    for name, value in data.items():
        if name in unknown or value is None and name in REQUIRED:
            continue
        if name in _STR_LIMITS or name == "package_insert":
            if value is None:
                out[name] = None if name == "barcode" else ""
                continue
            if not isinstance(value, str):
                errors.append({"field": name, "message": "must be a string"})
                continue
            value = value.strip()
            if name == "sku":  # an identifier: "café" typed precomposed or decomposed is one SKU (NFC)
                value = unicodedata.normalize("NFC", value)
            if name in _STR_LIMITS and len(value) > _STR_LIMITS[name]:
                errors.append({"field": name, "message": f"at most {_STR_LIMITS[name]} characters"})
                continue
            if name in REQUIRED and not value:
                errors.append({"field": name, "message": "is required"})
                continue
            if name == "approval_number" and not APPROVAL_NUMBER_RE.match(value):
                errors.append({"field": name, "message": "must look like 国药准字H20000001 (国药准字, a class letter, 8 digits)"})
                continue
            if name == "barcode" and value and not (value.isascii() and value.isdigit()):
                errors.append({"field": name, "message": "must be digits only"})
                continue
            out[name] = value or (None if name == "barcode" else "")
        elif name == "rx_class":
            if value not in RX_CLASSES:
                errors.append({"field": name, "message": f"must be one of {', '.join(RX_CLASSES)}"})
            else:
                out[name] = value
        elif name == "price_fen":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                errors.append({"field": name, "message": "must be a non-negative integer number of fen"})
            elif value > 10**10:
                errors.append({"field": name, "message": "is implausibly large"})
            else:
                out[name] = value
        elif name in ("ephedrine", "online_banned", "cold_chain", "active"):
            if not isinstance(value, bool):
                errors.append({"field": name, "message": "must be true or false"})
            else:
                out[name] = value
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), fields=errors)
    return out


def _check_unique(session: Session, fields: dict, exclude_id: int | None = None) -> None:
    if "sku" in fields:
        q = select(Product.id).where(Product.sku == fields["sku"])
        if exclude_id:
            q = q.where(Product.id != exclude_id)
        if session.scalar(q) is not None:
            raise ValidationFailed.one("sku", f"{fields['sku']!r} is already used by another product")


def create_product(session: Session, data: dict[str, Any], caller: Caller) -> Product:
    fields = validate_product_fields(data)
    _check_unique(session, fields)
    product = Product(**fields)
    session.add(product)
    session.flush()
    audit.record(session, caller, "product.create", "product", product.id, after=fields)
    return product


def update_product(session: Session, product_id: int, data: dict[str, Any], caller: Caller, *,
                   may_change_active: bool | None = None) -> Product:
    """Change a product's fields. Withdrawing or restoring it (``active``) chain-wide is the admin's
    (``products.deactivate``): ``may_change_active`` says whether the caller holds that permission
    (default: an admin or the system), else a change of ``active`` is refused (403) and nothing changes."""
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound(f"product {product_id} does not exist")
    fields = validate_product_fields(data, partial=True)
    if may_change_active is None:
        may_change_active = caller.role in ("admin", "system")
    if "active" in fields and fields["active"] != product.active and not may_change_active:
        raise Forbidden(f"role {caller.role!r} may not {'de' if product.active else 're'}activate product "
                        f"{product_id}: that is an admin's (POST /api/v1/products/{{id}}/deactivate)",
                        fields=[{"field": "active", "message": "only an admin may withdraw or restore a product"}])
    _check_unique(session, fields, exclude_id=product_id)
    before = {k: getattr(product, k) for k in fields}
    for k, v in fields.items():
        setattr(product, k, v)
    session.flush()
    changed = {k: v for k, v in fields.items() if before[k] != v}
    if changed:
        audit.record(session, caller, "product.update", "product", product.id,
                     before={k: before[k] for k in changed}, after=changed)
    return product


_MAPPER = sa_inspect(Product)
_KEYS = tuple(prop.key for prop in _MAPPER.column_attrs)
#: every mapped column of a product, in the order of ``_KEYS``
PRODUCT_COLUMNS = tuple(prop.columns[0] for prop in _MAPPER.column_attrs)
_BY_ID = select(*PRODUCT_COLUMNS).where(Product.__table__.c.id == bindparam("pk"))
_ID = _KEYS.index("id")


def get_product(session: Session, product_id: int, *, connection: Connection | None = None,
                values: tuple | None = None) -> Product | None:
    """Product ``product_id`` as ``session`` holds it, or ``None`` when there is none.

    Not yet in the session, it is read with one Core statement on ``connection``
    (by default the session's own; the API passes the request's connection, which its
    read-only session shares) and attached to ``session`` as a persistent, unmodified
    instance, exactly as ``session.get`` would have loaded it: hooks receive a product
    whose ``object_session`` is the read's session. The ORM's query machinery (compiling
    the ORM statement, the loading context) was about a third of a product read.
    ``values`` is the row already read (:data:`PRODUCT_COLUMNS` order, all ``None`` when
    there is no such product), e.g. with the bearer token (:class:`core.api.tokens.Prefetch`).
    """
    held = session.identity_map.get(_MAPPER.identity_key_from_primary_key((product_id,)))
    if held is not None:
        return held
    if values is None:
        conn = connection if connection is not None else session.connection()
        values = conn.execute(_BY_ID, {"pk": product_id}).first()
        if values is None:
            return None
    elif values[_ID] != product_id:  # no such product (all NULL): or a row of another id, never used
        return None
    product = _MAPPER.class_manager.new_instance()
    attributes.instance_state(product).dict.update(zip(_KEYS, values))  # the loaded (committed) values
    bulk.attach(session, [product])  # persistent in the session, as if loaded by it (no SQL)
    return product


_BASE = operator.attrgetter(*PRODUCT_FIELDS, "id", "updated_at")
_BASE_KEYS = (*PRODUCT_FIELDS, "id", "updated_at")


def base_fields(product: Product) -> dict[str, Any]:
    data = dict(zip(_BASE_KEYS, _BASE(product)))
    updated = data["updated_at"]
    data["updated_at"] = updated.isoformat() if updated else None
    return data


def visible(registry, product: Product, channel: str, caller: Caller) -> bool:
    return all(v is not False for v in registry.call("product_visible", product=product, channel=channel, caller=caller))


def sale_refusals(registry, product: Product, channel: str, caller: Caller) -> list[str]:
    return registry.call("product_sale_refusal", product=product, channel=channel, caller=caller)


def serialize_product(registry, product: Product, channel: str, caller: Caller) -> dict[str, Any]:
    """The product as ``channel`` shows it to ``caller`` (after every plugin's edits)."""
    data = base_fields(product)
    data["purchasable"] = product.active and not sale_refusals(registry, product, channel, caller)
    registry.call("product_serialize", product=product, data=data, channel=channel, caller=caller)
    return data


def list_products(session: Session, *, q: str | None = None, rx_class: str | None = None,
                  category: str | None = None, active: bool | None = None, after: int | None = None,
                  limit: int = 50) -> Page[Product]:
    """Products by id; ``q`` matches generic or brand name, SKU or barcode (case-insensitive substring)."""
    stmt = select(Product)
    if q:
        pattern = like_pattern(q.strip())
        stmt = stmt.where(or_(*(col.ilike(pattern, escape="\\") for col in (
            Product.generic_name, Product.brand_name, Product.sku, Product.barcode))))
    if rx_class is not None:
        stmt = stmt.where(Product.rx_class == rx_class)
    if category is not None:
        stmt = stmt.where(Product.category == category)
    if active is not None:
        stmt = stmt.where(Product.active == active)
    return keyset(session, stmt, Product.id, after=after, limit=limit)
