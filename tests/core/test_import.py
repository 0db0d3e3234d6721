"""`pharmo2o products import`: row-by-row savepoints, per-row error report, updates by SKU."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core import catalog, importer
from core.auth import Caller
from core.errors import ValidationFailed
from core.models import AuditEntry, Product
from tests.core.clitools import initialised  # noqa: F401  (a fixture)

ADMIN = Caller(role="admin", user_id=1, name="admin")
HEADER = "sku,generic_name,approval_number,rx_class,price_fen,online_banned,ephedrine,manufacturer"


def write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def products(ctx) -> dict[str, Product]:
    with ctx.session() as s:
        found = {p.sku: p for p in s.scalars(select(Product))}
        s.expunge_all()  # keep the loaded values readable after the read-only unit rolls back
        return found


def test_good_rows_are_kept_and_bad_rows_reported_by_row_and_field(initialised, tmp_path):
    run = initialised
    f = write(tmp_path / "p.csv", "\n".join([
        HEADER,
        "A1,阿莫西林胶囊,国药准字H13023961,rx,1580,false,0,华康制药",          # row 2: ok
        "A2,布洛芬缓释胶囊,国药准字X123,otc_a,12.50,no,no,",                   # row 3: approval + price
        "A3,板蓝根颗粒,国药准字Z44020709,otc_b,1580,maybe,no,",                # row 4: boolean
        "A4,复方盐酸伪麻黄碱缓释胶囊,国药准字H10940182,otc_a,2150,no,yes,",     # row 5: ok
        ",无编号,国药准字H10940183,otc_a,100,,,",                              # row 6: sku missing
        "A5,维生素C片,国药准字H32020863,vitamin,350,,,",                       # row 7: rx_class
        "A6,多余,国药准字H32020864,otc_b,350,,,,extra",                        # row 8: too many cells
    ]) + "\n", bom=True)
    errors_out = tmp_path / "errors.csv"
    result = run("products", "import", str(f), "--errors-out", str(errors_out), "--no-progress")
    assert result.exit_code == 1, result.output
    assert "7 rows: created 2, updated 0, failed 5" in result.stdout
    assert "row 3 (sku A2): approval_number: must look like 国药准字H20000001" in result.stdout
    assert "row 3 (sku A2): price_fen: '12.50' is not an integer number of fen" in result.stdout
    assert "row 4 (sku A3): online_banned: 'maybe' is not a boolean" in result.stdout
    assert "row 6: sku: is required" in result.stdout
    assert "row 7 (sku A5): rx_class: must be one of rx, otc_a, otc_b" in result.stdout
    assert "row 8 (sku A6): -: has 9 cells but the header has 8 columns" in result.stdout
    with open(errors_out, encoding="utf-8-sig", newline="") as fh:
        report = list(csv.DictReader(fh))
    assert {(r["row"], r["field"]) for r in report} == {
        ("3", "approval_number"), ("3", "price_fen"), ("4", "online_banned"), ("6", "sku"), ("7", "rx_class"),
        ("8", "-")}
    ctx = run.context()
    saved = products(ctx)
    assert set(saved) == {"A1", "A4"}
    assert (saved["A1"].rx_class, saved["A1"].price_fen, saved["A1"].online_banned, saved["A1"].manufacturer) == \
        ("rx", 1580, False, "华康制药")
    assert saved["A4"].ephedrine is True
    with ctx.session() as s:  # audited through the catalogue service, once per saved product
        assert s.scalar(select(func.count()).select_from(AuditEntry)
                        .where(AuditEntry.action == "product.create")) == 2


def test_a_row_failing_after_it_was_written_leaves_nothing_behind(initialised, tmp_path, monkeypatch):
    """The product row is flushed before its audit entry; a failure there must undo the row (savepoint)."""
    real_record = catalog.audit.record

    def failing_record(session, actor, action, entity, entity_id=None, **kw):
        if (kw.get("after") or {}).get("sku") == "BOOM":
            raise ValidationFailed.one("sku", "refused after the insert")
        return real_record(session, actor, action, entity, entity_id, **kw)

    monkeypatch.setattr(catalog.audit, "record", failing_record)
    f = write(tmp_path / "p.csv", f"{HEADER}\nOK1,甲,国药准字H10000001,otc_b,1,,,\n"
                                  f"BOOM,乙,国药准字H10000002,otc_b,2,,,\nOK2,丙,国药准字H10000003,otc_b,3,,,\n")
    result = initialised("products", "import", str(f), "--no-progress")
    assert result.exit_code == 1
    assert "row 3 (sku BOOM): sku: refused after the insert" in result.stdout
    assert set(products(initialised.context())) == {"OK1", "OK2"}


def test_existing_skus_are_updated_with_the_given_cells_only(initialised, tmp_path):
    run = initialised
    ctx = run.context()
    with ctx.transaction() as s:
        catalog.create_product(s, {"sku": "U1", "generic_name": "氯雷他定片", "approval_number": "国药准字H10970410",
                                   "rx_class": "otc_b", "price_fen": 1850, "brand_name": "开瑞坦"}, ADMIN)
    f = write(tmp_path / "prices.csv", "sku,price_fen,brand_name,active\nU1,1990,,no\nNEW,100,,\n")
    result = run("products", "import", str(f), "--no-progress")
    assert result.exit_code == 1
    assert "created 0, updated 1, failed 1" in result.stdout
    assert "row 3 (sku NEW): generic_name: is required" in result.stdout  # a new SKU needs the required fields
    p = products(ctx)["U1"]
    assert (p.price_fen, p.brand_name, p.active, p.generic_name) == (1990, "开瑞坦", False, "氯雷他定片")
    with ctx.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "product.update")).one()
        assert entry.before == {"price_fen": 1850, "active": True} and entry.after == {"price_fen": 1990,
                                                                                       "active": False}
    # the same SKU twice in one file: the later row updates the earlier one
    f2 = write(tmp_path / "twice.csv", "sku,generic_name,approval_number,rx_class,price_fen\n"
                                       "T1,开塞露,国药准字H37021316,otc_b,500\nT1,开塞露,国药准字H37021316,otc_b,520\n")
    assert "created 1, updated 1, failed 0" in run.ok("products", "import", str(f2), "--no-progress").stdout
    assert products(ctx)["T1"].price_fen == 520


def test_dry_run_reports_but_saves_nothing(initialised, tmp_path):
    f = write(tmp_path / "p.csv", f"{HEADER}\nD1,甲,国药准字H10000001,otc_b,1,,,\nD2,乙,bad,otc_b,2,,,\n")
    result = initialised("products", "import", str(f), "--dry-run", "--no-progress")
    assert result.exit_code == 1
    assert "created 1, updated 0, failed 1 (dry run: nothing was saved)" in result.stdout
    assert products(initialised.context()) == {}
    ok = write(tmp_path / "ok.csv", f"{HEADER}\nD1,甲,国药准字H10000001,otc_b,1,,,\n")
    assert initialised("products", "import", str(ok), "--dry-run", "--no-progress").exit_code == 0
    assert products(initialised.context()) == {}


@pytest.mark.parametrize("content, message", [
    ("sku,name\nA,x\n", "unknown column(s) 'name'"),
    ("generic_name,price_fen\n甲,1\n", "the 'sku' column is required"),
    ("sku,sku\nA,B\n", "appear more than once"),
    ("", "the file is empty"),
])
def test_unusable_headers_are_refused_before_any_row(initialised, tmp_path, content, message):
    result = initialised("products", "import", str(write(tmp_path / "h.csv", content)), "--no-progress")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid input") and "header: " in result.stderr
    assert message in result.stderr


def test_quoted_multiline_cells_and_row_numbers(initialised, tmp_path):
    f = write(tmp_path / "m.csv", 'sku,generic_name,approval_number,rx_class,price_fen,package_insert\n'
                                  'M1,甲,国药准字H10000001,rx,1,"【用法用量】\n口服，一次1片"\n'
                                  '\n'
                                  'M2,乙,国药准字H10000002,otc_q,2,\n')
    result = initialised("products", "import", str(f), "--no-progress")
    assert "row 4 (sku M2): rx_class" in result.stdout  # the blank line is row 3, as a spreadsheet counts
    assert products(initialised.context())["M1"].package_insert == "【用法用量】\n口服，一次1片"


def test_chunked_commits_and_a_non_utf8_line_stop_reading_but_keep_earlier_rows(initialised, tmp_path):
    ctx = initialised.context()
    lines = [f"C{i:03d},药品{i},国药准字H{20000000 + i:08d},otc_b,{i}" for i in range(1, 8)]
    body = ("sku,generic_name,approval_number,rx_class,price_fen\n" + "\n".join(lines[:5]) + "\n").encode()
    body += "C900,感冒灵,国药准字Z44021940,otc_a,9\n".encode("gbk") + ("\n".join(lines[5:]) + "\n").encode()
    path = tmp_path / "mixed.csv"
    path.write_bytes(body)
    seen = []
    report = importer.import_products(ctx, path, ADMIN, chunk_size=2, progress=seen.append)
    assert report.stopped and "line 7 is not valid UTF-8" in report.stopped
    assert (report.created, report.failed, report.ok) == (5, 0, False)
    assert sorted(products(ctx)) == [f"C{i:03d}" for i in range(1, 6)]
    assert sum(seen) <= path.stat().st_size and seen  # progress is fed with bytes read
    result = initialised("products", "import", str(path), "--no-progress")
    assert result.exit_code == 1 and "reading stopped early" in result.stderr


def test_a_larger_file_is_streamed_in_chunks(initialised, tmp_path):
    n = 240
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sku", "generic_name", "approval_number", "rx_class", "price_fen", "cold_chain"])
        for i in range(n):
            writer.writerow([f"B{i:05d}", f"药品{i}", f"国药准字H{30000000 + i:08d}", ("rx", "otc_a", "otc_b")[i % 3],
                             100 + i, "1" if i % 50 == 0 else "0"])
    ctx = initialised.context()
    commits = []
    from sqlalchemy import event
    event.listen(ctx.engine, "commit", lambda conn: commits.append(1))
    report = importer.import_products(ctx, path, ADMIN, chunk_size=100)
    assert (report.rows, report.created, report.failed) == (n, n, 0)
    assert len(commits) == 3  # 100 + 100 + 40
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Product)) == n
        assert s.scalar(select(func.count()).select_from(Product).where(Product.cold_chain.is_(True))) == 5


def test_parse_row_types_cells():
    data, errors = importer.parse_row({"sku": " X1 ", "price_fen": "1200", "active": "YES", "ephedrine": "否",
                                       "cold_chain": "", "brand_name": "  "})
    assert data == {"sku": "X1", "price_fen": 1200, "active": True, "ephedrine": False}
    assert errors == []
    _, errors = importer.parse_row({"price_fen": "1,200", "online_banned": "2"})
    assert [e["field"] for e in errors] == ["price_fen", "online_banned"]
