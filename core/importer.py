"""Product import from CSV (``pharmo2o products import FILE.csv``).

The file is UTF-8 (with or without a BOM), comma-separated, with a header row
of product field names (:data:`core.catalog.PRODUCT_FIELDS`); ``sku`` is the
key and must be a column. A row whose SKU exists updates that product with the
non-empty cells of the row; a new SKU creates a product, which then needs the
required fields (sku, generic_name, approval_number, rx_class, price_fen).
An empty cell means "not given" (a default on create, unchanged on update).
Booleans are ``true/false``, ``1/0``, ``yes/no`` (or ``是/否``); ``price_fen``
is an integer number of fen.

Every row runs in its own SAVEPOINT through :func:`core.catalog.create_product`
/ :func:`core.catalog.update_product` (which validate and audit): a bad row
leaves nothing behind and the good rows are kept. The file is streamed and
committed every ``chunk_size`` rows, so a large file needs little memory.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError

from . import catalog
from .auth import Caller
from .errors import DomainError, ValidationFailed
from .models import Product

__all__ = ["import_products", "ImportReport", "RowError", "ImportFileError", "parse_row", "write_error_report",
           "error_lines", "BOOLEAN_FIELDS", "CHUNK_SIZE"]

CHUNK_SIZE = 500
BOOLEAN_FIELDS = ("ephedrine", "online_banned", "cold_chain", "active")
INTEGER_FIELDS = ("price_fen",)
_TRUE = {"true", "1", "yes", "y", "是"}
_FALSE = {"false", "0", "no", "n", "否"}
_INT = re.compile(r"^[+-]?\d+$")


class ImportFileError(ValidationFailed):
    """The file as a whole cannot be imported (bad header, not UTF-8, not CSV)."""


@dataclass(frozen=True)
class RowError:
    row: int  # the row number as a spreadsheet shows it (the header is row 1)
    sku: str
    field: str
    message: str


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    failed: int = 0
    rows: int = 0
    dry_run: bool = False
    errors: list[RowError] = field(default_factory=list)
    #: set when reading stopped early (rows before it were processed normally)
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.stopped is None


def parse_row(raw: dict[str, str]) -> tuple[dict, list[dict]]:
    """Cells to typed product fields: ``(fields, errors)``; empty cells are left out."""
    data: dict = {}
    errors: list[dict] = []
    for name, value in raw.items():
        value = (value or "").strip()
        if value == "":
            continue
        if name in BOOLEAN_FIELDS:
            low = value.lower()
            if low in _TRUE:
                data[name] = True
            elif low in _FALSE:
                data[name] = False
            else:
                errors.append({"field": name, "message": f"{value!r} is not a boolean (true/false, 1/0, yes/no)"})
        elif name in INTEGER_FIELDS:
            if _INT.match(value):
                data[name] = int(value)
            else:
                errors.append({"field": name, "message": f"{value!r} is not an integer number of fen (no decimals)"})
        else:
            data[name] = value
    return data, errors


def _check_header(header: list[str] | None) -> list[str]:
    if not header:
        raise ImportFileError.one("header", "the file is empty: the first row must name the product fields")
    names = [h.strip() for h in header]
    unknown = [h for h in names if h not in catalog.PRODUCT_FIELDS]
    if unknown:
        raise ImportFileError.one("header", f"unknown column(s) {', '.join(map(repr, unknown))}; "
                                            f"columns are product fields: {', '.join(catalog.PRODUCT_FIELDS)}")
    dupes = sorted({h for h in names if names.count(h) > 1})
    if dupes:
        raise ImportFileError.one("header", f"column(s) {', '.join(map(repr, dupes))} appear more than once")
    if "sku" not in names:
        raise ImportFileError.one("header", "the 'sku' column is required (it identifies each product)")
    return names


def _lines(stream: BinaryIO, progress: Callable[[int], None]) -> Iterator[str]:
    """Decoded lines of a binary stream (BOM dropped), reporting bytes read."""
    for number, raw in enumerate(stream, start=1):
        progress(len(raw))
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFileError.one(
                "file", f"line {number} is not valid UTF-8 ({exc.reason}): save the file as 'CSV UTF-8'") from exc


def _apply(session, data: dict, caller: Caller) -> str:
    sku = data.get("sku")
    existing = session.scalar(select(Product.id).where(Product.sku == sku)) if sku else None
    if existing is None:
        catalog.create_product(session, data, caller)
        return "created"
    catalog.update_product(session, existing, {k: v for k, v in data.items() if k != "sku"}, caller)
    return "updated"


def _row_errors(conversion: list[dict], exc: DomainError | None) -> list[dict]:
    seen = {e["field"] for e in conversion}
    later = []
    if exc is not None:
        later = exc.fields or [{"field": "-", "message": exc.detail}]
    return conversion + [e for e in later if e["field"] not in seen]


def import_products(ctx, source: str | Path | BinaryIO, caller: Caller, *, dry_run: bool = False,
                    chunk_size: int = CHUNK_SIZE, progress: Callable[[int], None] | None = None,
                    on_row: Callable[[ImportReport], None] | None = None) -> ImportReport:
    """Import a products CSV; returns counts and a per-row error list.

    ``progress(n)`` is called with the bytes read; ``on_row(report)`` after each
    row. With ``dry_run`` every row is validated and applied in a transaction
    that is rolled back at the end, so the counts are what a real run would do.
    Raises :class:`ImportFileError` when the header is unusable.
    """
    if isinstance(source, (str, Path)):
        with open(source, "rb") as stream:
            return import_products(ctx, stream, caller, dry_run=dry_run, chunk_size=chunk_size,
                                   progress=progress, on_row=on_row)
    report = ImportReport(dry_run=dry_run)
    reader = csv.reader(_lines(source, progress or (lambda n: None)))
    try:
        header = _check_header(next(reader, None))
    except csv.Error as exc:
        raise ImportFileError.one("header", f"not a CSV file: {exc}") from exc
    session = ctx.sessions()
    try:
        session.begin()
        in_chunk = 0
        row_number = 1
        while True:
            try:
                cells = next(reader, None)
            except ImportFileError as exc:
                report.stopped = exc.detail
                break
            except csv.Error as exc:
                report.stopped = f"row {row_number + 1}: malformed CSV ({exc}); reading stopped there"
                break
            if cells is None:
                break
            row_number += 1
            if not any(c.strip() for c in cells):
                continue  # blank line
            report.rows += 1
            sku = (cells[header.index("sku")].strip() if len(cells) > header.index("sku") else "")
            if len(cells) != len(header):
                _fail(report, row_number, sku, [{"field": "-", "message":
                      f"has {len(cells)} cells but the header has {len(header)} columns"}])
            else:
                data, conversion = parse_row(dict(zip(header, cells)))
                outcome, exc = None, None
                if conversion:  # still check the other cells, so the row's report is complete
                    exists = session.scalar(select(Product.id).where(Product.sku == data["sku"])) \
                        if data.get("sku") else None
                    try:
                        catalog.validate_product_fields(data, partial=exists is not None)
                    except ValidationFailed as err:
                        exc = err
                else:
                    try:
                        with session.begin_nested():
                            outcome = _apply(session, data, caller)
                    except DomainError as err:
                        exc = err
                    except (IntegrityError, DataError) as err:
                        exc = ValidationFailed(f"the database refused the row: {err.orig}")
                if outcome is None:
                    _fail(report, row_number, sku, _row_errors(conversion, exc))
                elif outcome == "created":
                    report.created += 1
                else:
                    report.updated += 1
            in_chunk += 1
            if in_chunk >= chunk_size:
                if not dry_run:
                    session.commit()
                    session.begin()
                else:
                    session.flush()
                session.expunge_all()
                in_chunk = 0
            if on_row:
                on_row(report)
        if dry_run:
            session.rollback()
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    return report


def _fail(report: ImportReport, row: int, sku: str, errors: Iterable[dict]) -> None:
    report.failed += 1
    for e in errors:
        report.errors.append(RowError(row=row, sku=sku, field=e["field"], message=e["message"]))


def write_error_report(report: ImportReport, path: str | Path) -> None:
    """The per-row errors as a CSV (UTF-8 with BOM, so spreadsheet programs read it)."""
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "sku", "field", "message"])
        for e in report.errors:
            writer.writerow([e.row, e.sku, e.field, e.message])


def error_lines(report: ImportReport) -> list[str]:
    return [f"row {e.row}{f' (sku {e.sku})' if e.sku else ''}: {e.field}: {e.message}" for e in report.errors]

