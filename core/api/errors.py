"""Every refusal rendered once, as ``application/problem+json`` (RFC 9457).

Domain errors (:class:`core.errors.DomainError`) carry their own status,
``type`` and field list; Falcon's HTTP errors (no route, wrong method) and a
few database failures are mapped to the same shape; anything else is a 500
whose body names only the request id, with the traceback in the log. A 500
raised inside a plugin's hook implementation also names the plugin and the
hook (type ``plugin-failed``), so the operator knows whose code to look at.
"""
from __future__ import annotations

import logging
from typing import Any

import falcon
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from ..errors import Conflict, DomainError, ValidationFailed
from ..plugins import hook_failure

__all__ = [
    "PROBLEM_JSON", "PROBLEM_BASE", "ApiError", "Unauthorized", "TooManyRequests", "PayloadTooLarge",
    "UnsupportedMediaType", "MalformedJson", "BadQuery", "install_error_handlers", "problem_type",
]

log = logging.getLogger("pharmo2o.api")
PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://pharmo2o.dev/problems/"


def problem_type(slug: str) -> str:
    return PROBLEM_BASE + slug


class ApiError(DomainError):
    """A refusal that only exists at the HTTP layer; ``headers`` go on the response."""

    headers: dict[str, str] = {}

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **kw):
        super().__init__(detail, **kw)
        if headers:
            self.headers = headers


class Unauthorized(ApiError):
    status = 401
    type = problem_type("unauthorized")
    title = "Authentication required"
    headers = {"WWW-Authenticate": 'Bearer realm="pharmo2o"'}


class TooManyRequests(ApiError):
    status = 429
    type = problem_type("too-many-requests")
    title = "Too many requests"


class PayloadTooLarge(ApiError):
    status = 413
    type = problem_type("payload-too-large")
    title = "Request body too large"


class UnsupportedMediaType(ApiError):
    status = 415
    type = problem_type("unsupported-media-type")
    title = "Unsupported media type"


class MalformedJson(ApiError):
    status = 400
    type = problem_type("malformed-json")
    title = "Malformed JSON"


class BadQuery(ValidationFailed):
    """A query parameter of the wrong type or unknown (the fields are the parameter names)."""


_HTTP_SLUGS = {
    400: ("bad-request", "Bad request"), 401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"), 404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"), 406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"), 411: ("length-required", "Length required"),
    413: ("payload-too-large", "Request body too large"), 414: ("uri-too-long", "URI too long"),
    415: ("unsupported-media-type", "Unsupported media type"), 422: ("validation", "Invalid input"),
    429: ("too-many-requests", "Too many requests"), 431: ("headers-too-large", "Request headers too large"),
    500: ("internal", "Internal server error"), 503: ("unavailable", "Service unavailable"),
}


#: the most of a refused (413) body read and thrown away before answering
DRAIN_LIMIT = 32 * 1024 * 1024


def body_stream(req: falcon.Request):
    """The request body as a stream: Falcon's bounded stream (``Content-Length`` bytes), or for a
    body sent ``Transfer-Encoding: chunked`` (no length) the server's stream, which gunicorn
    decodes and ends at the last chunk (it says so with ``wsgi.input_terminated``; a server that
    does not could leave a read waiting, so there the body counts as absent, as before). (Falcon
    takes a missing length for an empty body: a chunked upload was read as nothing.) ``None``
    when the request has no body."""
    if req.content_length is not None:
        return req.bounded_stream
    if "chunked" in (req.get_header("Transfer-Encoding") or "").lower() and req.env.get("wsgi.input_terminated"):
        return req.stream
    return None


def _drain(req: falcon.Request) -> None:
    """Read what is left of a refused body (up to :data:`DRAIN_LIMIT`), so the worker does not
    close a socket holding unread data: that close is a TCP reset, and a proxy still sending
    the body (nginx) would lose the 413 and answer 502 instead."""
    if req.content_length is not None and req.content_length > DRAIN_LIMIT:
        return
    stream = body_stream(req)
    if stream is None:
        return
    try:
        left = DRAIN_LIMIT
        while left > 0 and (got := stream.read(min(64 * 1024, left))):
            left -= len(got)
    except Exception:  # noqa: BLE001 - the client went away: nothing left to protect
        pass


def _render(req: falcon.Request, resp: falcon.Response, status: int, body: dict[str, Any],
            headers: dict[str, str] | None = None) -> None:
    if status == 413:
        _drain(req)
    request_id = getattr(req.context, "request_id", None)
    if request_id:
        body.setdefault("request_id", request_id)
    body.setdefault("instance", req.path)
    resp.status = status
    resp.content_type = PROBLEM_JSON
    resp.media = body
    resp.data = None
    resp.text = None
    for name, value in (headers or {}).items():
        resp.set_header(name, value)
    req.context.failed = True


def _domain_error(req, resp, ex: DomainError, params) -> None:
    _render(req, resp, ex.status, ex.to_problem(), getattr(ex, "headers", None))


def _http_error(req, resp, ex: falcon.HTTPError, params) -> None:
    status = ex.status_code
    slug, title = _HTTP_SLUGS.get(status, ("http-error", ex.title or "HTTP error"))
    detail = ex.description or {404: f"no resource at {req.path}",
                                405: f"{req.method} is not allowed on {req.path}"}.get(status, title)
    _render(req, resp, status, {"type": problem_type(slug), "title": title, "status": status, "detail": detail},
            dict(ex.headers or {}))


def _integrity_error(req, resp, ex: IntegrityError, params) -> None:
    log.warning("integrity error turned into 409: %s", ex.orig, extra={"request_id": req.context.request_id})
    problem = Conflict("the change conflicts with the current data (a concurrent change or a duplicate); "
                       "reload and retry").to_problem()
    _render(req, resp, 409, problem)


def _operational_error(req, resp, ex: OperationalError, params) -> None:
    log.error("database unavailable: %s", ex.orig, extra={"request_id": req.context.request_id}, exc_info=ex)
    _render(req, resp, 503, {"type": problem_type("unavailable"), "title": "Service unavailable", "status": 503,
                             "detail": "the database is unavailable or busy; retry later"}, {"Retry-After": "1"})


def _unexpected(req, resp, ex: Exception, params) -> None:
    if isinstance(ex, DBAPIError) and getattr(ex, "connection_invalidated", False):
        return _operational_error(req, resp, ex, params)
    request_id = getattr(req.context, "request_id", None)
    failure = hook_failure(ex)
    if failure is not None:
        log.error("plugin %r failed in hook %s on %s %s", failure.plugin, failure.hook, req.method, req.path,
                  exc_info=ex, extra={"request_id": request_id})
        return _render(req, resp, 500, {
            "type": problem_type("plugin-failed"), "title": "A plugin failed", "status": 500,
            "detail": f"plugin {failure.plugin!r} failed in hook {failure.hook}: {type(ex).__name__}; "
                      f"the request's changes were rolled back; quote request id {request_id} when reporting it",
            "plugin": failure.plugin, "hook": failure.hook})
    log.error("unhandled %s on %s %s", type(ex).__name__, req.method, req.path,
              exc_info=ex, extra={"request_id": request_id})
    _render(req, resp, 500, {
        "type": problem_type("internal"), "title": "Internal server error", "status": 500,
        "detail": f"an unexpected error occurred; quote request id {request_id} when reporting it"})


def install_error_handlers(app: falcon.App) -> None:
    """Register the renderers; Falcon picks the most specific class of an exception."""
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(DomainError, _domain_error)
    app.add_error_handler(IntegrityError, _integrity_error)
    app.add_error_handler(OperationalError, _operational_error)
