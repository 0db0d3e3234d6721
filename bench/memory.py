"""Benchmark of a worker's memory (issue 11, figure 5): RSS of gunicorn workers during a full POS catalogue pull.

A fresh database gets ``--products`` products (default 50,000) and one lot of each in a store,
bulk-inserted with SQLAlchemy Core; pharmo2o serves it under gunicorn with the four bundled
plugins. A terminal is registered and pulls the whole catalogue page by page
(``GET /api/v1/pos/catalog?limit=`` with the cursor) while a sampler reads ``VmRSS`` and
``VmHWM`` of every worker from ``/proc/<pid>/status`` every ``--interval`` seconds.

Figures per worker: RSS at rest after a warm-up request (the baseline), the largest RSS seen
during the pull, its growth over the baseline and the peak (``VmHWM``). Target: growth <= 50 MB
(a pull must stream: keyset pages, never the whole catalogue in one worker)::

    python bench/memory.py                       # both databases, 50,000 products
    python bench/memory.py --database sqlite --products 10000
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_PG, Database, Server, call, record, table  # noqa: E402

TARGET_GROWTH_MB = 50


def status_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in kB (empty if the process is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


class Sampler(threading.Thread):
    """Reads the workers' RSS every ``interval`` seconds until stopped; keeps the largest per pid."""

    def __init__(self, pids: list[int], interval: float) -> None:
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.max_rss = {pid: 0 for pid in pids}
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for pid in self.pids:
                rss = status_kb(pid).get("VmRSS", 0)
                self.max_rss[pid] = max(self.max_rss[pid], rss)
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def reset_peak(pid: int) -> bool:
    """Reset ``VmHWM`` of ``pid`` to its current RSS (``echo 5 > /proc/<pid>/clear_refs``); ``False`` if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def fill(db: Database, products: int) -> int:
    """Bulk-insert ``products`` products and one lot of each in a new store; returns the store id."""
    from sqlalchemy import insert
    from core.models import Product, StockLot, Store
    engine = db.engine()
    tag = uuid.uuid4().hex[:6]
    expiry = dt.date.today() + dt.timedelta(days=700)
    with engine.begin() as conn:
        store_id = conn.execute(insert(Store).returning(Store.id), {"code": f"MEM-{tag}", "name": "内存门店"}).scalar_one()
        for start in range(0, products, 5000):
            now = dt.datetime.now(dt.timezone.utc)
            ids = conn.execute(insert(Product).returning(Product.id, sort_by_parameter_order=True), [{
                "sku": f"MEM-{tag}-{i}", "generic_name": f"目录药品{i}", "brand_name": "", "specification": "10片",
                "pack": "", "dosage_form": "片剂", "manufacturer": "某某制药有限公司", "mah": "",
                "approval_number": f"国药准字H{i % 10**8:08d}", "category": "", "rx_class": "otc_b",
                "ephedrine": False, "online_banned": False, "cold_chain": False, "storage": "",
                "package_insert": "", "price_fen": 100 + i % 5000, "active": True, "created_at": now,
                "updated_at": now} for i in range(start, min(products, start + 5000))]).scalars().all()
            conn.execute(insert(StockLot), [{"store_id": store_id, "product_id": pid, "lot_no": f"L{pid}",
                                             "expiry": expiry, "on_hand": 100, "reserved": 0, "updated_at": now}
                                            for pid in ids])
    engine.dispose()
    return store_id


def measure(kind: str, products: int, *, workers: int = 2, page: int = 1000, interval: float = 0.05,
            pg_url: str = DEFAULT_PG, verbose: bool = True) -> dict:
    """One run: returns per-worker baseline/max/growth/peak (MB), the pull's rows, pages and seconds."""
    say = print if verbose else (lambda *a, **k: None)
    with Database(kind, pg_url=pg_url, settings={"pos_sync": {"catalog_settle_seconds": 0}}) as db:
        started = time.perf_counter()
        store_id = fill(db, products)
        say(f"[{kind}] {products} products and lots inserted in {time.perf_counter() - started:.1f} s")
        with Server(db, workers=workers, name="memory") as server:
            token = server.token()
            secret = call(server.base, "POST", "/api/v1/pos/devices", {"store_id": store_id, "name": "memory"},
                          token)["secret"]
            headers = {"Authorization": f"Bearer {secret}", "X-POS-Database-Id": uuid.uuid4().hex}
            pids = server.worker_pids()
            for _ in range(2 * workers):  # every worker has served a request (imports done, pools open)
                call(server.base, "GET", "/api/v1/pos/devices", token=token)
                call(server.base, "GET", "/api/v1/health")
            time.sleep(0.5)
            base = {pid: status_kb(pid) for pid in pids}
            reset = all(reset_peak(pid) for pid in pids)  # VmHWM from now on is the pull's own peak
            sampler = Sampler(pids, interval)
            sampler.start()
            rows, pages, cursor, started = 0, 0, None, time.perf_counter()
            try:
                while True:
                    query = f"?limit={page}" + (f"&since={cursor}" if cursor else "")
                    answer = call(server.base, "GET", "/api/v1/pos/catalog" + query, headers=headers)
                    rows += len(answer["products"]) + len(answer["stock"])
                    pages, cursor = pages + 1, answer["next_cursor"]
                    if not answer["has_more"]:
                        break
            finally:
                took = time.perf_counter() - started
                sampler.stop()
            after = {pid: status_kb(pid) for pid in pids}
    out = []
    for pid in pids:
        b = base[pid].get("VmRSS", 0) / 1024
        m = max(sampler.max_rss[pid], after[pid].get("VmRSS", 0), after[pid].get("VmHWM", 0) if reset else 0) / 1024
        out.append({"pid": pid, "baseline_mb": b, "max_mb": m, "growth_mb": m - b,
                    "after_mb": after[pid].get("VmRSS", 0) / 1024, "hwm_mb": after[pid].get("VmHWM", 0) / 1024,
                    "hwm_before_mb": base[pid].get("VmHWM", 0) / 1024})
    say(f"  pulled {rows} rows in {pages} pages, {took:.1f} s; {sampler.samples} samples")
    return {"workers": out, "rows": rows, "pages": pages, "seconds": took, "samples": sampler.samples, "reset": reset,
            "growth_mb": max(w["growth_mb"] for w in out),
            "peak_mb": max(max(w["hwm_mb"], w["hwm_before_mb"]) for w in out)}


def bench(kind: str, args) -> dict:
    result = measure(kind, args.products, workers=args.workers, page=args.page, interval=args.interval,
                     pg_url=args.pg_url)
    rows = [[f"worker {n + 1}", f"{w['baseline_mb']:.1f}", f"{w['hwm_before_mb']:.1f}", f"{w['max_mb']:.1f}",
             f"{w['growth_mb']:+.1f}", f"{w['after_mb']:.1f}"] for n, w in enumerate(result["workers"])]
    verdict = "met" if result["growth_mb"] <= TARGET_GROWTH_MB else "NOT met"
    body = (f"{args.products:,} products + as many lots, full catalogue pull by one new terminal in pages of "
            f"{args.page}: {result['rows']:,} rows in {result['pages']} pages, {result['seconds']:.1f} s "
            f"({result['rows'] / result['seconds']:.0f} rows/s); gunicorn {args.workers} sync workers, the four "
            f"bundled plugins; RSS sampled every {args.interval} s ({result['samples']} samples).\n\n"
            + table(["MB", "RSS at rest", "VmHWM before (login: argon2)", "peak in pull", "growth", "RSS after"], rows)
            + "\n\n"
            + f"Largest growth {result['growth_mb']:.1f} MB (target ≤ {TARGET_GROWTH_MB} MB: {verdict}); "
              f"peak RSS of a worker over its life {result['peak_mb']:.1f} MB. "
            + ("The pull's peak is exact: VmHWM reset (clear_refs) after the baseline, read after the pull.\n"
               if result["reset"] else "VmHWM could not be reset: the pull's peak is the largest sample.\n"))
    record(f"Worker memory, catalogue pull — {kind}", body, database=kind)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--page", type=int, default=1000, help="catalogue page size (the API's limit)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between RSS samples")
    args = parser.parse_args()
    for kind in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        bench(kind, args)


if __name__ == "__main__":
    main()
