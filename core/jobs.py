"""Periodic jobs: the outbox dispatcher, unpaid-order expiry and whatever plugins add.

Jobs come from the ``register_jobs`` hook. The runner (``pharmo2o worker``,
also started beside gunicorn by ``pharmo2o serve``) calls each job when its
interval has passed; a failing job is logged and tried again next interval,
never stopping the others. Jobs are written to be safe when several runners
run at once (claims, row locks and unique keys), so a runner per machine is fine.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Job", "jobs_of", "run_due", "run_forever"]

log = logging.getLogger("pharmo2o.jobs")


@dataclass(frozen=True)
class Job:
    name: str  # unique across plugins, shown in logs
    interval: float  # seconds between runs
    run: Callable[[Any], Any]  # run(ctx) -> a short summary (logged when truthy)


def jobs_of(registry) -> list[Job]:
    return registry.concat_named("register_jobs", "job", key=lambda job: job.name)


def run_due(ctx, jobs: list[Job], last_run: dict[str, float], now: float | None = None) -> dict[str, Any]:
    """Run every job whose interval has passed; returns ``{name: summary or exception}``."""
    now = time.monotonic() if now is None else now
    results: dict[str, Any] = {}
    for job in jobs:
        if now - last_run.get(job.name, float("-inf")) < job.interval:
            continue
        last_run[job.name] = now
        try:
            results[job.name] = job.run(ctx)
            if results[job.name]:
                log.info("job %s: %s", job.name, results[job.name])
        except Exception as exc:  # one job's failure never stops the runner
            results[job.name] = exc
            log.exception("job %s failed; it runs again in %ss", job.name, job.interval)
    return results


def run_forever(ctx, stop: threading.Event | None = None, tick: float = 1.0) -> None:
    """Run the jobs until ``stop`` is set (or forever)."""
    stop = stop or threading.Event()
    jobs = jobs_of(ctx.registry)
    log.info("job runner started: %s", ", ".join(f"{j.name} every {j.interval:g}s" for j in jobs))
    last: dict[str, float] = {}
    while not stop.is_set():
        run_due(ctx, jobs, last)
        stop.wait(tick)


# ------------------------------------------------ the core's own jobs (default plugin "core.jobs")

from .hookspecs import hookimpl  # noqa: E402


def _dispatch_outbox(ctx) -> str:
    from .outbox import dispatch
    result = dispatch(ctx)
    return "" if not (result.sent or result.failed or result.dead) else \
        f"sent {result.sent}, failed {result.failed}, dead {result.dead}"


def _expire_unpaid(ctx) -> str:
    from .orders import expire_unpaid
    n = expire_unpaid(ctx)
    return f"cancelled {n} expired unpaid order(s)" if n else ""


@hookimpl
def register_jobs():
    return [Job("outbox.dispatch", 5, _dispatch_outbox), Job("orders.expire_unpaid", 60, _expire_unpaid)]
