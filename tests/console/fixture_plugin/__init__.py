"""A plugin for the console tests, shaped like prescription_review: it holds online orders with
prescription (Rx) lines for review, and adds a console page (``console/review.js``) for pharmacists."""
from core import Manifest, hookimpl

manifest = Manifest(name="console_fixture", version="0.3.1", summary="Console test plugin: holds Rx orders for review")
HOLD_REASON = "prescription needs pharmacist review"


@hookimpl
def capabilities():
    return ["prescription_review"]


@hookimpl
def order_hold(session, order, extra, caller):
    if order.channel == "web" and any(line.rx_class == "rx" for line in order.lines):
        return HOLD_REASON
    return None


@hookimpl
def register_console_pages():
    return [{"id": "rx-review", "title": "Rx review queue", "roles": ["pharmacist", "admin"],
             "script": "review.js", "section": "Pharmacy", "order": 25}]
