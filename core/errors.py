"""Domain errors: raised by services, rendered once by the API as problem+json."""
from __future__ import annotations

__all__ = [
    "DomainError", "ValidationFailed", "NotFound", "Conflict", "Forbidden",
    "InsufficientStock", "IllegalTransition", "IdempotencyConflict", "PluginError",
    "LicenseError",
]


class DomainError(Exception):
    """Base of every refusal a caller can act on. ``status`` is the HTTP status."""

    status = 400
    type = "about:blank"
    title = "Bad request"

    def __init__(self, detail: str, *, fields: list[dict] | None = None, **extra):
        super().__init__(detail)
        self.detail = detail
        self.fields = fields or []
        self.extra = extra

    def to_problem(self) -> dict:
        body = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
        if self.fields:
            body["errors"] = self.fields
        body.update(self.extra)
        return body


class ValidationFailed(DomainError):
    """Input that breaks a rule; ``fields`` lists ``{"field", "message"}``."""

    status = 422
    type = "https://pharmo2o.dev/problems/validation"
    title = "Invalid input"

    @classmethod
    def one(cls, field: str, message: str) -> "ValidationFailed":
        return cls(f"{field}: {message}", fields=[{"field": field, "message": message}])


class NotFound(DomainError):
    status = 404
    type = "https://pharmo2o.dev/problems/not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    type = "https://pharmo2o.dev/problems/conflict"
    title = "Conflict"


class Forbidden(DomainError):
    status = 403
    type = "https://pharmo2o.dev/problems/forbidden"
    title = "Forbidden"


class InsufficientStock(Conflict):
    type = "https://pharmo2o.dev/problems/insufficient-stock"
    title = "Insufficient stock"


class IllegalTransition(Conflict):
    type = "https://pharmo2o.dev/problems/illegal-transition"
    title = "Illegal state transition"


class IdempotencyConflict(Conflict):
    type = "https://pharmo2o.dev/problems/idempotency-key-reused"
    title = "Idempotency key reused with different content"


class PluginError(Exception):
    """A plugin set that cannot load: missing dependency, cycle, bad manifest."""


class LicenseError(PluginError):
    """A license that is invalid, or that does not allow what was asked."""
