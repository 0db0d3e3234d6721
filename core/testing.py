"""pytest plugin (entry point ``pytest11: pharmo2o``): fixtures for pharmo2o and its plugins.

Backend: ``PHARMO2O_TEST_DATABASE=sqlite`` (default) or ``postgresql``; the
server is ``PHARMO2O_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
``PHARMO2O_TEST_DATABASE`` may also be that URL itself (``postgresql://user@host:port/db``):
PostgreSQL on that server (the role must be allowed to create databases).
When PostgreSQL is selected and unreachable the tests fail, they never skip.

Each test gets a fresh database copied from a migrated template (one template
per set of enabled plugins per run): a file copy on SQLite, ``CREATE DATABASE
... TEMPLATE`` on PostgreSQL.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from .config import Config
from .context import Context

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _given_pg_url() -> str | None:
    value = os.environ.get("PHARMO2O_TEST_DATABASE", "")
    return value if value.lower().startswith(("postgresql://", "postgresql+psycopg://")) else None


def backend() -> str:
    if _given_pg_url():
        return "postgresql"
    value = os.environ.get("PHARMO2O_TEST_DATABASE", "sqlite").lower()
    if value not in ("sqlite", "postgresql"):
        raise pytest.UsageError(
            f"PHARMO2O_TEST_DATABASE must be sqlite, postgresql or a postgresql:// URL, not {value!r}")
    return value


def pg_admin_url() -> str:
    url = _given_pg_url() or os.environ.get("PHARMO2O_TEST_PG_URL", DEFAULT_PG)
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _pg_url(dbname: str) -> str:
    base = pg_admin_url().rsplit("/", 1)[0]
    return f"{base}/{dbname}"


class Databases:
    """Creates migrated template databases and fresh copies of them."""

    def __init__(self, workdir: Path, kind: str):
        self.workdir = workdir
        self.kind = kind
        self.templates: dict[tuple, str] = {}
        self.created: list[str] = []
        self.run_id = uuid.uuid4().hex[:8]
        self._admin = None
        # a PostgreSQL DROP DATABASE takes about a second: a thread drops each test's database
        # while the next tests run, instead of all of them at the end of the session
        self._doomed = None
        self._dropper = None

    def admin(self):
        if self._admin is None:
            self._admin = create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")
            try:
                with self._admin.connect() as c:
                    c.execute(text("SELECT 1"))
            except Exception as exc:
                raise RuntimeError(f"PostgreSQL at {pg_admin_url()} is unreachable: {exc}") from exc
        return self._admin

    def _migrate(self, url: str, enabled: list[str], extra) -> None:
        from . import migrations
        ctx = Context.create(Config(path=self.workdir / "none.toml", data={"database_url": url}),
                             enabled=enabled, extra_plugins=extra)
        try:
            migrations.upgrade(ctx)
        finally:
            ctx.dispose()

    def template(self, enabled: list[str], extra=()) -> str:
        key = (tuple(sorted(enabled)), tuple(sorted(m.__name__ for m in extra)))
        if key not in self.templates:
            tag = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
            if self.kind == "sqlite":
                path = self.workdir / f"template_{tag}.db"
                url = f"sqlite:///{path}"
                self._migrate(url, list(enabled), extra)
                self.templates[key] = str(path)
            else:
                name = f"p2o_tpl_{self.run_id}_{tag}"
                with self.admin().connect() as c:
                    c.execute(text(f'CREATE DATABASE "{name}"'))
                self.created.append(name)
                self._migrate(_pg_url(name), list(enabled), extra)
                self.templates[key] = name
        return self.templates[key]

    def fresh(self, enabled: list[str], extra=(), tmp_path: Path | None = None, migrated: bool = True) -> str:
        """A URL of a new database (migrated for ``enabled`` unless ``migrated`` is false)."""
        if self.kind == "sqlite":
            path = (tmp_path or self.workdir) / f"db_{uuid.uuid4().hex[:8]}.db"
            if migrated:
                shutil.copyfile(self.template(enabled, extra), path)
            return f"sqlite:///{path}"
        name = f"p2o_{self.run_id}_{uuid.uuid4().hex[:10]}"
        with self.admin().connect() as c:
            if migrated:
                c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template(enabled, extra)}"'))
            else:
                c.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return _pg_url(name)

    def release(self, url: str) -> None:
        """A test is done with ``url``'s database: drop it in the background (PostgreSQL only)."""
        if self.kind != "postgresql":
            return
        name = url.rsplit("/", 1)[-1]
        if name not in self.created or name in self.templates.values():
            return
        self.created.remove(name)
        if self._dropper is None:
            import queue
            import threading
            self._doomed = queue.Queue()
            self._dropper = threading.Thread(target=self._drop_loop, name="pharmo2o-db-dropper", daemon=True)
            self._dropper.start()
        self._doomed.put(name)

    def _drop_loop(self) -> None:
        while True:
            name = self._doomed.get()
            if name is None:
                return
            try:
                with self.admin().connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception:  # left for drop_all's sweep
                self.created.append(name)

    def drop_all(self) -> None:
        if self._dropper is not None:
            self._doomed.put(None)
            self._dropper.join()
        if self._admin is None:
            return
        with self._admin.connect() as c:
            for name in reversed(self.created):
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._admin.dispose()


@pytest.fixture(scope="session")
def pharmo2o_databases(tmp_path_factory):
    dbs = Databases(tmp_path_factory.mktemp("pharmo2o-db"), backend())
    if dbs.kind == "postgresql":
        dbs.admin()  # fail early and loudly when the server is unreachable
    yield dbs
    dbs.drop_all()


@pytest.fixture
def make_ctx(pharmo2o_databases, tmp_path):
    """``make_ctx(enabled=[...], extra_plugins=[...], settings={...})`` -> a Context on a fresh database."""
    made: list[Context] = []
    own: list[str] = []

    def factory(enabled=(), extra_plugins=(), settings=None, migrated=True, url=None) -> Context:
        enabled = list(enabled) + [m.manifest.name for m in extra_plugins if m.manifest.name not in enabled]
        if url is None:  # made here, so dropped after the test
            url = pharmo2o_databases.fresh(enabled, extra_plugins, tmp_path, migrated=migrated)
            own.append(url)
        data = {"database_url": url, "plugins": {"enabled": enabled}}
        for key, value in (settings or {}).items():
            node = data
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        config = Config(path=tmp_path / "pharmo2o.toml", data=data)
        ctx = Context.create(config, extra_plugins=extra_plugins)
        made.append(ctx)
        return ctx

    yield factory
    for ctx in made:
        ctx.dispose()
    for url in own:
        pharmo2o_databases.release(url)


@pytest.fixture
def ctx(make_ctx):
    """A Context with only the core enabled, on a fresh migrated database."""
    return make_ctx()


@pytest.fixture
def db_backend() -> str:
    return backend()


# ----------------------------------------------------------------------- the API

API_ROLES = ("admin", "store_manager", "pharmacist", "clerk", "customer")
TEST_PASSWORD = "test-password-1"


def _password_hash() -> str:
    global _PASSWORD_HASH
    if _PASSWORD_HASH is None:
        from .auth import hash_password
        _PASSWORD_HASH = hash_password(TEST_PASSWORD)
    return _PASSWORD_HASH


_PASSWORD_HASH: str | None = None


class ApiClient:
    """A Falcon test client on one app, with a bearer token per role.

    ``store_id`` is the store the store-bound staff (store_manager, pharmacist,
    clerk) belong to; ``admin`` is bound to no store; ``customer_id`` is the
    customer behind the ``customer`` token. Users are named after their role
    and share the password :data:`TEST_PASSWORD`.
    """

    def __init__(self, ctx: Context, app, tokens: dict[str, str], store_id: int, customer_id: int,
                 user_ids: dict[str, int]):
        from falcon import testing as falcon_testing
        self.ctx = ctx
        self.app = app
        self.client = falcon_testing.TestClient(app)
        self.tokens = tokens  # role -> bearer token
        self.store_id = store_id
        self.customer_id = customer_id
        self.user_ids = user_ids  # role -> user id

    def headers(self, role: str | None = None, headers: dict | None = None) -> dict:
        out = dict(headers or {})
        if role is not None:
            out["Authorization"] = f"Bearer {self.tokens[role]}"
        return out

    def request(self, method: str, path: str, *, role: str | None = None, json=None, body=None,
                headers: dict | None = None, params: dict | None = None):
        """Simulate a request (``role`` picks the token; ``None`` sends none); returns Falcon's ``Result``."""
        kwargs: dict = {"headers": self.headers(role, headers)}
        if json is not None:
            kwargs["json"] = json
        if body is not None:
            kwargs["body"] = body
        if params is not None:
            kwargs["params"] = params
        return self.client.simulate_request(method, path, **kwargs)

    def get(self, path: str, role: str | None = "admin", **kw):
        return self.request("GET", path, role=role, **kw)

    def post(self, path: str, role: str | None = "admin", **kw):
        return self.request("POST", path, role=role, **kw)

    def patch(self, path: str, role: str | None = "admin", **kw):
        return self.request("PATCH", path, role=role, **kw)

    def token(self, *, user_id: int | None = None, customer_id: int | None = None) -> str:
        """Mint a token for another user or customer of this database."""
        from .api import tokens
        from .models import User
        with self.ctx.transaction() as session:
            if customer_id is not None:
                return tokens.issue_customer_token(self.ctx, session, customer_id).token
            return tokens.issue_user_token(session, session.get(User, user_id), tokens.token_ttl(self.ctx)).token


def build_api_client(ctx: Context, *, validate_responses: bool = True) -> ApiClient:
    """Seed a store, one user per staff role and a customer, mint their tokens, build the app."""
    from .api import create_app, tokens
    from .models import Customer, Store, User
    with ctx.transaction() as session:
        store = Store(code="HOME", name="Home store", address="", phone="", active=True)
        session.add(store)
        session.flush()
        users = {}
        for role in API_ROLES[:-1]:
            user = User(username=role, password_hash=_password_hash(), role=role, display_name=role,
                        store_id=None if role == "admin" else store.id, active=True)
            session.add(user)
            session.flush()
            users[role] = user
        customer = Customer(name="顾客", phone="13800000000", store_id=store.id)
        session.add(customer)
        session.flush()
        ttl = tokens.token_ttl(ctx)
        issued = {role: tokens.issue_user_token(session, user, ttl).token for role, user in users.items()}
        issued["customer"] = tokens.issue_customer_token(ctx, session, customer.id).token
        ids = (store.id, customer.id, {role: u.id for role, u in users.items()})
    app = create_app(ctx, validate_responses=validate_responses)
    return ApiClient(ctx, app, issued, ids[0], ids[1], ids[2])


@pytest.fixture
def make_api(make_ctx):
    """``make_api(enabled=[...], extra_plugins=[...], settings={...})`` -> an :class:`ApiClient`
    on a fresh database (responses checked against their schemas)."""
    def factory(enabled=(), extra_plugins=(), settings=None, validate_responses=True) -> ApiClient:
        ctx = make_ctx(enabled=enabled, extra_plugins=extra_plugins, settings=settings)
        return build_api_client(ctx, validate_responses=validate_responses)
    return factory


@pytest.fixture
def api(make_api) -> ApiClient:
    """An :class:`ApiClient` with only the core enabled."""
    return make_api()


# ------------------------------------------------------------ for plugin authors
#
# A plugin's tests in a few lines (its conftest.py names the plugin once):
#
#     @pytest.fixture
#     def pharmo2o_enabled():
#         return ["my_plugin"]
#
#     def test_an_order_on_my_channel(shop):
#         order = shop.place_order(channel="my_channel").json
#         shop.pay(order["id"])
#         assert shop.run_outbox().sent == 1
#
# ``plugin_api`` is an :class:`ApiClient` with those plugins enabled on a fresh
# database; ``shop`` adds a stocked catalogue and order helpers on top of it;
# ``fake_http`` is a recording HTTP server standing in for an outside API.

@pytest.fixture
def pharmo2o_enabled() -> list[str]:
    """The plugins ``plugin_api`` and ``shop`` enable (by name, as installed): override it in your conftest."""
    return []


@pytest.fixture
def pharmo2o_settings() -> dict:
    """Configuration for ``plugin_api`` and ``shop`` as ``{"section.key": value}``: override it when needed."""
    return {}


@pytest.fixture
def plugin_api(make_api, pharmo2o_enabled, pharmo2o_settings) -> ApiClient:
    """An :class:`ApiClient` (a token per role) on a fresh database with ``pharmo2o_enabled`` enabled."""
    return make_api(enabled=list(pharmo2o_enabled), settings=dict(pharmo2o_settings))


def run_outbox(ctx: Context, now=None):
    """Deliver the due outbox messages once (as the job runner does); returns :class:`core.outbox.DispatchResult`."""
    from .outbox import dispatch
    return dispatch(ctx, now=now)


def run_jobs(ctx: Context, *names: str) -> dict:
    """Run the periodic jobs (all, or those named) once, now; returns ``{name: summary or exception}``."""
    from .jobs import jobs_of, run_due
    jobs = jobs_of(ctx.registry)
    unknown = sorted(set(names) - {j.name for j in jobs})
    if unknown:
        raise ValueError(f"no job named {', '.join(unknown)}; jobs: {', '.join(j.name for j in jobs)}")
    return run_due(ctx, [j for j in jobs if not names or j.name in names], {})


def outbox_messages(ctx: Context, kind: str | None = None) -> list[dict]:
    """The outbox, oldest first: ``[{id, kind, payload, status, attempts, last_error}]``."""
    from sqlalchemy import select

    from .models import OutboxMessage
    with ctx.session() as session:
        stmt = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind is not None:
            stmt = stmt.where(OutboxMessage.kind == kind)
        return [{"id": m.id, "kind": m.kind, "payload": dict(m.payload), "status": m.status,
                 "attempts": m.attempts, "last_error": m.last_error} for m in session.scalars(stmt)]


class Shop:
    """A stocked store on an :class:`ApiClient`, with helpers that go through the API like a client.

    ``otc`` and ``rx`` are product dicts (an OTC-B and a prescription drug,
    each with 50 units in :attr:`store_id`); ``customer_id`` is the customer
    behind the ``customer`` token. Helpers take ``expect`` (the status to
    assert, ``None`` to assert nothing) and return Falcon's ``Result``.
    """

    def __init__(self, api: ApiClient):
        self.api = api
        self.ctx = api.ctx
        self.store_id = api.store_id
        self.customer_id = api.customer_id
        self._seq = 0
        self.otc = self.product(rx_class="otc_b", price_fen=1250, generic_name="布洛芬缓释胶囊")
        self.rx = self.product(rx_class="rx", price_fen=3680, generic_name="阿莫西林胶囊")

    @staticmethod
    def _check(result, expect):
        if expect is not None:
            assert result.status_code == expect, f"expected {expect}, got {result.status_code}: {result.text}"
        return result

    def product(self, *, stock: int = 50, expiry_days: int = 365, **fields) -> dict:
        """Create a product (admin) and receive ``stock`` units of one lot into the store."""
        import datetime as dt
        self._seq += 1
        body = {"sku": f"KIT-{self._seq}", "generic_name": f"测试药品{self._seq}", "specification": "0.3g*24粒",
                "approval_number": f"国药准字H{20990000 + self._seq:08d}", "rx_class": "otc_b", "price_fen": 1000}
        body.update(fields)
        made = self._check(self.api.post("/api/v1/products", json=body), 201).json
        if stock:
            expiry = (dt.date.today() + dt.timedelta(days=expiry_days)).isoformat()
            self._check(self.api.post(f"/api/v1/stores/{self.store_id}/stock/receipts", json={
                "product_id": made["id"], "lot_no": f"KITLOT{self._seq}", "expiry": expiry, "quantity": stock}), 201)
        return made

    def order_body(self, lines=None, *, channel: str = "store", fulfilment: str = "pickup", **fields) -> dict:
        """An order request: ``lines`` as ``[(product_id, quantity), ...]`` (default: one unit of ``otc``)."""
        lines = lines if lines is not None else [(self.otc["id"], 1)]
        body = {"store_id": self.store_id, "customer_id": self.customer_id, "channel": channel,
                "fulfilment": fulfilment, "lines": [{"product_id": p, "quantity": q} for p, q in lines]}
        if fulfilment == "delivery":
            body["delivery_address"] = "上海市黄浦区南京东路1号"
        body.update(fields)
        return body

    def place_order(self, lines=None, *, role: str = "clerk", key: str | None = None, expect: int | None = 201,
                    **fields):
        """``POST /api/v1/orders`` as ``role`` (``customer`` orders online, default channel ``web``)."""
        if role == "customer":
            fields.setdefault("channel", "web")
        headers = {"Idempotency-Key": key} if key else None
        return self._check(self.api.post("/api/v1/orders", role=role, json=self.order_body(lines, **fields),
                                          headers=headers), expect)

    def pay(self, order_id: int, *, provider: str = "cash", role: str = "clerk", expect: int | None = 200):
        return self._check(self.api.post(f"/api/v1/orders/{order_id}/pay", role=role,
                                         json={"provider": provider}), expect)

    def fulfil(self, order_id: int, *, role: str = "clerk", expect: int | None = 200):
        return self._check(self.api.post(f"/api/v1/orders/{order_id}/fulfil", role=role), expect)

    def complete(self, order_id: int, pickup_code: str | None = None, *, role: str = "clerk",
                 expect: int | None = 200):
        body = {"pickup_code": pickup_code} if pickup_code is not None else {}
        return self._check(self.api.post(f"/api/v1/orders/{order_id}/complete", role=role, json=body), expect)

    def order(self, order_id: int) -> dict:
        return self._check(self.api.get(f"/api/v1/orders/{order_id}"), 200).json

    def available(self, product_id: int) -> int:
        """Units of ``product_id`` the store can still sell (on hand minus reservations, unexpired)."""
        rows = self._check(self.api.get(f"/api/v1/stores/{self.store_id}/stock",
                                        params={"product_id": str(product_id)}), 200).json["items"]
        return sum(r["available"] for r in rows if r["product_id"] == product_id)

    def run_outbox(self, now=None):
        return run_outbox(self.ctx, now=now)

    def run_jobs(self, *names: str) -> dict:
        return run_jobs(self.ctx, *names)

    def outbox(self, kind: str | None = None) -> list[dict]:
        return outbox_messages(self.ctx, kind)


@pytest.fixture
def shop(plugin_api) -> Shop:
    """A :class:`Shop` on ``plugin_api``: a store with two stocked products, a customer, order helpers."""
    return Shop(plugin_api)


class FakeHttpServer:
    """A recording HTTP server on 127.0.0.1 standing in for an outside API (a delivery platform, WeChat...).

    Every request is kept in :attr:`requests` as a dict ``{method, path, query,
    headers, body, json}``; answers are set per path with :meth:`answer`
    (default ``200 {"ok": true}``), optionally after a ``delay`` (to test
    timeouts) or failing a number of times first.
    """

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                import json as _json
                import time as _time
                from urllib.parse import parse_qs, urlsplit
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                url = urlsplit(self.path)
                try:
                    parsed = _json.loads(raw) if raw else None
                except ValueError:
                    parsed = None
                record = {"method": self.command, "path": url.path, "query": parse_qs(url.query),
                          "headers": {k.lower(): v for k, v in self.headers.items()}, "body": raw, "json": parsed}
                with server._lock:
                    server.requests.append(record)
                    status, body, delay = server._next_answer(url.path)
                if delay:
                    _time.sleep(delay)
                data = _json.dumps(body, ensure_ascii=False).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (a timeout test)
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, *args):  # quiet
                pass

        self._lock = threading.Lock()
        self.requests: list[dict] = []
        self._answers: dict[str, list] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a handler still sleeping (a timeout test) is not waited for
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-http", daemon=True)
        self._thread.start()

    def answer(self, path: str, *, status: int = 200, json=None, delay: float = 0.0, times: int | None = None):
        """Answer requests to ``path`` with ``status`` and ``json`` (after ``delay`` seconds). The latest answer
        set for a path wins; one with ``times`` is used for that many requests, then the earlier one (or the
        default) applies again."""
        with self._lock:
            self._answers.setdefault(path, []).append([status, {"ok": True} if json is None else json, delay, times])

    def _next_answer(self, path: str):
        answers = self._answers.get(path, [])
        for entry in reversed(answers):
            if entry[3] is None or entry[3] > 0:
                if entry[3] is not None:
                    entry[3] -= 1
                return entry[0], entry[1], entry[2]
        return 200, {"ok": True}, 0.0

    def received(self, path: str | None = None) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def fake_http():
    """A :class:`FakeHttpServer` on 127.0.0.1 (its ``url`` goes into your plugin's settings)."""
    server = FakeHttpServer()
    yield server
    server.close()


# ------------------------------------------------------------------ real servers (gunicorn)

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GunicornServer:
    """``ctx``'s database and configuration served by gunicorn, as ``pharmo2o serve`` runs it.

    A separate process group on 127.0.0.1 (a free port, or ``port``) with ``workers`` sync
    workers, started, stopped, killed (SIGKILL) and started again at will; everything it writes
    goes to ``log_path`` (a file, not a pipe: a full pipe would block the workers). ``settings``
    (``{"section.key": value}``) are added to the configuration file it is given; ``log_level``
    (e.g. ``"debug"``) is gunicorn's and the app's logging level (default: ``pharmo2o serve``'s).
    """

    def __init__(self, ctx: Context, tmp_path: Path, *, workers: int = 2, name: str = "gunicorn",
                 port: int | None = None, timeout: int | None = None, settings: dict | None = None,
                 log_level: str | None = None) -> None:
        import copy

        import tomli_w
        data = copy.deepcopy(ctx.config.data)
        for key, value in (settings or {}).items():
            node = data
            *parents, last = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        self.workdir = tmp_path / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "pharmo2o.toml"
        self.config.write_text(tomli_w.dumps(data), encoding="utf-8")
        self.log_path = self.workdir / "server.log"
        self.workers, self.timeout, self.log_level = workers, timeout, log_level
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, wait: float = 60) -> "GunicornServer":
        import subprocess
        import sys
        import time
        import urllib.request
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHARMO2O_")}
        extra = "" if self.timeout is None else f", timeout={self.timeout}"
        if self.log_level is not None:
            extra += f", log_level={self.log_level!r}"
        code = (f"from core.api.server import serve; "
                f"serve({str(self.config)!r}, '127.0.0.1:{self.port}', {self.workers}{extra})")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=self.workdir, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + wait
        while True:  # up when every worker can answer (health reaches the database)
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=2) as r:
                    if r.status == 200 and len(self.worker_pids()) >= self.workers:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"gunicorn did not come up:\n{self.log_text()[-3000:]}")
            time.sleep(0.2)

    def worker_pids(self) -> list[int]:
        """The gunicorn workers (children of the master) alive now."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return []
        return [int(pid) for pid in children]

    def kill_worker(self, pid: int | None = None) -> int:
        """SIGKILL one worker (the first one unless ``pid``); the master forks a replacement."""
        import signal
        pid = pid or self.worker_pids()[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self, timeout: float = 30) -> None:
        """A graceful stop (SIGTERM: the workers finish their requests), SIGKILL after ``timeout``."""
        import signal
        import subprocess
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the whole server (master and workers): whatever it was doing is cut off."""
        import signal
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=20)
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def gunicorn(tmp_path):
    """``gunicorn(ctx, workers=2, **kw)`` -> a started :class:`GunicornServer`; all stopped after the test."""
    started: list[GunicornServer] = []

    def factory(ctx: Context, **kw) -> GunicornServer:
        kw.setdefault("name", f"gunicorn-{len(started) + 1}")
        server = GunicornServer(ctx, tmp_path, **kw)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop(timeout=10)


# ------------------------------------------------------------------ browser tests (pages)

CHROMIUM = os.environ.get("PHARMO2O_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class LiveServer:
    """An app served over real HTTP on 127.0.0.1 (a free port) from a thread, for a browser to open."""

    def __init__(self, app) -> None:
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        class Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True
            allow_reuse_address = True

        class QuietHandler(WSGIRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - the app writes its own access log
                pass

        import threading
        self.httpd = make_server("127.0.0.1", 0, app, server_class=Server, handler_class=QuietHandler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="pharmo2o-live-server", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole run: Debian's package driven by Playwright (never a download).

    One per session because Playwright's sync API cannot be started twice in one thread.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/system-deps.sh` (Debian's chromium package)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives headless Chromium (set automatically for tests using `browser`)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


# ------------------------------------------------------------------ races

def wide_context(ctx, size: int = 60) -> Context:
    """A second Context on ``ctx``'s database whose pool has room for ``size`` threads at once."""
    from .db import make_engine, make_sessionmaker
    engine = make_engine(ctx.config.database_url, pool_size=size, max_overflow=5, pool_timeout=60)
    return Context(ctx.config, engine, make_sessionmaker(engine), ctx.registry)


def run_threads(n: int, fn, timeout: float = 120):
    """Start ``n`` threads at once (a barrier) on ``fn(i)``; ``(results, errors)`` in completion order.

    Fails the test when a thread is still running after ``timeout`` seconds (a hang, not a race).
    """
    import threading
    barrier = threading.Barrier(n)
    results, errors = [], []
    lock = threading.Lock()

    def worker(i):
        barrier.wait()
        try:
            r = fn(i)
            with lock:
                results.append(r)
        except Exception as exc:  # collected and asserted by the caller
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return results, errors
