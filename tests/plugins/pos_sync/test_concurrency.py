"""Two (or more) uploads of one batch at once make one sale each, on either backend."""
import threading
import time

from sqlalchemy import func, select

from core import stock
from core.context import Context
from core.db import is_sqlite, make_engine, make_sessionmaker
from core.models import Order, StockLot
from plugins.pos_sync import sales
from plugins.pos_sync.devices import get_device
from plugins.pos_sync.models import PosSale

from .helpers import pos_ctx, register, sale, shop
from .helpers import Shop

THREADS = 6


def wide_context(ctx, size=THREADS * 2) -> Context:
    engine = make_engine(ctx.config.database_url, pool_size=size, max_overflow=5, pool_timeout=60)
    return Context(ctx.config, engine, make_sessionmaker(engine), ctx.registry)


def run_threads(n, fn):
    barrier = threading.Barrier(n)
    results, errors, lock = [None] * n, [], threading.Lock()

    def worker(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # asserted by the caller
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "an upload hung"
    return results, errors


def test_the_same_batch_uploaded_concurrently_makes_one_sale_each(make_ctx):
    ctx = pos_ctx(make_ctx, settings={"pos_sync.commit_every": 5})
    sh = shop(ctx, products=3, stock=20)
    twin = Shop(sh.store_id, sh.product_ids, sh.customer_id, *register(ctx, sh.store_id))
    batch = [sale([(sh.product_ids[i % 3], 1, 1000), (sh.product_ids[(i + 1) % 3], 2, 1000)]) for i in range(24)]
    other = [sale([(sh.product_ids[i % 3], 3, 1000)]) for i in range(10)]  # a second terminal, same shelves
    wide = wide_context(ctx)
    terminals = [(sh, sh.device(wide)), (twin, twin.device(wide))]

    def go(i):
        who, device = terminals[0] if i < THREADS - 2 else terminals[1]
        return sales.upload(wide, device, {"sales": batch if who is sh else other})

    try:
        answers, errors = run_threads(THREADS, go)
    finally:
        wide.dispose()
    assert errors == []
    for k, s1 in enumerate(batch):
        got = [a["results"][k]["status"] for a in answers[:THREADS - 2]]
        assert sorted(got) == ["accepted"] + ["duplicate"] * (THREADS - 3), (k, got)
        assert len({a["results"][k]["order_id"] for a in answers[:THREADS - 2]}) == 1
    for k in range(len(other)):
        assert sorted(a["results"][k]["status"] for a in answers[THREADS - 2:]) == ["accepted", "duplicate"]
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 34
        assert s.scalar(select(func.count()).select_from(PosSale)) == 34
        assert s.scalar(select(func.sum(StockLot.on_hand))) == 60 - 24 * 3 - 30  # shortfalls go negative
        assert stock.verify(s) == []


def test_the_unique_keys_alone_stop_a_twin_insert(make_ctx, monkeypatch):
    """Without the terminal lock (two transactions racing on one sale id), the UNIQUE keys still leave
    one sale: the loser's INSERT fails, its chunk is rolled back and taken again, and answers duplicate."""
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    device = sh.device(ctx)
    raw = sale([(sh.product_ids[0], 1, 1000)])
    rules = sales._Rules(sales.utcnow(), None, sales.dt.timedelta(minutes=5), sales.dt.timedelta(days=1), False, 1)
    wide = wide_context(ctx, 4)
    real_process, takes = sales._process, []

    def process(*args):
        takes.append(args[3][0]["client_sale_id"])
        out = real_process(*args)
        time.sleep(0.3)  # hold the transaction open so the twin has to wait on the key
        return out

    monkeypatch.setattr(sales, "get_device", lambda session, device_id, lock=False: get_device(session, device_id))
    monkeypatch.setattr(sales, "_process", process)
    try:
        got, errors = run_threads(2, lambda i: sales._chunk(wide, device.id, [raw], rules)[0]["status"])
    finally:
        wide.dispose()
    assert errors == [] and sorted(got) == ["accepted", "duplicate"]
    if not is_sqlite(wide.engine):  # SQLite: BEGIN IMMEDIATE makes the twin wait before it starts
        assert takes == [raw["client_sale_id"]] * 3  # the loser's first take failed and was rolled back
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1
        assert s.scalar(select(func.count()).select_from(PosSale)) == 1
        assert stock.verify(s) == []


def test_a_sale_stored_meanwhile_makes_the_final_insert_take_the_chunk_again(make_ctx, monkeypatch):
    """The new pos_sales rows are inserted last; should one of their sale ids have been stored since the
    chunk looked (stood in for here: the first look misses a stored sale), UNIQUE refuses the INSERT and
    the chunk is rolled back and taken again: no error, nothing written twice or half."""
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    refused = sale([(sh.product_ids[0], 1, 1000)], redeem_points=5)  # stored rejected: no order
    first = sales.upload(ctx, sh.device(ctx), {"sales": [refused]})["results"][0]
    assert first["status"] == "rejected"
    real_find, looks = sales._find, []

    def find(session, device_id, ids):
        found = real_find(session, device_id, ids)
        looks.append(sorted(found))
        return found if len(looks) > 1 else {}

    monkeypatch.setattr(sales, "_find", find)
    neighbour = sale([(sh.product_ids[1], 1, 1000)])
    answer = sales.upload(ctx, sh.device(ctx), {"sales": [neighbour, refused]})
    assert [r["status"] for r in answer["results"]] == ["accepted", "rejected"]
    assert answer["results"][1] == {**first, "status": "rejected"}
    assert looks == [[refused["client_sale_id"]]] * 2  # taken twice
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1
        rows = {row.client_sale_id: row for row in s.scalars(select(PosSale))}
        assert len(rows) == 2 and rows[refused["client_sale_id"]].attempts == 2
        assert rows[neighbour["client_sale_id"]].order_id == answer["results"][0]["order_id"]
        assert stock.verify(s) == []
