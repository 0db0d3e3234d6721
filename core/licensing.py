"""Signed licenses: which chain may enable which modules until when (Ed25519).

A license file is one line: ``base64url(payload JSON) "." base64url(signature)``.
The vendor signs with its private key (``pharmo2o license issue``); a
deployment verifies with the vendor's public key named in its configuration
(``[license] public_key`` = a PEM file, ``[license] file`` = the license).
An expired license never hides data: the plugins it names keep loading, and
the state is reported as ``expired`` (enabling more plugins is refused).
"""
from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .config import Config
from .errors import LicenseError

__all__ = ["License", "generate_keypair", "issue", "verify", "from_config"]


@dataclass(frozen=True)
class License:
    chain: str
    modules: frozenset[str]
    expires: dt.date
    issued_at: dt.datetime

    def is_expired(self, today: dt.date | None = None) -> bool:
        return (today or dt.datetime.now(dt.timezone.utc).date()) > self.expires

    def as_dict(self) -> dict:
        return {"chain": self.chain, "modules": sorted(self.modules), "expires": self.expires.isoformat(),
                "issued_at": self.issued_at.isoformat()}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_keypair() -> tuple[bytes, bytes]:
    """A new vendor key pair as (private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def issue(private_pem: bytes, chain: str, modules: list[str], expires: dt.date) -> str:
    """Sign a license for ``chain`` naming ``modules`` valid through ``expires``."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise LicenseError("the private key is not an Ed25519 key")
    payload = json.dumps({
        "chain": chain, "modules": sorted(set(modules)), "expires": expires.isoformat(),
        "issued_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
    }, sort_keys=True, separators=(",", ":")).encode()
    return _b64(payload) + "." + _b64(key.sign(payload))


def verify(text: str, public_pem: bytes) -> License:
    """Check the signature and return the license; :class:`LicenseError` if it is not genuine."""
    try:
        key = serialization.load_pem_public_key(public_pem)
    except ValueError as exc:
        raise LicenseError(f"the license public key is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise LicenseError("the license public key is not an Ed25519 key")
    try:
        payload_b64, sig_b64 = text.strip().split(".")
        payload, signature = _unb64(payload_b64), _unb64(sig_b64)
    except ValueError as exc:
        raise LicenseError("the license file is not in the form <payload>.<signature>") from exc
    try:
        key.verify(signature, payload)
    except InvalidSignature as exc:
        raise LicenseError("the license signature does not match the vendor key: refusing it") from exc
    data = json.loads(payload)
    return License(chain=data["chain"], modules=frozenset(data["modules"]),
                   expires=dt.date.fromisoformat(data["expires"]),
                   issued_at=dt.datetime.fromisoformat(data["issued_at"]))


def from_config(config: Config) -> tuple[License | None, str, list[str]]:
    """The configured license, its state (none/valid/expired) and warnings to log."""
    section = config.section("license")
    file, public = section.get("file"), section.get("public_key")
    if not file:
        return None, "none", []
    if not public:
        raise LicenseError("[license] file is set but [license] public_key (the vendor's PEM file) is not")
    try:
        text = Path(file).read_text(encoding="utf-8")
        public_pem = Path(public).read_bytes()
    except OSError as exc:
        raise LicenseError(f"cannot read license: {exc}") from exc
    lic = verify(text, public_pem)
    if lic.is_expired():
        return lic, "expired", [
            f"the license of {lic.chain!r} expired on {lic.expires.isoformat()}: licensed modules keep "
            "running and all data stays available, but no further module can be enabled; renew it"]
    return lic, "valid", []
