"""Cross-cutting work done once per request: request id and access log, the
request's transaction, body size, and authentication/authorization."""
from __future__ import annotations

import logging
import os
import re
import time
import weakref
from contextlib import ExitStack, contextmanager

import falcon
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ..errors import Forbidden
from . import tokens
from .errors import PayloadTooLarge, Unauthorized

__all__ = ["RequestContext", "ApiRequest", "read_unit", "read_engine", "read_connection", "ReadOnlyViolation", "RequestIdMiddleware", "TransactionMiddleware", "AuthMiddleware"]

access_log = logging.getLogger("pharmo2o.api.access")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestContext:
    """``req.context`` of the API: ``connection`` and ``session`` open the request's unit of work on first use."""

    def __init__(self) -> None:
        self.request_id: str = ""
        self.api = None  # core.api.app.ApiState
        self.ctx = None  # core.context.Context
        self.caller = None  # core.auth.Caller once authenticated
        self.token_hash: str | None = None
        self.operation = None
        self.body = None
        self.query = None
        self.prefetched: tuple | None = None  # the operation's Prefetch row, read with the token
        self.failed = False
        self.writes = True  # whether the unit commits (set from the operation before first use)
        self._stack: ExitStack | None = None  # a writing unit: the transaction's context manager
        self._session = None
        self._connection = None  # a read-only unit: the one connection checked out for the request
        #: work to do in units of its own once the request's unit has ended (committed or rolled
        #: back), e.g. counting a refused attempt that must persist although the request failed
        self.after_unit: list = []

    @property
    def connection(self):
        """The request's database connection, for Core statements. A read-only unit checks out one
        connection (no transaction, writes refused: :func:`read_connection`) that its session, if
        one is asked for, shares: one pool checkout per request. A writing unit's is its transaction's."""
        if self._connection is None:
            if self.writes:
                self._connection = self.session.connection()
            else:
                self._connection = read_connection(self.ctx)
        return self._connection

    @property
    def session(self):
        """The SQLAlchemy session of this request's one unit of work: a transaction committed
        when the response is a success (rolled back otherwise), or a read-only unit on the
        request's connection (constructed only when a responder or hook asks for it)."""
        if self._session is None:
            if self.writes:
                self._stack = ExitStack()
                self._session = self._stack.enter_context(self.ctx.transaction())
            else:
                self._session = self.ctx.sessions(bind=self.connection)
        return self._session

    @property
    def session_open(self) -> bool:
        return self._session is not None or self._connection is not None

    def end_unit(self, commit: bool) -> None:
        """End the unit: commit (raises on failure) or roll back a transaction; release a read-only one."""
        stack, session, conn = self._stack, self._session, self._connection
        self._stack = self._session = self._connection = None
        if stack is not None:
            if commit:
                stack.close()
            else:
                stack.__exit__(_Rollback, _Rollback(), None)
            return
        try:
            if session is not None:
                session.close()
        finally:
            if conn is not None:
                conn.close()  # back to the pool (which resets it); nothing to roll back


_READ_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_READ_STATEMENTS = ("SELECT", "WITH", "SHOW", "VALUES", "EXPLAIN")
_REFUSE = "pharmo2o_refuse_writes"


class ReadOnlyViolation(RuntimeError):
    """A read-only unit (a GET without ``writes=True``) tried to change the database."""


def _check_read(statement: str, context) -> None:
    if context is None or not context.execution_options.get(_REFUSE):
        return
    words = statement.lstrip(" (\n\t").split(None, 1)
    if context.isinsert or context.isupdate or context.isdelete or \
            not words or words[0].upper() not in _READ_STATEMENTS:
        raise ReadOnlyViolation("a read-only operation tried to write (declare it with writes=True): "
                                + statement[:80])


def _refuse_writes(cursor, statement, parameters, context) -> None:  # do_execute, do_executemany
    _check_read(statement, context)


def _refuse_writes_no_params(cursor, statement, context) -> None:  # do_execute_no_params
    _check_read(statement, context)


class _ReadEngine(Engine):
    """An engine over another engine's pool and dialect, without its connection events.

    The pool is always the other engine's current one (as with an
    ``execution_options`` engine): after ``engine.dispose()`` both use the new pool.
    """

    def __init__(self, engine: Engine, **options) -> None:
        self._proxied = engine
        super().__init__(engine.pool, engine.dialect, engine.url, logging_name=engine.logging_name,
                         echo=engine.echo, hide_parameters=engine.hide_parameters, **options)

    @property
    def pool(self):
        return self._proxied.pool

    @pool.setter
    def pool(self, pool) -> None:
        self._proxied.pool = pool


def read_engine(engine: Engine) -> Engine:
    """The engine of read-only units: ``engine``'s pool and dialect, no transaction (cached per engine).

    PostgreSQL reads under READ COMMITTED, where every statement takes its own
    snapshot whether or not a transaction is open, so a read-only unit needs
    none: autocommit (:func:`read_connection`) saves the BEGIN and ROLLBACK round
    trips (psycopg switches it without a round trip). On SQLite the statements
    likewise run without ``BEGIN`` (each reads the latest committed state, as on
    PostgreSQL).

    It is an :class:`~sqlalchemy.engine.Engine` of its own over the same pool and
    dialect rather than ``engine.execution_options(...)``: connection events
    (SQLite's ``begin`` listener in :mod:`core.db`) would otherwise apply to its
    connections, and with any connection listener present SQLAlchemy dispatches
    every event point of every statement (about a fifth of a product read).
    Listeners for statements of read-only units go on this engine. A statement
    that would write is refused (a dialect event, checked for every statement of
    this engine's connections): it would be committed at once.
    """
    ro = _READ_ENGINES.get(engine)
    if ro is None:
        ro = _ReadEngine(engine, execution_options={_REFUSE: True})
        if not getattr(engine.dialect, "_pharmo2o_refuses_writes", False):
            event.listen(engine.dialect, "do_execute", _refuse_writes)
            event.listen(engine.dialect, "do_executemany", _refuse_writes)
            event.listen(engine.dialect, "do_execute_no_params", _refuse_writes_no_params)
            engine.dialect._pharmo2o_refuses_writes = True
        _READ_ENGINES[engine] = ro
    return ro


def read_connection(ctx):
    """A connection of :func:`read_engine`: no transaction (autocommit on PostgreSQL), writes refused."""
    conn = read_engine(ctx.engine).connect()
    if conn.dialect.name != "sqlite":  # SQLite's connections already run without BEGIN (core.db)
        conn.execution_options(isolation_level="AUTOCOMMIT")  # reset when the pool takes it back
    return conn


@contextmanager
def read_unit(ctx):
    """The session of a read-only request: no transaction (see :func:`read_engine`), writes refused."""
    conn = read_connection(ctx)
    try:
        session = ctx.sessions(bind=conn)
        try:
            yield session
        finally:
            session.close()
    finally:
        conn.close()  # back to the pool (which resets it); nothing to roll back


class ApiRequest(falcon.Request):
    context_type = RequestContext


class RequestIdMiddleware:
    """Assigns ``X-Request-Id`` (the client's if well-formed), enforces the body size limit after
    routing (an operation may declare its own) and writes one JSON access line."""

    def __init__(self, api) -> None:
        self.api = api

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        incoming = req.get_header("X-Request-Id")
        req.context.request_id = incoming if incoming and _REQUEST_ID.match(incoming) else os.urandom(16).hex()
        req.context.api = self.api
        req.context.ctx = self.api.ctx
        req.context.started = time.perf_counter()
        req.context.writes = req.method not in SAFE_METHODS
        resp.set_header("X-Request-Id", req.context.request_id)

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource, params) -> None:
        """Refuse a body over the limit of the routed operation (or the app's) before anything else runs."""
        limit = self.api.body_limit(self.api.operation_for(req.uri_template, req.method))
        if req.content_length is not None and req.content_length > limit:
            raise PayloadTooLarge(f"the body is {req.content_length} bytes; at most {limit} are accepted")

    def process_response(self, req, resp, resource, req_succeeded: bool) -> None:
        rc = req.context
        resp.set_header("X-Request-Id", rc.request_id)
        if not access_log.isEnabledFor(logging.INFO):
            return
        caller, status, method, path = rc.caller, resp.status_code, req.method, req.path
        # the record made and handled directly: what access_log.info() does, less looking up the
        # caller's source line in the stack (the access line does not show it)
        access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, __file__, 0, "%s %s %s",
                                                (method, path, status), None, "process_response", {
            "request_id": rc.request_id, "method": method, "path": path, "status": status,
            "route": req.uri_template,
            "duration_ms": round((time.perf_counter() - getattr(rc, "started", time.perf_counter())) * 1000, 2),
            "actor": caller.actor if caller else None,
        }))


class TransactionMiddleware:
    """Commits the request's transaction when the response is a success, else rolls it back.

    A failing commit becomes the response (rendered by the error handlers),
    so a client never sees a success for a change that was not stored.
    """

    def process_response(self, req, resp, resource, req_succeeded: bool) -> None:
        rc = req.context
        if rc.session_open:  # commit (raises on failure: handled like any error), or roll back
            rc.end_unit(req_succeeded and not rc.failed and resp.status_code < 400)
        for work in rc.after_unit:
            try:
                work()
            except Exception:  # never replaces the answer the client is getting
                logging.getLogger("pharmo2o.api").exception("after-request work failed",
                                                            extra={"request_id": rc.request_id})


class _Rollback(Exception):
    """Thrown into the transaction's context manager to roll it back."""


class AuthMiddleware:
    """Authenticates the bearer token and checks the operation's roles before the responder."""

    def __init__(self, api) -> None:
        self.api = api

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource, params) -> None:
        op = self.api.operation_for(req.uri_template, req.method)
        if op is None:
            return
        if op.writes is not None:
            req.context.writes = op.writes
        if op.public:
            return
        header = req.get_header("Authorization")
        if not header:
            raise Unauthorized("send an Authorization: Bearer <token> header (POST /api/v1/auth/token issues one)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        rc = req.context
        prefetch = op.prefetch if not rc.writes else None  # a read-only unit's row, read in the token's statement
        resolved, rc.prefetched = tokens.resolve_with(rc.connection, token.strip(), prefetch, params)
        if resolved is None:
            raise Unauthorized("the token is invalid, expired or revoked")
        req.context.caller, req.context.token_hash = resolved
        roles = self.api.roles_of(op)
        if req.context.caller.role not in roles:
            raise Forbidden(f"role {req.context.caller.role!r} may not {op.summary[:1].lower() + op.summary[1:] if op.summary else op.id}; "
                            f"admitted: {', '.join(roles)}")
