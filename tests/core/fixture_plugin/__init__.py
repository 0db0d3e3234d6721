"""A tiny third-party-style plugin for the tests: its own table, its own
Alembic branch and a CLI command. Not installed: tests add it with
``extra_plugins=`` or register it as an entry point of a fake distribution."""
from core import Manifest

manifest = Manifest(
    name="p2o_fixture",
    version="0.0.1",
    summary="Test plugin with a notes table",
    migrations="migrations",
    hooks="tests.core.fixture_plugin.hooks",
)
TABLE = "p2o_fixture_notes"
