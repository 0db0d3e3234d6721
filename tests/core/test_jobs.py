import threading

from core import outbox
from core.jobs import Job, jobs_of, run_due, run_forever

from .factories import make_plugin


def test_hook_register_jobs(make_ctx):
    calls = []
    plugin = make_plugin("nightly", register_jobs=lambda: [Job("nightly.count", 3600, lambda ctx: calls.append(ctx) or "counted")])
    ctx = make_ctx(extra_plugins=[plugin])
    names = [j.name for j in jobs_of(ctx.registry)]
    assert names[:2] == ["outbox.dispatch", "orders.expire_unpaid"] and "nightly.count" in names
    last = {}
    results = run_due(ctx, jobs_of(ctx.registry), last, now=1000.0)
    assert results["nightly.count"] == "counted" and calls == [ctx]
    assert "nightly.count" not in run_due(ctx, jobs_of(ctx.registry), last, now=1000.0 + 60)  # not due yet
    assert "nightly.count" in run_due(ctx, jobs_of(ctx.registry), last, now=1000.0 + 3600)


def test_a_failing_job_does_not_stop_the_others(make_ctx):
    def boom(ctx):
        raise RuntimeError("disk full")
    ctx = make_ctx(extra_plugins=[make_plugin("flaky", register_jobs=lambda: [Job("flaky.boom", 1, boom)])])
    with ctx.transaction() as s:
        outbox.enqueue(s, "log", {"n": 1})
    results = run_due(ctx, jobs_of(ctx.registry), {})
    assert isinstance(results["flaky.boom"], RuntimeError)
    assert results["outbox.dispatch"] == "sent 1, failed 0, dead 0"


def test_run_forever_stops_when_asked(ctx):
    with ctx.transaction() as s:
        outbox.enqueue(s, "log", {"n": 2})
    stop = threading.Event()
    t = threading.Thread(target=run_forever, args=(ctx, stop, 0.05))
    t.start()
    for _ in range(100):
        with ctx.session() as s:
            from core.models import OutboxMessage
            if s.query(OutboxMessage).filter_by(status="sent").count():
                break
        stop.wait(0.05)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    with ctx.session() as s:
        assert s.query(OutboxMessage).filter_by(status="sent").count() == 1
