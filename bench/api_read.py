"""Benchmark of the API's read overhead (issue 11, figure 1): ``GET /api/v1/products/{id}``.

Three servers on one fresh database, each gunicorn with the same worker count and class:

- ``all``:  pharmo2o with the four bundled plugins enabled;
- ``core``: pharmo2o with no plugin enabled (same database, its own configuration);
- ``bare``: bench/bare_app.py, Falcon + one SQLAlchemy Core select of the same row, no token;
- ``auth``: bench/bare_app.py --auth, the same plus the check every pharmo2o endpoint must make:
  the bearer token looked up (with its user) in the statement that reads the row, and the
  caller's role checked. ``auth ÷ bare`` (no target) is what that check costs the bare app;
  ``all ÷ auth`` what pharmo2o's own work beyond it costs. (Like the bare app it reads in a
  transaction, BEGIN and ROLLBACK: on PostgreSQL two round trips pharmo2o's reads do not make.)

``wrk --latency`` loads each at 1, 16 and 64 connections for ``--duration`` seconds, the servers
taking turns within each round (the order rotates from round to round); each figure is the
median of ``--rounds`` rounds, each ratio the median of the per-round ratios. pharmo2o's
endpoint needs a bearer token (every role may read a product), so wrk sends an admin's
token to all four: pharmo2o and ``auth`` pay the token lookup, the bare app does not.

Targets: all ÷ bare >= 0.85 and all ÷ core >= 0.95 (requests/s)::

    python bench/api_read.py                      # both databases, 3 s x 5 rounds, 2 workers (about 11 min)
    python bench/api_read.py --database sqlite --duration 3 --rounds 5
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (ALL_PLUGINS, DEFAULT_PG, REPO, Database, Server, call, ensure_wrk, free_port,  # noqa: E402
                    median, record, table, wrk)

APPS = ("all", "core", "auth", "bare")
TARGETS = {"all/bare": 0.85, "all/core": 0.95}


class BareServer:
    """bench/bare_app.py under gunicorn on ``db``'s database; a context manager like :class:`common.Server`."""

    def __init__(self, db: Database, workers: int, path: str, auth: bool = False, token: str | None = None) -> None:
        self.db, self.workers, self.path, self.auth, self.token = db, workers, path, auth, token
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = db.workdir / ("auth.log" if auth else "bare.log")
        self.proc = None

    def __enter__(self) -> "BareServer":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO / "bench" / "bare_app.py"), "--database-url", self.db.url,
                 "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers)] + (["--auth"] if self.auth else []),
                cwd=self.db.workdir, env=self.db.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
                urllib.request.urlopen(urllib.request.Request(self.base + self.path, headers=headers), timeout=2).read()
                return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(self.log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        import os
        import signal
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def bench(kind: str, args) -> str:
    apps = APPS + (("before",) if args.before else ())
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(Database(kind, plugins=ALL_PLUGINS, pg_url=args.pg_url))
        ours_all = stack.enter_context(Server(db, args.workers, "all"))
        ours_core = stack.enter_context(Server(db, args.workers, "core", plugins=[]))
        before = stack.enter_context(Server(db, args.workers, "before", env={"PYTHONPATH": args.before})) \
            if args.before else None
        token = ours_all.token()
        product = call(ours_all.base, "POST", "/api/v1/products", {
            "sku": "BENCH-READ-1", "barcode": "6901234567892", "generic_name": "布洛芬缓释胶囊", "brand_name": "芬必得",
            "specification": "0.3g*20粒", "dosage_form": "胶囊剂", "manufacturer": "中美天津史克制药有限公司",
            "approval_number": "国药准字H10900089", "category": "解热镇痛", "rx_class": "otc_a", "price_fen": 2580}, token)
        path = f"/api/v1/products/{product['id']}"
        headers = {"Authorization": f"Bearer {token}"}
        with BareServer(db, args.workers, path) as bare, \
                BareServer(db, args.workers, path, auth=True, token=token) as auth:
            servers = {"all": ours_all, "core": ours_core, "auth": auth, "bare": bare, "before": before}
            for name in apps:  # warm up: connections, statement caches, imports
                wrk(servers[name].base + path, connections=4, duration=1, headers=headers)
            runs: dict[tuple[int, str], list[dict]] = {}
            started = time.monotonic()
            for conns in args.connections:
                for r in range(args.rounds):
                    order = apps[r % len(apps):] + apps[:r % len(apps)]
                    for name in order:
                        runs.setdefault((conns, name), []).append(
                            wrk(servers[name].base + path, connections=conns, duration=args.duration, headers=headers))
                    line = "  ".join(f"{n} {runs[(conns, n)][-1]['rps']:.0f}/s" for n in apps)
                    print(f"[{kind}] {conns:>3} connections, round {r + 1}/{args.rounds}: {line}", file=sys.stderr)
            elapsed = time.monotonic() - started

    rows, verdicts = [], []
    for conns in args.connections:
        rps = {n: [x["rps"] for x in runs[(conns, n)]] for n in apps}
        ratio = {k: median(a / b for a, b in zip(rps[k.split("/")[0]], rps[k.split("/")[1]])) for k in TARGETS}
        for n in apps:
            ratio[f"{n}/bare"] = median(a / b for a, b in zip(rps[n], rps["bare"]))
        ratio["all/auth"] = median(a / b for a, b in zip(rps["all"], rps["auth"]))
        if args.before:
            ratio["all/before"] = median(a / b for a, b in zip(rps["all"], rps["before"]))
        for n in apps:
            rr = runs[(conns, n)]
            errors = sum(x["errors"] for x in rr)
            rows.append([conns, n, f"{median(rps[n]):.0f}", f"{median(x['p50'] for x in rr):.1f}",
                         f"{median(x['p99'] for x in rr):.1f}",
                         "" if n == "bare" else f"{ratio[n + '/bare']:.2f}",
                         f"{ratio['all/core']:.2f}" if n == "all" else "", errors or ""])
        if args.before:
            verdicts.append(f"{conns} connections: all/before {ratio['all/before']:.2f} (this code over {args.before})")
        verdicts.append(f"{conns} connections: auth/bare {ratio['auth/bare']:.2f} (no target: what the "
                        f"token check costs the bare app), all/auth {ratio['all/auth']:.2f}")
        for key, target in TARGETS.items():
            verdicts.append(f"{conns} connections: {key} {ratio[key]:.2f} ({'meets' if ratio[key] >= target else 'misses'} "
                            f">= {target})")
    body = table(["connections", "app", "req/s", "p50 ms", "p99 ms", "÷ bare", "all ÷ core", "socket errors"], rows)
    body += (f"\n\n{args.workers} sync gunicorn workers each; wrk {args.duration:g} s per run, {args.rounds} rounds "
             f"(apps alternating, order rotating), medians; ratios are medians of per-round ratios; "
             f"{elapsed:.0f} s of load.\n`all` = pharmo2o with {', '.join(ALL_PLUGINS)}; `core` = pharmo2o, no plugin; "
             f"`bare` = bench/bare_app.py (Falcon + one Core select, no token); `auth` = bench/bare_app.py --auth "
             f"(the same, the token and role checked in that select)"
             + (f"; `before` = pharmo2o (all plugins) served from the code in {args.before}" if args.before else "")
             + ".\n\n"
             + "\n".join(f"- {v}" for v in verdicts))
    if args.no_record:
        print(body)
    else:
        record(f"API read overhead: GET /api/v1/products/{{id}} ({kind})", body, database=kind)
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64])
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    parser.add_argument("--before", metavar="DIR", help="also serve (all plugins) the code of another checkout "
                        "(PYTHONPATH=DIR), alternating with the others: a before/after ratio in one run")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{Path(__file__).name}: terminated"))  # servers are stopped
    ensure_wrk()
    for kind in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        bench(kind, args)


if __name__ == "__main__":
    main()
