"""pytest plugin (entry point ``pytest11: pharmo2o``): fixtures for pharmo2o and its plugins.

Backend: ``PHARMO2O_TEST_DATABASE=sqlite`` (default) or ``postgresql``; the
server is ``PHARMO2O_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
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


def backend() -> str:
    value = os.environ.get("PHARMO2O_TEST_DATABASE", "sqlite").lower()
    if value not in ("sqlite", "postgresql"):
        raise pytest.UsageError(f"PHARMO2O_TEST_DATABASE must be sqlite or postgresql, not {value!r}")
    return value


def pg_admin_url() -> str:
    return os.environ.get("PHARMO2O_TEST_PG_URL", DEFAULT_PG).replace("postgresql://", "postgresql+psycopg://", 1)


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

    def drop_all(self) -> None:
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

    def factory(enabled=(), extra_plugins=(), settings=None, migrated=True, url=None) -> Context:
        enabled = list(enabled) + [m.manifest.name for m in extra_plugins if m.manifest.name not in enabled]
        url = url or pharmo2o_databases.fresh(enabled, extra_plugins, tmp_path, migrated=migrated)
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
