"""The ``[meituan]`` configuration section.

::

    [meituan]
    secret = "..."               # shared with Meituan: signs both directions (or PHARMO2O_MEITUAN__SECRET)
    api_base = "https://waimaiopen.meituan.com/api/v1"   # where status pushes go
    timeout_seconds = 5          # per push; a slow or failed push is retried by the outbox
    [meituan.shops]              # Meituan shop code (app_poi_code) -> pharmo2o store code
    "mt-10086" = "SH001"         # a shop code not listed is taken as the store code itself
"""
from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import DomainError

__all__ = ["Settings", "settings_of", "NotConfigured", "DEFAULT_API_BASE"]

DEFAULT_API_BASE = "https://waimaiopen.meituan.com/api/v1"


class NotConfigured(DomainError):
    status = 503
    type = "urn:pharmo2o:meituan_delivery:not-configured"
    title = "Meituan delivery is not configured"


@dataclass(frozen=True)
class Settings:
    secret: str | None  # None: webhooks are refused (503) until it is set
    api_base: str = DEFAULT_API_BASE
    timeout_seconds: float = 5.0
    shops: dict[str, str] = field(default_factory=dict)

    def require_secret(self) -> str:
        if not self.secret:
            raise NotConfigured("set [meituan] secret (or PHARMO2O_MEITUAN__SECRET) to accept Meituan calls")
        return self.secret

    def store_code(self, app_poi_code: str) -> str:
        return self.shops.get(app_poi_code, app_poi_code)


def settings_of(config) -> Settings:
    """Read and check ``[meituan]``; a bad value raises ``ValueError`` naming the key."""
    section = config.section("meituan")
    secret = section.get("secret")
    if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
        raise ValueError("[meituan] secret must be a string of at least 16 characters")
    api_base = section.get("api_base", DEFAULT_API_BASE)
    if not isinstance(api_base, str) or not api_base.startswith(("http://", "https://")):
        raise ValueError(f"[meituan] api_base must be an http(s) URL, not {api_base!r}")
    timeout = section.get("timeout_seconds", 5)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise ValueError(f"[meituan] timeout_seconds must be a number of seconds from 0 to 60, not {timeout!r}")
    shops = section.get("shops", {})
    if not isinstance(shops, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in shops.items()):
        raise ValueError("[meituan.shops] must map Meituan shop codes to store codes (strings)")
    return Settings(secret=secret or None, api_base=api_base.rstrip("/"), timeout_seconds=float(timeout),
                    shops=dict(shops))
