"""docs/flows.md describes what the code does: every endpoint, hook, outbox kind and job it names
exists in an app with the bundled plugins and the example plugin enabled."""
from __future__ import annotations

import re
from pathlib import Path

from core import hookspecs
from core.jobs import jobs_of
from core.plugins import discover

DOC = Path(__file__).resolve().parents[2] / "docs" / "flows.md"
PLUGINS = ["loyalty", "pos_sync", "prescription_review", "wechat_channel", "meituan_delivery"]


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.split("?", 1)[0])


def test_the_flows_have_their_diagrams():
    text = DOC.read_text(encoding="utf-8")
    assert text.count("```mermaid\nsequenceDiagram") >= 3
    for title in ("prescription (Rx) order", "WeChat payment and its notification", "offline POS sale"):
        assert title in text


def test_every_endpoint_hook_outbox_kind_and_job_named_exists(make_ctx):
    assert "meituan_delivery" in discover(), "install examples/meituan_delivery (scripts/test.sh does)"
    ctx = make_ctx(enabled=PLUGINS)
    from core.api import create_app
    app = create_app(ctx)
    served = {(route.method, _shape(route.template)) for route in app.api.routes}
    text = DOC.read_text(encoding="utf-8")

    named = {(method, _shape(path)) for method, path in re.findall(r"\b(GET|POST|PUT|PATCH|DELETE) (/[^\s`()]*)", text)}
    assert len(named) >= 20
    assert sorted(named - served) == []

    hooks = set(re.findall(r"(?<![\w.])((?:order|product)_[a-z_]+)\b", text))
    specs = {name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "pharmo2o_spec")}
    assert hooks and sorted(hooks - specs) == []

    kinds = set(ctx.registry.merged_dict("notification_senders", "notification kind", ctx=ctx))
    jobs = {job.name for job in jobs_of(ctx.registry)}
    mentioned = set(re.findall(r"(?<![\w.])((?:customer|wechat|meituan|orders|outbox)\.[a-z_]+)\b", text))
    assert {"customer.notify", "wechat.template", "outbox.dispatch"} <= mentioned
    assert sorted(mentioned - kinds - jobs) == []
