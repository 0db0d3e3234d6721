"""Who is calling: the caller object handed to services and hooks, and password hashing."""
from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["Caller", "SYSTEM", "hash_password", "verify_password", "STAFF_ROLES"]

STAFF_ROLES = ("admin", "store_manager", "pharmacist", "clerk")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Caller:
    """The identity behind a call. ``role`` is a staff role, ``"customer"``,
    ``"device"`` (a POS terminal), ``"system"`` or ``None`` (anonymous)."""

    role: str | None
    user_id: int | None = None
    customer_id: int | None = None
    store_id: int | None = None
    name: str = ""
    device_id: int | None = None

    @property
    def actor(self) -> str:
        """How the audit log and movements name this caller."""
        if self.role == "customer":
            return f"customer:{self.customer_id}"
        if self.role == "device":
            return f"device:{self.device_id}"
        if self.role in STAFF_ROLES:
            return f"user:{self.name or self.user_id}"
        return self.role or "anonymous"

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES


SYSTEM = Caller(role="system", name="system")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
