"""The audit log, for admins."""
from __future__ import annotations

from ... import audit
from ..operations import operation
from ..pagination import decode_cursor, page_body
from ..schemas import AuditOut, AuditPage, AuditQuery
from .common import dump

__all__ = ["Audit"]


class Audit:
    @operation("audit.list", roles=("admin",), query=AuditQuery, response=AuditPage, tags=("audit",),
               summary="Audit log entries, newest first, filtered")
    def on_get(self, req, resp):
        q = req.context.query
        page = audit.list_entries(req.context.session, actor=q.actor, action=q.action, entity=q.entity,
                                  entity_id=q.entity_id, since=q.since, until=q.until,
                                  before=decode_cursor(q.cursor), limit=q.limit)
        resp.media = page_body([dump(AuditOut, e) for e in page.items], page.next_after)
