"""Request signatures: HMAC-SHA256 of the exact body bytes with the shared secret, hex-encoded,
sent in the ``X-Meituan-Signature`` header (both directions)."""
from __future__ import annotations

import hashlib
import hmac

from core.errors import DomainError

__all__ = ["HEADER", "sign", "verify", "BadSignature"]

HEADER = "X-Meituan-Signature"


class BadSignature(DomainError):
    status = 401
    type = "urn:pharmo2o:meituan_delivery:bad-signature"
    title = "Bad signature"


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str | None) -> None:
    """Refuse (401) a missing or wrong signature; compared in constant time."""
    if not signature:
        raise BadSignature(f"send the {HEADER} header: hex HMAC-SHA256 of the body with the shared secret",
                           fields=[{"field": HEADER, "message": "is required"}])
    if not hmac.compare_digest(sign(secret, body), signature.strip().lower()):
        raise BadSignature("the signature does not match the body",
                           fields=[{"field": HEADER, "message": "does not match the body"}])
