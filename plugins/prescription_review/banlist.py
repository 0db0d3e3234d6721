"""The online-sale ban list (药品网络销售禁止清单) as versioned data, not code.

A ban list is a JSON document (``data/banlist.json`` is the bundled one)::

    {"format": 1, "version": "nmpa-2022-111.1", "title": "...", "source": "...",
     "entries": [{"id": "injections", "reason": "注射剂（降糖类药物除外）",
                  "dosage_form_contains": ["注射"], "unless_generic_name_contains": ["胰岛素"]}, ...]}

An entry matches a product when every condition it names holds; a condition
holds when any one of its values matches:

* ``approval_number``: the product's approval number is one of these
* ``category``: the product's category is one of these
* ``generic_name_contains`` / ``dosage_form_contains``: the name / form contains one of these
* ``generic_name_matches``: a regular expression the generic name matches
* ``unless_generic_name_contains``: exempts products whose name contains one of these

Which list is in force: the newest version loaded into the database
(``pharmo2o prescriptions banlist load FILE`` or ``POST /api/v1/prescriptions/banlist``;
every version is kept), else the file named by ``prescription_review.banlist_file``,
else the bundled file. A request reads the version in force once (cached on its session).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from core import audit
from core.auth import Caller
from core.errors import Conflict, ValidationFailed

from .models import BanListVersion

__all__ = ["BanList", "BanEntry", "BUNDLED", "parse", "load_file", "bundled", "in_force", "store_version",
           "for_product", "versions"]

BUNDLED = Path(__file__).resolve().parent / "data" / "banlist.json"
LIST_CONDITIONS = ("approval_number", "category", "generic_name_contains", "dosage_form_contains",
                   "unless_generic_name_contains")
POSITIVE = ("approval_number", "category", "generic_name_contains", "dosage_form_contains", "generic_name_matches")
_SESSION_KEY = "prescription_review.banlist"


@dataclass(frozen=True)
class BanEntry:
    id: str
    reason: str
    approval_number: frozenset[str] = frozenset()
    category: frozenset[str] = frozenset()
    generic_name_contains: tuple[str, ...] = ()
    dosage_form_contains: tuple[str, ...] = ()
    generic_name_matches: re.Pattern | None = None
    unless_generic_name_contains: tuple[str, ...] = ()

    def matches(self, product) -> bool:
        name = product.generic_name or ""
        if self.unless_generic_name_contains and any(s in name for s in self.unless_generic_name_contains):
            return False
        checks = []
        if self.approval_number:
            checks.append(product.approval_number in self.approval_number)
        if self.category:
            checks.append((product.category or "") in self.category)
        if self.generic_name_contains:
            checks.append(any(s in name for s in self.generic_name_contains))
        if self.dosage_form_contains:
            checks.append(any(s in (product.dosage_form or "") for s in self.dosage_form_contains))
        if self.generic_name_matches is not None:
            checks.append(self.generic_name_matches.search(name) is not None)
        return bool(checks) and all(checks)


@dataclass(frozen=True)
class BanList:
    version: str
    title: str
    source: str
    entries: tuple[BanEntry, ...]
    document: dict  # as loaded (what the API shows)
    origin: str  # "database", "file" or "bundled"
    sha256: str

    _matched: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def match(self, product) -> BanEntry | None:
        """The first entry that bans ``product`` online, or ``None`` (remembered per list for the
        fields the entries look at: a product's answer is worked out once, not per order and hook)."""
        key = (product.approval_number, product.category, product.generic_name, product.dosage_form)
        try:
            return self._matched[key]
        except KeyError:
            pass
        found = next((e for e in self.entries if e.matches(product)), None)
        if len(self._matched) >= 10_000:  # bounded: a catalogue pull of 50,000 products grew a worker 20 MB at 50,000
            self._matched.clear()
        self._matched[key] = found
        return found


def _fail(where: str, message: str):
    raise ValidationFailed.one(where, message)


def parse(document: Any, *, origin: str = "database") -> BanList:
    """Check a ban-list document; a bad one is refused (422) naming the entry and condition."""
    if not isinstance(document, dict):
        _fail("body", "a ban list is a JSON object with format, version and entries")
    if document.get("format") != 1:
        _fail("format", "must be 1")
    version = document.get("version")
    if not isinstance(version, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", version):
        _fail("version", "must be 1 to 64 letters, digits or . _ : - (e.g. nmpa-2022-111.2)")
    entries_raw = document.get("entries")
    if not isinstance(entries_raw, list) or not entries_raw:
        _fail("entries", "must be a non-empty list")
    known = {"id", "reason", "generic_name_matches", *LIST_CONDITIONS}
    entries, seen = [], set()
    for i, raw in enumerate(entries_raw):
        where = f"entries[{i}]"
        if not isinstance(raw, dict):
            _fail(where, "must be an object")
        unknown = sorted(set(raw) - known)
        if unknown:
            _fail(f"{where}.{unknown[0]}", f"unknown condition; known: {', '.join(sorted(known - {'id', 'reason'}))}")
        eid, reason = raw.get("id"), raw.get("reason")
        if not isinstance(eid, str) or not eid.strip() or eid in seen:
            _fail(f"{where}.id", "must be a non-empty string, unique in the list")
        seen.add(eid)
        if not isinstance(reason, str) or not reason.strip():
            _fail(f"{where}.reason", "must say why the products are banned")
        kw: dict[str, Any] = {}
        for cond in LIST_CONDITIONS:
            if cond in raw:
                values = raw[cond]
                if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
                    _fail(f"{where}.{cond}", "must be a non-empty list of non-empty strings")
                kw[cond] = frozenset(values) if cond in ("approval_number", "category") else tuple(values)
        if "generic_name_matches" in raw:
            pattern = raw["generic_name_matches"]
            try:
                kw["generic_name_matches"] = re.compile(pattern) if isinstance(pattern, str) and pattern else None
            except re.error as exc:
                _fail(f"{where}.generic_name_matches", f"not a regular expression: {exc}")
            if kw["generic_name_matches"] is None:
                _fail(f"{where}.generic_name_matches", "must be a non-empty regular expression")
        if not any(c in kw for c in POSITIVE):
            _fail(where, f"names no condition (one of {', '.join(POSITIVE)}): it would ban nothing or everything")
        entries.append(BanEntry(id=eid, reason=reason.strip(), **kw))
    canonical = json.dumps(document, ensure_ascii=False, sort_keys=True).encode()
    return BanList(version=version, title=str(document.get("title", "")), source=str(document.get("source", "")),
                   entries=tuple(entries), document=document, origin=origin,
                   sha256=hashlib.sha256(canonical).hexdigest())


def load_file(path: Path, origin: str = "file") -> BanList:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationFailed.one("file", f"{path}: cannot read a JSON ban list: {exc}") from None
    return parse(document, origin=origin)


_files: dict[tuple[str, float], BanList] = {}


def _file_list(path: Path, origin: str) -> BanList:
    key = (str(path), path.stat().st_mtime)
    found = _files.get(key)
    if found is None:
        found = load_file(path, origin)
        _files.clear()
        _files[key] = found
    return found


def bundled() -> BanList:
    return _file_list(BUNDLED, "bundled")


_NEWEST = select(BanListVersion.id, BanListVersion.sha256).order_by(BanListVersion.id.desc()).limit(1)


def in_force(session: Session, settings) -> BanList:
    """The ban list in force for this unit of work (read once per session)."""
    cached = session.info.get(_SESSION_KEY)
    if cached is not None:
        return cached
    # which version is newest (id and digest only: its document is parsed once per process and version)
    head = session.execute(_NEWEST).first()
    if head is not None:
        found = _db_lists.get((head.id, head.sha256))
        if found is None:
            found = _db_list(session.get(BanListVersion, head.id))
    elif settings.banlist_file is not None:
        found = _file_list(settings.banlist_file, "file")
    else:
        found = bundled()
    session.info[_SESSION_KEY] = found
    return found


_db_lists: dict[tuple[int, str], BanList] = {}


def _db_list(row: BanListVersion) -> BanList:
    key = (row.id, row.sha256)
    found = _db_lists.get(key)
    if found is None:
        found = parse(row.document, origin="database")
        if len(_db_lists) > 16:
            _db_lists.clear()
        _db_lists[key] = found
    return found


def for_product(product, settings) -> BanList:
    """The list in force, reached through the session that loaded ``product`` (the bundled
    or configured file when the product is not attached to one)."""
    session = object_session(product)
    if session is not None:
        return in_force(session, settings)
    return _file_list(settings.banlist_file, "file") if settings.banlist_file is not None else bundled()


def store_version(session: Session, document: Any, caller: Caller | str, source: str) -> BanListVersion:
    """Load a new version (it is in force from this transaction's commit); a version id is used once."""
    parsed = parse(document)
    existing = session.scalars(select(BanListVersion).where(BanListVersion.version == parsed.version)).first()
    if existing is not None:
        if existing.sha256 == parsed.sha256:
            return existing
        raise Conflict(f"ban list version {parsed.version!r} was already loaded with other content; "
                       "give the new list a new version", fields=[{"field": "version", "message": "already used"}])
    row = BanListVersion(version=parsed.version, source=source[:300], sha256=parsed.sha256, document=document,
                         loaded_by=caller.actor if isinstance(caller, Caller) else str(caller))
    session.add(row)
    session.flush()
    audit.record(session, caller, "prescription_review.banlist.load", "rx_banlist", row.id,
                 after={"version": parsed.version, "entries": len(parsed.entries), "sha256": parsed.sha256},
                 detail=source[:300])
    session.info.pop(_SESSION_KEY, None)
    return row


def versions(session: Session) -> list[BanListVersion]:
    return list(session.scalars(select(BanListVersion).order_by(BanListVersion.id.desc())))
