"""Declaring an endpoint: the roles it admits, what it accepts and what it answers.

Every responder of every route (the core's and the plugins') is decorated
with :func:`operation`; the app refuses to start with an undecorated one. The
declaration is the single source for authorization (enforced by the auth
middleware before the responder runs), request validation (done by the
decorator) and the OpenAPI document::

    class Refund:
        @operation("orders.refund", roles=("admin", "store_manager"), body=RefundBody,
                   response=OrderOut, summary="Refund an order", errors=(404, 409))
        def on_post(self, req, resp, order_id):
            order = orders.refund(req.context.ctx, req.context.session, order_id,
                                  req.context.caller, req.context.body.reason)
            resp.media = orders.serialize_order(order, req.context.caller)

Inside a responder ``req.context`` holds ``ctx`` (the Context), ``session``
(the request's one unit of work, opened on first use: a transaction committed
on success for mutating methods, a read-only unit for GET), ``caller``
(:class:`core.auth.Caller`, ``None`` on a public operation), ``body`` and
``query`` (validated pydantic models, or ``None``).

The ``id`` doubles as a permission name: plugins may admit more roles to an
operation through the ``register_permissions`` hook (``{id: [role, ...]}``,
a union with the declared roles).
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import falcon
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from ..auth import STAFF_ROLES
from ..errors import IdempotencyConflict, ValidationFailed
from ..models import IdempotencyRecord
from .errors import BadQuery, MalformedJson, PayloadTooLarge, UnsupportedMediaType, body_stream

__all__ = ["operation", "Operation", "STAFF", "CUSTOMER", "EVERYONE", "KNOWN_ROLES", "OPERATION_ATTR",
           "pydantic_fields", "read_body", "read_json_body", "nul_fields"]

STAFF: tuple[str, ...] = STAFF_ROLES  # admin, store_manager, pharmacist, clerk
CUSTOMER: tuple[str, ...] = ("customer",)
EVERYONE: tuple[str, ...] = STAFF + CUSTOMER
KNOWN_ROLES: tuple[str, ...] = EVERYONE + ("device",)
OPERATION_ATTR = "__pharmo2o_operation__"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Idempotency = Literal["store", "model", "none"]
BodySpec = type[BaseModel] | Callable[[Any], type[BaseModel]] | None


@dataclass(frozen=True)
class Operation:
    """What one responder declares (see :func:`operation`)."""

    id: str  # stable operation id; also the permission name plugins may extend
    roles: tuple[str, ...]  # roles admitted (empty with public=True)
    public: bool = False  # no token needed (health, login, the API document)
    summary: str = ""  # one line for the API document
    description: str = ""  # longer text for the API document
    tags: tuple[str, ...] = ()  # groups in the API document
    body: BodySpec = None  # request model, or a callable(api_state) -> model built at app start
    query: type[BaseModel] | None = None  # query parameter model (values arrive as strings)
    response: Any = None  # response model (documentation, and checked in tests)
    status: int = 200  # the success status
    errors: tuple[int, ...] = ()  # further error statuses worth documenting (404, 409, ...)
    idempotency: Idempotency = "store"  # how an Idempotency-Key on a mutating call is honoured
    raw_body: bool = False  # the responder reads the stream itself (e.g. XML callbacks)
    writes: bool | None = None  # run in a committing transaction (default: POST/PUT/PATCH/DELETE do)
    extra: dict = field(default_factory=dict)  # more OpenAPI keys for the operation
    max_body_bytes: int | Callable[[Any], int] | None = None  # this operation's body limit (default: the app's)
    prefetch: Any = None  # core.api.tokens.Prefetch: a row read in the token's statement (read-only operations)


def operation(id: str, *, roles: tuple[str, ...] | list[str] = (), public: bool = False, summary: str = "",
              description: str = "", tags: tuple[str, ...] | list[str] = (), body: BodySpec = None,
              query: type[BaseModel] | None = None, response: Any = None, status: int = 200,
              errors: tuple[int, ...] = (), idempotency: Idempotency = "store", raw_body: bool = False,
              writes: bool | None = None, extra: dict | None = None,
              max_body_bytes: int | Callable[[Any], int] | None = None, prefetch: Any = None):
    """Declare a responder: ``roles`` admitted (or ``public=True``), schemas, documentation.

    ``idempotency`` says what an ``Idempotency-Key`` header does on a mutating
    call: ``"store"`` (default) keeps the response per caller and key and
    replays it for the same request (a different request with the key is a
    409); ``"model"`` means the responder honours the key itself (orders);
    ``"none"`` ignores it (the operation is naturally idempotent).

    ``writes``: mutating methods run in a transaction committed on success;
    GET runs in a read-only unit that is rolled back. A GET that must write
    (e.g. an access log of sensitive records) says ``writes=True``.

    ``max_body_bytes`` replaces the app's ``api.max_body_bytes`` for this
    operation (e.g. a file upload): an int, or a callable given the Context
    and read per request (so it can come from configuration). Larger bodies
    get 413 before authentication and before anything is read.

    ``prefetch`` (a :class:`core.api.tokens.Prefetch`, read-only operations) reads
    the row the responder needs in the same statement as the bearer token: one
    round trip instead of two. The responder finds it in ``req.context.prefetched``.
    """
    roles = tuple(roles)
    unknown = [r for r in roles if r not in KNOWN_ROLES]
    if unknown:
        raise ValueError(f"operation {id!r}: unknown role(s) {unknown}; known: {', '.join(KNOWN_ROLES)}")
    if public and roles:
        raise ValueError(f"operation {id!r}: a public operation admits everyone; do not list roles")
    if not public and not roles:
        raise ValueError(f"operation {id!r}: declare the roles it admits, or public=True")
    op = Operation(id=id, roles=roles, public=public, summary=summary, description=description, tags=tuple(tags),
                   body=body, query=query, response=response, status=status, errors=tuple(errors),
                   idempotency=idempotency, raw_body=raw_body, writes=writes, extra=dict(extra or {}),
                   max_body_bytes=max_body_bytes, prefetch=prefetch)

    def decorate(fn):
        @functools.wraps(fn)
        def responder(resource, req: falcon.Request, resp: falcon.Response, **params):
            _run(op, fn, resource, req, resp, params)
        setattr(responder, OPERATION_ATTR, op)
        return responder
    return decorate


# ------------------------------------------------------------------ validation

def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


_MESSAGES = {"missing": "is required", "extra_forbidden": "unknown field"}


def pydantic_fields(exc: ValidationError, prefix: str = "") -> list[dict]:
    """``[{field, message}]`` from a pydantic error (``lines[1].quantity``-style names)."""
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        name = _loc(loc)
        out.append({"field": f"{prefix}{name}" if prefix else name,
                    "message": _MESSAGES.get(err["type"], err["msg"])})
    return out


def _raise_fields(fields: list[dict], cls=ValidationFailed) -> None:
    raise cls("; ".join(f"{f['field']}: {f['message']}" for f in fields), fields=fields)


def read_body(req: falcon.Request, limit: int, advice: str = "") -> bytes:
    """The raw request body, sent with a ``Content-Length`` or chunked (:func:`core.api.errors.body_stream`),
    refused (413, with ``advice`` after the reason) when larger than ``limit`` bytes."""
    if req.content_length is not None and req.content_length > limit:
        raise PayloadTooLarge(f"the body is {req.content_length} bytes; at most {limit} are accepted{advice}")
    stream = body_stream(req)
    raw = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes{advice}")
    return raw


def read_json_body(req: falcon.Request) -> bytes:
    """The raw request body, refused when larger than the configured limit or not JSON."""
    raw = read_body(req, req.context.api.body_limit(req.context.operation))
    if raw.strip() and req.content_type:
        media = req.content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType(f"send the body as application/json, not {media}")
    return raw


NUL_MESSAGE = "must not contain the NUL character (\\u0000)"


def nul_fields(value: Any, path: str = "") -> list[dict]:
    """``[{field, message}]`` for every string (or object key) in ``value`` holding a NUL character.

    JSON allows ``"\\u0000"`` but PostgreSQL cannot store it in text, and no field of
    this API has a use for it: it is refused on every backend alike, naming the field.
    """
    if isinstance(value, str):
        return [{"field": path or "body", "message": NUL_MESSAGE}] if "\x00" in value else []
    out: list[dict] = []
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and "\x00" in key:
                out.append({"field": name, "message": NUL_MESSAGE})
            out.extend(nul_fields(item, name))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            out.extend(nul_fields(item, f"{path}[{i}]"))
    elif isinstance(value, BaseModel):
        out.extend(nul_fields(value.model_dump(), path))
    return out


def _parse_body(model: type[BaseModel], raw: bytes) -> BaseModel:
    if not raw:  # no body at all: the operation's defaults (whitespace alone is not JSON: a 400)
        raw = b"{}"
    try:
        parsed = model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            msg = next(e["msg"] for e in exc.errors() if e["type"] == "json_invalid")
            raise MalformedJson(f"the body is not valid JSON: {msg}") from None
        if any(e["type"] == "model_type" and not e["loc"] for e in exc.errors()):
            _raise_fields([{"field": "body", "message": "must be a JSON object"}])
        _raise_fields(pydantic_fields(exc))
    if b"\\u0000" in raw:  # a cheap pre-check: only then walk the values
        bad = nul_fields(parsed)
        if bad:
            _raise_fields(bad)
    return parsed


def _parse_query(model: type[BaseModel], req: falcon.Request) -> BaseModel:
    params = dict(req.params)
    bad = nul_fields(params) if params else None
    if bad:
        _raise_fields(bad, BadQuery)
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        _raise_fields(pydantic_fields(exc), BadQuery)


# ----------------------------------------------------------------- idempotency

def _idempotency_key(req: falcon.Request) -> str | None:
    key = req.get_header("Idempotency-Key")
    if key is None:
        return None
    if not 0 < len(key) <= 120 or not key.isprintable():
        _raise_fields([{"field": "Idempotency-Key", "message": "must be 1 to 120 printable characters"}])
    return key


def _body_json(req) -> str:
    """The validated body in canonical JSON (what a stored response is keyed on), or ``""``."""
    body = req.context.body
    return json.dumps(body.model_dump(mode="json"), sort_keys=True) if body is not None else ""


def _replay_or_run(req, resp, run: Callable[[], None]) -> None:
    """Answer from the stored response for this caller and key, or run and store."""
    key = _idempotency_key(req)
    if key is None:
        return run()
    session, actor = req.context.session, req.context.caller.actor
    digest = hashlib.sha256(f"{req.method} {req.path}\n{_body_json(req)}".encode()).hexdigest()
    record = session.scalars(select(IdempotencyRecord).where(
        IdempotencyRecord.actor == actor, IdempotencyRecord.key == key)).one_or_none()
    if record is not None:
        if (record.method, record.path, record.request_hash) != (req.method, req.path, digest):
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was already used for a different request ({record.method} {record.path})",
                fields=[{"field": "Idempotency-Key", "message": "reused with different content"}])
        resp.status = record.status_code
        resp.media = record.response
        resp.set_header("Idempotent-Replayed", "true")
        return
    run()
    if 200 <= resp.status_code < 300:
        session.add(IdempotencyRecord(actor=actor, key=key, method=req.method, path=req.path, request_hash=digest,
                                      status_code=resp.status_code, response=resp.media))
        session.flush()


# ----------------------------------------------------------------------- run

def _run(op: Operation, fn, resource, req: falcon.Request, resp: falcon.Response, params: dict) -> None:
    api = req.context.api
    req.context.operation = op
    req.context.query = _parse_query(op.query, req) if op.query is not None else None
    req.context.body = None
    if op.body is not None and not op.raw_body:
        model = api.body_model(op)
        req.context.body = _parse_body(model, read_json_body(req))
    resp.status = op.status

    def call() -> None:
        fn(resource, req, resp, **params)
        if api.validate_responses and op.response is not None and resp.status_code < 300 and resp.media is not None:
            api.check_response(op, resp.media)

    if req.method in MUTATING and op.idempotency == "store" and not op.public:
        _replay_or_run(req, resp, call)
    else:
        call()
