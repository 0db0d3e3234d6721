"""The ``[prescription_review]`` configuration section, read once per configuration and checked.

Every key is optional::

    [prescription_review]
    storage_dir = "./var/prescriptions"   # documents, named by SHA-256, outside the database
    max_document_bytes = 10485760         # 10 MiB per uploaded image/PDF
    timezone = "Asia/Shanghai"            # the local day of issue dates and validity
    max_extension_days = 3                # validity with the prescriber's extension note
    claim_minutes = 15                    # how long a pharmacist's claim keeps others off
    banlist_file = ""                     # a ban list file used when none was loaded into the database
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import SectionCache

__all__ = ["Settings", "SettingsError", "settings_of", "FORM_OVERHEAD_BYTES"]

#: room for the text fields and multipart framing around the document itself
FORM_OVERHEAD_BYTES = 64 * 1024


class SettingsError(ValueError):
    """A ``[prescription_review]`` value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Settings:
    storage_dir: Path = Path("var/prescriptions")  # relative paths: from the working directory
    max_document_bytes: int = 10 * 1024 * 1024  # larger documents are refused (413)
    timezone: dt.tzinfo = dt.timezone(dt.timedelta(hours=8))  # replaced by Asia/Shanghai when available
    max_extension_days: int = 3  # an extension note makes a prescription valid this many days after issue
    claim_minutes: int = 15  # a claim expires after this long without a decision
    banlist_file: Path | None = None  # used instead of the bundled list while the database holds none

    def today(self, now: dt.datetime | None = None) -> dt.date:
        """The local date (Asia/Shanghai by default) of ``now`` (default: the current time)."""
        now = now or dt.datetime.now(dt.timezone.utc)
        return now.astimezone(self.timezone).date()


def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        if name == "Asia/Shanghai":  # no tz database installed: UTC+8 has no DST
            return dt.timezone(dt.timedelta(hours=8))
        raise SettingsError(f"prescription_review.timezone: unknown time zone {name!r}") from None


def _int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SettingsError(f"prescription_review.{key}: {value!r} must be an integer from {lo} to {hi}")
    return value


def parse(section: dict[str, Any]) -> Settings:
    """Settings from the table; unknown keys are refused (a typo must not pass silently)."""
    known = {"storage_dir", "max_document_bytes", "timezone", "max_extension_days", "claim_minutes", "banlist_file"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise SettingsError(f"prescription_review: unknown key(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
    kw: dict[str, Any] = {"timezone": _zone(str(section.get("timezone", "Asia/Shanghai")))}
    if "storage_dir" in section:
        if not isinstance(section["storage_dir"], str) or not section["storage_dir"].strip():
            raise SettingsError("prescription_review.storage_dir: must be a directory path")
        kw["storage_dir"] = Path(section["storage_dir"])
    if "max_document_bytes" in section:
        kw["max_document_bytes"] = _int("max_document_bytes", section["max_document_bytes"], 1024, 200 * 1024 * 1024)
    if "max_extension_days" in section:
        kw["max_extension_days"] = _int("max_extension_days", section["max_extension_days"], 0, 30)
    if "claim_minutes" in section:
        kw["claim_minutes"] = _int("claim_minutes", section["claim_minutes"], 1, 24 * 60)
    if section.get("banlist_file"):
        if not isinstance(section["banlist_file"], str):
            raise SettingsError("prescription_review.banlist_file: must be a file path")
        kw["banlist_file"] = Path(section["banlist_file"])
    return Settings(**kw)


#: the checked settings of a :class:`core.config.Config`, cached by content
settings_of = SectionCache("prescription_review", parse)
