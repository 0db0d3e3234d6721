"""docs/plugins.md keeps up with the code: a reference entry per hook with the hookspec's exact
signature, when it runs, its transaction, how answers combine and a minimal example; the test kit
fixtures it lists exist; the guide covers what a plugin author needs."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

import core.testing
from core import hookspecs
from core.plugins import discover

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "plugins.md"
ENTRY = re.compile(r"^### `(\w+)\(([^)]*)\)`\s*$", re.M)
CODE = re.compile(r"```python\n(.*?)```", re.S)
LABELS = ("**When:**", "**Transaction:**", "**Answers:**")


def specs_of(module: ModuleType) -> dict[str, list[str]]:
    """``{hook name: [parameter, ...]}`` of the hookspecs in ``module``."""
    marker = f"{hookspecs.PROJECT}_spec"
    return {name: list(inspect.signature(fn).parameters) for name, fn in vars(module).items()
            if callable(fn) and hasattr(fn, marker)}


def entries(text: str) -> dict[str, tuple[list[str], str]]:
    """``{hook name: ([parameter, ...], entry text)}`` of the reference entries in ``text``."""
    reference = text.split("## Hook reference", 1)[1] if "## Hook reference" in text else ""
    found = {}
    matches = list(ENTRY.finditer(reference))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(reference)
        params = [p.strip() for p in m.group(2).split(",") if p.strip()]
        found[m.group(1)] = (params, reference[m.end():end])
    return found


def problems(text: str, specs: dict[str, list[str]]) -> list[str]:
    """What is wrong with the reference in ``text`` for these hookspecs (empty when it is right)."""
    out = []
    documented = entries(text)
    for name, params in sorted(specs.items()):
        if name not in documented:
            out.append(f"hook {name} has no reference entry (a heading ### `{name}({', '.join(params)})`)")
            continue
        doc_params, body = documented[name]
        if doc_params != params:
            out.append(f"hook {name}: documented as ({', '.join(doc_params)}), the hookspec is ({', '.join(params)})")
        for label in LABELS:
            if label not in body:
                out.append(f"hook {name}: its entry has no {label} paragraph")
        examples = [ast.parse(code) for code in CODE.findall(body)]
        defs = [node for tree in examples for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef) and node.name == name]
        if not defs:
            out.append(f"hook {name}: its entry has no minimal example `def {name}(...)`")
        for node in defs:
            used = [a.arg for a in node.args.args]
            if [p for p in params if p in used] != used:
                out.append(f"hook {name}: the example takes ({', '.join(used)}), not a subset of the hookspec's")
            decorators = [ast.unparse(d) for d in node.decorator_list]
            if not any(d.startswith("hookimpl") for d in decorators):
                out.append(f"hook {name}: the example is not decorated with @hookimpl")
    for name in sorted(set(documented) - set(specs)):
        out.append(f"the reference documents {name}, which is no hook")
    return out


def bundled_specs() -> dict[str, list[str]]:
    """The core's hookspecs and those the bundled plugins declare (Manifest.hookspecs)."""
    specs = specs_of(hookspecs)
    for info in discover().values():
        if info.distribution == "pharmo2o" and info.manifest.hookspecs:
            specs.update(specs_of(info.hookspecs_module()))
    return specs


def test_every_hook_has_a_reference_entry_with_its_exact_signature():
    assert len(specs_of(hookspecs)) >= 20
    assert problems(DOC.read_text(encoding="utf-8"), bundled_specs()) == []


def test_the_check_fails_for_a_missing_or_drifted_entry():
    text = DOC.read_text(encoding="utf-8")
    specs = bundled_specs()
    missing = dict(specs, order_refunded=["session", "order"])  # a hook added without documentation
    assert problems(text, missing) == [
        "hook order_refunded has no reference entry (a heading ### `order_refunded(session, order)`)"]
    drifted = dict(specs, order_validate=["session", "order", "caller"])  # a signature changed in the code
    assert "hook order_validate: documented as (session, order, extra, caller), the hookspec is " \
           "(session, order, caller)" in problems(text, drifted)
    removed = {k: v for k, v in specs.items() if k != "capabilities"}
    assert problems(text, removed) == ["the reference documents capabilities, which is no hook"]
    stripped = text.replace("**When:** when a job runner starts", "When a job runner starts").replace(
        "@hookimpl\ndef register_jobs():", "def register_jobs():")
    assert problems(stripped, specs) == ["hook register_jobs: its entry has no **When:** paragraph",
                                         "hook register_jobs: the example is not decorated with @hookimpl"]


def test_every_python_example_parses():
    for code in CODE.findall(DOC.read_text(encoding="utf-8")):
        ast.parse(code)


def _kit_table_names(text: str) -> list[str]:
    table = text.split("| fixture / helper |", 1)[1].split("\n\n", 1)[0]
    names = []
    for row in table.splitlines()[2:]:
        first = row.split("|")[1]
        names += re.findall(r"`([\w.]+)", first)
    return names


def test_the_test_kit_fixtures_it_lists_exist(pytestconfig):
    names = _kit_table_names(DOC.read_text(encoding="utf-8"))
    assert {"plugin_api", "shop", "fake_http", "pharmo2o_enabled", "pharmo2o_settings", "make_api"} <= set(names)
    fixtures = pytestconfig.pluginmanager.get_plugin("pharmo2o")
    assert fixtures is core.testing  # the pytest11 entry point is the test kit
    for name in names:
        if name.startswith("core.testing."):
            assert callable(getattr(core.testing, name.split(".")[-1], None)), name
        else:
            fn = getattr(core.testing, name, None)
            is_fixture = type(fn).__name__ == "FixtureFunctionDefinition" or hasattr(fn, "_fixture_function_marker")
            assert is_fixture, f"{name} is not a fixture of core.testing"


@pytest.mark.parametrize("topic", [
    "## The manifest", "pharmo2o.plugins =", "branch_labels", "depends_on", "## Routes", "@operation",
    "## CLI commands", "register_payment_providers", "## Notification senders and the outbox",
    "## Periodic jobs", "## Console pages", "## Testing a plugin: the test kit", "## When a plugin fails"])
def test_the_guide_covers(topic):
    assert topic in DOC.read_text(encoding="utf-8")
