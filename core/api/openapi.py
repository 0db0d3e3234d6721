"""The OpenAPI 3.1 document, generated from the routes' ``@operation`` declarations and
their pydantic schemas (the same ones that validate requests).

An operation's ``extra`` adds OpenAPI keys; three of them shape its answers instead:
``x-content-type`` (the success media type, or a list of them: default ``application/json``),
``x-also-status`` (more success statuses with the same body, e.g. ``[200]`` beside a 201 for
"already done") and ``responses`` (``{status: response object}`` replacing the generated
answer of those statuses: text or XML for outside callers, a redirect).
"""
from __future__ import annotations

import inspect
import re
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from .. import __version__
from .errors import PROBLEM_JSON
from .operations import MUTATING
from .schemas import Problem

__all__ = ["build_openapi", "openapi_path"]

REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{(\w+)(?::([^}]*))?\}")
_ERROR_TEXT = {
    400: "Malformed JSON body", 401: "No token, or an invalid, expired or revoked token",
    403: "The caller's role (or store) may not do this", 404: "No such resource (or not visible to the caller)",
    409: "Conflicts with the current state (illegal transition, insufficient stock, idempotency key reused)",
    413: "Body larger than the limit (1 MiB by default)", 415: "Body is not application/json",
    422: "Invalid input; `errors` names each failing field", 429: "Too many attempts; see Retry-After",
    500: "Unexpected error; the body carries the request id", 503: "The database is unavailable",
}


def openapi_path(template: str) -> str:
    """``/orders/{order_id:int(...)}`` -> ``/orders/{order_id}``."""
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", template)


def _is_model(value: Any) -> bool:
    return inspect.isclass(value) and issubclass(value, BaseModel)


def build_openapi(state) -> dict:
    routes = state.routes
    bodies = {r.operation.id: state.body_model(r.operation) for r in routes}
    models: list[tuple[type[BaseModel], str]] = [(Problem, "serialization")]
    for r in routes:
        if bodies[r.operation.id] is not None:
            models.append((bodies[r.operation.id], "validation"))
        if _is_model(r.operation.response):
            models.append((r.operation.response, "serialization"))
    seen: set = set()
    unique = [m for m in models if not (m in seen or seen.add(m))]
    keys, top = models_json_schema(unique, ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))

    def ref(model, mode) -> dict:
        return keys[(model, mode)]

    paths: dict[str, dict] = {}
    tags: set[str] = set()
    for r in routes:
        op = r.operation
        roles = list(state.roles_of(op))
        tags.update(op.tags)
        params: list[dict] = []
        for name, converter in _PARAM.findall(r.template):
            schema = {"type": "integer", "minimum": 1} if (converter or "").startswith("int") else {"type": "string"}
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
        if op.query is not None:
            qs = op.query.model_json_schema(ref_template=REF)
            schemas.update(qs.pop("$defs", {}))
            required = set(qs.get("required", []))
            for name, schema in qs.get("properties", {}).items():
                param = {"name": name, "in": "query", "required": name in required, "schema": schema}
                if "description" in schema:
                    param["description"] = schema["description"]
                params.append(param)
        if r.method in MUTATING and op.idempotency != "none" and not op.public:
            params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "schema": {"type": "string", "minLength": 1, "maxLength": 120},
                           "description": "retrying with the same key and body replays the first answer; "
                                          "another body with the key is a 409"})
        access = ("**Public**: no token needed." if op.public
                  else f"**Roles:** {', '.join(roles)}.")
        operation: dict[str, Any] = {
            "operationId": op.id, "summary": op.summary or op.id,
            "description": "\n\n".join(x for x in (op.description, access) if x),
            "tags": list(op.tags) or ["other"], "x-roles": [] if op.public else roles, "x-public": op.public,
            "security": [] if op.public else [{"bearerAuth": []}],
        }
        if r.owner != "core":
            operation["x-plugin"] = r.owner
        if params:
            operation["parameters"] = params
        body = bodies[op.id]
        if body is not None:
            operation["requestBody"] = {"required": True,
                                        "content": {"application/json": {"schema": ref(body, "validation")}}}
        content_type = op.extra.get("x-content-type", "application/json")
        content_types = [content_type] if isinstance(content_type, str) else list(content_type)  # or several
        if op.status == 204:
            success: dict[str, Any] = {"description": "Done (no content)"}
        elif _is_model(op.response):
            success = {"description": op.summary or "OK",
                       "content": {c: {"schema": ref(op.response, "serialization")} for c in content_types}}
        elif op.response is not None:
            success = {"description": op.summary or "OK",
                       "content": {c: {"schema": TypeAdapter(op.response).json_schema()} for c in content_types}}
        else:
            success = {"description": op.summary or "OK",
                       "content": {c: {"schema": {"type": "string"}} for c in content_types}}
        statuses = set(op.errors) | {500}
        if not op.public:
            statuses |= {401, 403}
        if _PARAM.search(r.template):
            statuses.add(404)
        if body is not None:
            statuses |= {400, 413, 415, 422}
        if op.query is not None:
            statuses.add(422)
        if r.method in MUTATING and op.idempotency != "none" and not op.public:
            statuses |= {409, 422}  # 422: a malformed Idempotency-Key
        problem = {"content": {PROBLEM_JSON: {"schema": ref(Problem, "serialization")}}}
        responses = {str(op.status): success}
        for status in op.extra.get("x-also-status", ()):  # e.g. 200 for "already done" beside a 201
            responses[str(status)] = success
        for status in sorted(statuses):
            responses[str(status)] = {"description": _ERROR_TEXT.get(status, "Refused"), **problem}
        # extra "responses" replace the generated answer of the statuses they name (an operation that
        # answers text or XML, a redirect, a second success status); the others stay as generated
        responses.update({str(status): spec for status, spec in op.extra.get("responses", {}).items()})
        operation["responses"] = responses
        operation.update({k: v for k, v in op.extra.items()
                          if k not in ("x-content-type", "x-also-status", "responses")})
        paths.setdefault(openapi_path(r.template), {})[r.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pharmo2o API", "version": __version__,
            "description": "The REST API of pharmo2o: JSON in and out, amounts in integer fen, times in "
                           "ISO-8601 UTC, errors as application/problem+json (RFC 9457) with a stable `type`. "
                           "Lists return `items` and `next_cursor`. Each operation lists the roles it admits "
                           "(`x-roles`).",
        },
        "tags": [{"name": t} for t in sorted(tags | {"other"} if any(not r.operation.tags for r in routes)
                                               else tags)],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "a token from POST /api/v1/auth/token"}},
        },
    }
