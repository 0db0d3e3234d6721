"""The app factory: the core's routes plus every route of the enabled plugins, one Falcon WSGI app.

::

    request -> RequestIdMiddleware (X-Request-Id, size limit, access log)
            -> TransactionMiddleware (one transaction, committed on success)
            -> AuthMiddleware (bearer token -> Caller; the operation's roles)
            -> @operation responder (query/body validated, Idempotency-Key honoured)
    errors of any layer -> core.api.errors -> application/problem+json
"""
from __future__ import annotations

import datetime as dt
import inspect
import json
import logging
from dataclasses import dataclass
from typing import Any

import falcon
import falcon.routing
import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError, create_model

from ..errors import PluginError
from .errors import install_error_handlers, PROBLEM_JSON
from .middleware import ApiRequest, AuthMiddleware, RequestIdMiddleware, TransactionMiddleware
from .operations import KNOWN_ROLES, OPERATION_ATTR, Operation
from .schemas import OrderCreateBase

__all__ = ["create_app", "ApiApp", "ApiState", "Route", "DEFAULT_MAX_BODY"]

log = logging.getLogger("pharmo2o.api")
DEFAULT_MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Route:
    """One (template, method) of the app and who declared it."""

    template: str
    method: str
    operation: Operation
    resource: Any
    owner: str  # "core" or the plugin's name


class ApiApp(falcon.App):
    """A Falcon app that keeps its :class:`ApiState` (routes, schemas, roles) at hand."""

    api: "ApiState"


class ApiState:
    """What the middleware and responders of one app share."""

    def __init__(self, ctx, *, max_body_bytes: int, validate_responses: bool) -> None:
        self.ctx = ctx
        self.max_body_bytes = max_body_bytes  # larger bodies are refused with 413
        self.validate_responses = validate_responses  # check responses against their schema (tests)
        self.routes: list[Route] = []
        self.registrations: list[tuple[str, Any, str | None]] = []  # (template, resource, suffix)
        self.order_fields: dict[str, Any] = {}  # extra order-request fields from plugins
        self.order_request_model: type[BaseModel] = OrderCreateBase
        self._ops: dict[tuple[str, str], Operation] = {}
        self._roles: dict[str, tuple[str, ...]] = {}
        self._bodies: dict[str, type[BaseModel]] = {}
        self._adapters: dict[str, TypeAdapter] = {}
        self._openapi: dict | None = None
        self._channels: dict[str, dict] | None = None

    def sales_channels(self) -> dict[str, dict]:
        """The sales channels by name (``register_sales_channels``), asked once: like routes,
        they are registrations fixed when the app is built, not answers that change per request."""
        if self._channels is None:
            from ..orders import channels
            self._channels = channels(self.ctx.registry)
        return self._channels

    def operation_for(self, template: str | None, method: str) -> Operation | None:
        return self._ops.get((template or "", method))

    def body_limit(self, op: Operation | None) -> int:
        """The largest body ``op`` accepts: its own ``max_body_bytes``, else the app's."""
        limit = op.max_body_bytes if op is not None else None
        if limit is None:
            return self.max_body_bytes
        return int(limit(self.ctx) if callable(limit) else limit)

    def roles_of(self, op: Operation) -> tuple[str, ...]:
        """The roles admitted: declared, plus those plugins grant through ``register_permissions``."""
        return self._roles.get(op.id, op.roles)

    def body_model(self, op: Operation) -> type[BaseModel] | None:
        if op.body is None:
            return None
        if op.id not in self._bodies:
            model = op.body
            if not (inspect.isclass(model) and issubclass(model, BaseModel)):
                model = model(self)
            self._bodies[op.id] = model
        return self._bodies[op.id]

    def check_response(self, op: Operation, media: Any) -> None:
        """Raise when ``media`` does not match the declared response schema."""
        if op.id not in self._adapters:
            self._adapters[op.id] = TypeAdapter(op.response)
        try:
            self._adapters[op.id].validate_python(media)
        except ValidationError as exc:
            raise RuntimeError(f"response of {op.id} does not match its schema: {exc}") from exc

    def openapi(self) -> dict:
        if self._openapi is None:
            from .openapi import build_openapi
            self._openapi = build_openapi(self)
        return self._openapi

    # ----------------------------------------------------------- building

    def add(self, template: str, resource: Any, owner: str, suffix: str | None = None) -> None:
        methods = falcon.routing.map_http_methods(resource, suffix=suffix)
        if not methods:
            raise PluginError(f"route {template} ({owner}): {type(resource).__name__} has no on_<method> responder")
        for method, responder in sorted(methods.items()):
            op = getattr(responder, OPERATION_ATTR, None)
            if op is None:
                raise PluginError(
                    f"route {method} {template} ({owner}): {type(resource).__name__}.{responder.__name__} does not "
                    f"declare the roles it admits; decorate it with @core.api.operation(...)")
            if (template, method) in self._ops:
                raise PluginError(f"route {method} {template} is registered twice (by {owner})")
            clash = next((r for r in self.routes if r.operation.id == op.id), None)
            if clash is not None:
                raise PluginError(f"operation id {op.id!r} of {method} {template} ({owner}) is already used by "
                                  f"{clash.method} {clash.template} ({clash.owner})")
            self._ops[(template, method)] = op
            self.routes.append(Route(template, method, op, resource, owner))
        self.registrations.append((template, resource, suffix))

    def grant(self, permissions: dict[str, set[str]]) -> None:
        known = {r.operation.id: r.operation for r in self.routes}
        for name, roles in sorted(permissions.items()):
            bad = sorted(set(roles) - set(KNOWN_ROLES))
            if bad:
                raise PluginError(f"permission {name!r} grants unknown role(s) {bad}; known: {', '.join(KNOWN_ROLES)}")
            op = known.get(name)
            if op is None:
                log.info("permission %r names no operation of this app; ignored", name)
                continue
            if op.public:
                continue
            self._roles[name] = tuple(r for r in KNOWN_ROLES if r in set(op.roles) | set(roles))


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(value: Any) -> bytes:
    """JSON of a response body: orjson (datetimes as ISO 8601, as ``isoformat`` writes them; the rest
    through :func:`_json_default`); what orjson refuses and json writes (an integer beyond 64 bits)
    goes through json, so a body renders as it did before."""
    try:
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, default=_json_default).encode()


def _media_handlers(app: falcon.App) -> None:
    handler = falcon.media.JSONHandler(dumps=_dumps, loads=json.loads)
    for media in (falcon.MEDIA_JSON, PROBLEM_JSON):
        app.req_options.media_handlers[media] = handler
        app.resp_options.media_handlers[media] = handler


def _order_request_model(ctx, state: ApiState) -> type[BaseModel]:
    fields = ctx.registry.merged_dict("order_request_fields", "order request field")
    clash = sorted(set(fields) & set(OrderCreateBase.model_fields))
    if clash:
        raise PluginError(f"order request field(s) {clash} declared by a plugin clash with the core's fields")
    state.order_fields = fields
    return create_model("OrderCreate", __base__=OrderCreateBase, **fields) if fields else \
        create_model("OrderCreate", __base__=OrderCreateBase)


def create_app(ctx, *, validate_responses: bool = False) -> ApiApp:
    """Build the WSGI app for ``ctx``: core routes plus every enabled plugin's ``register_routes``.

    Refuses (:class:`core.errors.PluginError`) a route registered twice, a
    responder that does not declare its roles, or clashing order fields.
    ``validate_responses`` checks every success response against its schema
    (on in the test kit; off in production).
    """
    from .resources import core_routes

    state = ApiState(ctx, max_body_bytes=int(ctx.setting("api.max_body_bytes", DEFAULT_MAX_BODY)),
                     validate_responses=validate_responses)
    app = ApiApp(request_type=ApiRequest, middleware=[
        RequestIdMiddleware(state), TransactionMiddleware(), AuthMiddleware(state)])
    app.api = state
    app.req_options.strip_url_path_trailing_slash = True
    _media_handlers(app)
    install_error_handlers(app)

    state.order_request_model = _order_request_model(ctx, state)
    for template, resource, suffix in core_routes():
        state.add(template, resource, "core", suffix)
    taken = {r.template for r in state.routes}
    for impl in ctx.registry.hook.register_routes.get_hookimpls():
        for item in impl.function() or []:
            template, resource = item
            if template in taken:
                raise PluginError(f"route {template} of plugin {impl.plugin_name!r} is already registered")
            taken.add(template)
            state.add(template, resource, impl.plugin_name)
    permissions: dict[str, set[str]] = {}
    for answer in ctx.registry.collect("register_permissions"):
        for name, roles in answer.items():
            permissions.setdefault(name, set()).update(roles)
    state.grant(permissions)

    for template, resource, suffix in state.registrations:
        app.add_route(template, resource, **({"suffix": suffix} if suffix else {}))
    from ..console import mount as mount_console  # the staff console's files (not API operations)
    mount_console(app, ctx)
    return app
