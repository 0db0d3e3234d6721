"""Prescription documents: type by magic bytes, stored outside the database under their SHA-256.

Files live in ``<storage_dir>/<first two hex digits>/<sha256>`` (mode 0600), written
to a temporary name and renamed, so a reader never sees half a file and two
uploads of the same bytes end in one file. The database row (``rx_documents``)
records hash, type and size; the bytes are checked against the hash when read.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import DomainError, ValidationFailed

from .models import RxDocument

__all__ = ["sniff", "check", "find", "save", "read", "path_for", "EXTENSIONS", "DocumentMissing"]

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}


class DocumentMissing(DomainError):
    """The stored file is gone or does not match its hash (the record is kept; an operator must restore it)."""

    status = 500
    type = "https://pharmo2o.dev/problems/prescription-document-missing"
    title = "Prescription document unavailable"


def sniff(data: bytes) -> str | None:
    """The media type the bytes really are (JPEG, PNG or PDF), whatever the client claimed."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:5] == b"%PDF-":
        return "application/pdf"
    return None


def path_for(storage_dir: Path, sha256: str) -> Path:
    return Path(storage_dir) / sha256[:2] / sha256


def _write(path: Path, data: bytes) -> None:
    if path.exists() and path.stat().st_size == len(data):
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check(data: bytes, field: str = "document") -> tuple[str, str]:
    """``(media_type, sha256)`` of an acceptable document; 422 naming ``field`` otherwise."""
    if not data:
        raise ValidationFailed.one(field, "is empty: attach the prescription image or PDF")
    media_type = sniff(data)
    if media_type is None:
        raise ValidationFailed.one(field, "must be a JPEG or PNG image or a PDF (checked by content, not by name)")
    return media_type, hashlib.sha256(data).hexdigest()


def find(session: Session, sha256: str) -> RxDocument | None:
    return session.scalars(select(RxDocument).where(RxDocument.sha256 == sha256)).first()


def save(session: Session, settings, data: bytes, actor: str, field: str = "document") -> RxDocument:
    """Check and store ``data``; returns its row (the existing one when the same bytes were stored before)."""
    media_type, digest = check(data, field)
    _write(path_for(settings.storage_dir, digest), data)
    existing = find(session, digest)
    if existing is not None:
        return existing
    row = RxDocument(sha256=digest, media_type=media_type, size_bytes=len(data), uploaded_by=actor)
    try:
        with session.begin_nested():  # the same bytes uploaded at the same moment by someone else
            session.add(row)
            session.flush()
    except IntegrityError:
        return session.scalars(select(RxDocument).where(RxDocument.sha256 == digest)).one()
    return row


def read(settings, document: RxDocument) -> bytes:
    """The document's bytes, verified against the recorded hash."""
    path = path_for(settings.storage_dir, document.sha256)
    try:
        data = path.read_bytes()
    except OSError:
        raise DocumentMissing(f"the file of document {document.sha256[:12]}… is missing from the prescription "
                              "store; restore it from backup") from None
    if hashlib.sha256(data).hexdigest() != document.sha256:
        raise DocumentMissing(f"the file of document {document.sha256[:12]}… does not match its hash; "
                              "restore it from backup")
    return data
