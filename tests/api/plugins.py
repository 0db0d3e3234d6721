"""Throwaway plugins declared inline for the API tests."""
from __future__ import annotations

import types

from core import Manifest, hookimpl


def make_plugin(name: str, **hooks) -> types.ModuleType:
    """A plugin module named ``name`` implementing ``hooks`` (plain functions)."""
    module = types.ModuleType(f"tests_api_plugin_{name}")
    module.manifest = Manifest(name=name, version="0.0.1", summary=f"test plugin {name}")
    for hook_name, fn in hooks.items():
        fn.__name__ = hook_name
        setattr(module, hook_name, hookimpl(fn))
    return module
