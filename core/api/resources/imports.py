"""Product CSV import over HTTP: the same import as ``pharmo2o products import`` (:mod:`core.importer`).

The body is the CSV itself (``Content-Type: text/csv``, UTF-8, a header row
of product fields). Each row is applied or refused on its own, and the
answer lists every refused row with the failing field. A client with a large
file sends it in chunks, each with the header row, and passes
``row_offset`` (the data rows already sent) so that the reported row
numbers are those of the whole file; the console does this to show progress.
"""
from __future__ import annotations

import io
from typing import Annotated

from pydantic import Field

from ... import importer
from ...errors import ValidationFailed
from ..errors import UnsupportedMediaType
from ..operations import operation, read_body
from ..schemas import Out, Query

__all__ = ["ProductImport", "ImportOut", "CSV_TYPES"]

CSV_TYPES = ("text/csv", "application/csv", "text/plain")


class ImportQuery(Query):
    dry_run: bool = Field(False, description="validate and count every row, then roll everything back")
    row_offset: Annotated[int, Field(ge=0, le=10_000_000, description="data rows of the file sent before this "
                                     "chunk; added to the reported row numbers")] = 0


class ImportRowError(Out):
    row: int = Field(description="the row as a spreadsheet numbers it (the header is row 1)")
    sku: str
    field: str
    message: str


class ImportOut(Out):
    rows: int
    created: int
    updated: int
    failed: int
    dry_run: bool
    stopped: str | None = Field(description="why reading stopped early (malformed CSV, not UTF-8)")
    errors: list[ImportRowError]


class ProductImport:
    @operation("products.import", roles=("admin", "store_manager"), query=ImportQuery, response=ImportOut,
               tags=("products",), summary="Import products from a CSV file (create or update by SKU)",
               description="Body: the CSV (`text/csv`). A row whose SKU exists updates that product with its "
                           "non-empty cells; a new SKU creates a product. Each row is validated like a "
                           "create or update and audited; a bad row changes nothing and is reported.",
               errors=(413, 415, 422), raw_body=True, idempotency="none", writes=False)
    def on_post(self, req, resp):
        media = (req.content_type or "").split(";", 1)[0].strip().lower()
        if media not in CSV_TYPES:
            raise UnsupportedMediaType(f"send the file as text/csv, not {media or 'no Content-Type'}")
        raw = read_body(req, req.context.api.max_body_bytes,
                        ": send the file in smaller chunks, each with the header row")
        if not raw.strip():
            raise ValidationFailed.one("body", "is empty: send the CSV file with its header row")
        q = req.context.query
        # The importer commits row chunks in its own transactions (this request's unit only reads).
        report = importer.import_products(req.context.ctx, io.BytesIO(raw), req.context.caller, dry_run=q.dry_run)
        resp.media = {"rows": report.rows, "created": report.created, "updated": report.updated,
                      "failed": report.failed, "dry_run": report.dry_run, "stopped": report.stopped,
                      "errors": [{"row": e.row + q.row_offset, "sku": e.sku, "field": e.field, "message": e.message}
                                 for e in report.errors]}
