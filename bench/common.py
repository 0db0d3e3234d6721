"""What every bench script shares: a server on a fresh database, HTTP calls, the results file.

Each script in ``bench/`` starts its own server(s) on 127.0.0.1, prints a table and appends it
to ``bench/RESULTS.md`` with the date, the machine and the versions (:func:`record`).
Figures that matter are ratios of two things measured in the same run, alternating, the
median of several rounds (:func:`median`): this machine is shared and noisy.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
ALL_PLUGINS = ["prescription_review", "loyalty", "pos_sync", "wechat_channel"]

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def call(base: str, method: str, path: str, body=None, token: str | None = None, headers: dict | None = None,
         timeout: float = 300):
    """One JSON request; an HTTP error ends the bench with the server's answer."""
    data = None if body is None else json.dumps(body).encode()
    h = {"Content-Type": "application/json", **(headers or {})}
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')[:500]}") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_admin(pg_url: str = DEFAULT_PG):
    from sqlalchemy import create_engine
    return create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")


class Database:
    """A fresh, migrated pharmo2o database (SQLite file or PostgreSQL database) with an admin user.

    ``with Database("postgresql", plugins=[...]) as db:`` -> ``db.url``, ``db.config`` (a TOML file),
    ``db.admin`` / ``db.password``; the PostgreSQL database is dropped on exit.
    """

    def __init__(self, kind: str, plugins: list[str] | None = None, pg_url: str = DEFAULT_PG,
                 settings: dict | None = None) -> None:
        if kind not in ("sqlite", "postgresql"):
            raise SystemExit(f"unknown database kind {kind!r} (sqlite or postgresql)")
        self.kind, self.pg_url = kind, pg_url
        self.plugins = list(ALL_PLUGINS if plugins is None else plugins)
        self.settings = settings or {}
        self._tmp = tempfile.TemporaryDirectory(prefix="p2o-bench-")
        self.workdir = Path(self._tmp.name)
        self.dbname = f"p2o_bench_{uuid.uuid4().hex[:8]}"
        self.admin, self.password = "bench-admin", uuid.uuid4().hex

    def env(self) -> dict:
        return {k: v for k, v in os.environ.items() if not k.startswith("PHARMO2O_")} | {
            "PHARMO2O_CONFIG": str(self.config)}

    def __enter__(self) -> "Database":
        import tomli_w
        from sqlalchemy import text
        if self.kind == "sqlite":
            self.url = f"sqlite:///{self.workdir / 'bench.db'}"
        else:
            admin = pg_admin(self.pg_url)
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{self.dbname}"'))
            admin.dispose()
            self.url = self.pg_url.rsplit("/", 1)[0] + "/" + self.dbname
        self.config = self.workdir / "bench.toml"
        self.config.write_text(tomli_w.dumps({"database_url": self.url, "plugins": {"enabled": self.plugins},
                                              **self.settings}), encoding="utf-8")
        self.cli("init")
        self.cli("users", "create", self.admin, "--role", "admin", "--password", self.password)
        return self

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-c", "from core.cli import main; main()", *args],
                              cwd=self.workdir, env=self.env(), capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"pharmo2o {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def engine(self, **kw):
        from core.db import make_engine
        return make_engine(self.url, **kw)

    def __exit__(self, *exc) -> None:
        if self.kind == "postgresql":
            from sqlalchemy import text
            admin = pg_admin(self.pg_url)
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)'))
            admin.dispose()
        self._tmp.cleanup()


class Server:
    """pharmo2o under gunicorn (``workers`` sync workers) on a :class:`Database`; a context manager.

    ``base`` is its URL; ``token()`` logs the admin in; ``worker_pids()`` lists its workers.
    """

    def __init__(self, db: Database, workers: int = 2, name: str = "server", plugins: list[str] | None = None,
                 env: dict | None = None) -> None:
        self.db, self.workers, self.name = db, workers, name
        self.extra_env = dict(env or {})  # e.g. {"PYTHONPATH": a checkout of other code} to serve that code
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = db.workdir / f"{name}.log"
        self.proc = None
        #: the configuration served: the database's, or a copy enabling only ``plugins`` (same database,
        #: e.g. core only beside all plugins; the database must have been created with at least those)
        self.config = db.config
        if plugins is not None:
            import tomllib
            import tomli_w
            settings = tomllib.loads(db.config.read_text(encoding="utf-8"))
            settings.setdefault("plugins", {})["enabled"] = list(plugins)
            self.config = db.workdir / f"{name}.toml"
            self.config.write_text(tomli_w.dumps(settings), encoding="utf-8")

    def __enter__(self) -> "Server":
        code = f"from core.api.server import serve; serve({str(self.config)!r}, '127.0.0.1:{self.port}', {self.workers})"
        env = self.db.env() | {"PHARMO2O_CONFIG": str(self.config)} | self.extra_env
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=self.db.workdir, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.base + "/api/v1/health", timeout=2).read()
                if len(self.worker_pids()) >= self.workers:
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(self.log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.2)

    def token(self) -> str:
        return call(self.base, "POST", "/api/v1/auth/token", {"username": self.db.admin, "password": self.db.password})["token"]

    def worker_pids(self) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except OSError:
            return []

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and self.log_path.exists():
            print("--- server log (tail) ---\n" + self.log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Vacuum:
    """Stands in for autovacuum when the PostgreSQL server runs without it (test servers often do):
    hot rows (stock lots) are rewritten on every sale, and without vacuum their dead versions pile up."""

    def __init__(self, url: str, tables: tuple[str, ...], every: int = 4):
        from sqlalchemy import create_engine, text
        self.engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                                    isolation_level="AUTOCOMMIT")
        with self.engine.connect() as c:
            self.needed = c.execute(text("SHOW autovacuum")).scalar() == "off"
        self.tables, self.every, self.calls = tables, every, 0
        if self.needed:
            print("note: this PostgreSQL server runs with autovacuum off; the bench vacuums the busy tables itself")

    def __call__(self, force: bool = False) -> None:
        from sqlalchemy import text
        self.calls += 1
        if self.needed and (force or self.calls % self.every == 0):
            with self.engine.connect() as c:
                c.execute(text(f"VACUUM (ANALYZE) {', '.join(self.tables)}"))

    def close(self) -> None:
        self.engine.dispose()


# ------------------------------------------------------------------ HTTP load with wrk

def ensure_wrk() -> str:
    """The path of Debian's ``wrk``, installed with apt-get when missing and running as root
    (as scripts/system-deps.sh does); otherwise the bench stops with what to install."""
    import shutil
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (apt-get install wrk)", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"], env=env, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("error: this bench needs the HTTP load generator wrk: apt-get install wrk (as root)")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    for unit in ("us", "ms", "s", "m"):
        if text.endswith(unit) and text[:-len(unit)].replace(".", "", 1).isdigit():
            return float(text[:-len(unit)]) * _UNITS[unit]
    raise ValueError(f"not a wrk duration: {text!r}")


def wrk(url: str, *, connections: int, duration: float = 5, threads: int | None = None,
        headers: dict | None = None, timeout: float = 10) -> dict:
    """Run ``wrk --latency`` against ``url``: ``{"rps", "p50", "p99" (ms), "requests", "errors"}``.

    Any non-2xx/3xx answer ends the bench (a fast 401 is not a figure); socket errors
    (connect, read, write, timeout) are counted in ``errors``.
    """
    threads = threads or min(connections, 2)
    cmd = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", f"--timeout={max(1, round(timeout))}s", "--latency"]
    for key, value in (headers or {}).items():
        cmd += ["-H", f"{key}: {value}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    result = {"errors": 0, "requests": 0}
    for line in out.stdout.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(words[1])
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            result["p" + words[0][:-1]] = _ms(words[1])
        elif "requests in" in line:
            result["requests"] = int(words[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            raise SystemExit(f"wrk got error answers from {url}:\n{out.stdout}")
        elif line.strip().startswith("Socket errors:"):
            result["errors"] = sum(int(w.rstrip(",")) for w in words if w.rstrip(",").isdigit())
    if "rps" not in result or "p50" not in result:
        raise SystemExit(f"could not read wrk's output:\n{out.stdout}\n{out.stderr}")
    return result


# ------------------------------------------------------------------ statistics and the results file

def median(values) -> float:
    return statistics.median(list(values))


def percentile(values, p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, nearest rank."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = max(0, min(len(data) - 1, int(round(p / 100 * len(data) + 0.5)) - 1))
    return data[k]


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table (numbers formatted by the caller)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def versions(*packages: str) -> str:
    import importlib.metadata as md
    out = []
    for name in ("pharmo2o", "falcon", "sqlalchemy", "gunicorn", "psycopg", *packages):
        try:
            out.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(out)


def machine(database: str | None = None) -> str:
    parts = [f"{os.cpu_count()} cores", f"Python {platform.python_version()}", platform.machine()]
    if database == "postgresql":
        try:
            from sqlalchemy import text
            engine = pg_admin()
            with engine.connect() as c:
                parts.append(c.execute(text("SHOW server_version")).scalar().split()[0].join(["PostgreSQL ", ""]))
            engine.dispose()
        except Exception as exc:  # the figure is still worth recording
            parts.append(f"PostgreSQL (version unknown: {exc.__class__.__name__})")
    elif database == "sqlite":
        import sqlite3
        parts.append(f"SQLite {sqlite3.sqlite_version}")
    return ", ".join(parts)


def record(title: str, body: str, *, database: str | None = None, command: str | None = None,
           packages: tuple[str, ...] = ()) -> None:
    """Print ``body`` (a table and notes) and append it to bench/RESULTS.md under a dated heading."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = command or "python " + " ".join([str(Path(sys.argv[0]).relative_to(REPO)) if Path(sys.argv[0]).is_absolute()
                                               and Path(sys.argv[0]).is_relative_to(REPO) else sys.argv[0], *sys.argv[1:]])
    block = (f"## {title} ({now})\n\n"
             f"- machine: {machine(database)}\n- versions: {versions(*packages)}\n- command: `{command}`\n\n"
             f"{body.rstrip()}\n\n")
    print("\n" + block)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in `bench/` (newest last). "
                           "See the README's Performance section for how to run them.\n\n", encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(block)
