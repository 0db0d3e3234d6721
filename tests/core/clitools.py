"""Helpers for the CLI tests: a configuration on a fresh, empty database of the
backend under test, a runner that never hides a traceback, and a fake
third-party distribution that registers the fixture plugins as entry points."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner, Result

from core.cli import cli
from core.config import load_config
from core.context import Context


class Cli:
    def __init__(self, config: Path, url: str):
        self.config = config
        self.url = url
        self._contexts: list[Context] = []

    def __call__(self, *args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(cli, ["--config", str(self.config), *args], input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a traceback is a bug: show it
        return result

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        return result

    def settings(self) -> dict:
        import tomllib
        return tomllib.loads(self.config.read_text(encoding="utf-8"))

    def update(self, **data) -> None:
        current = self.settings()
        current.update(data)
        self.config.write_text(tomli_w.dumps(current), encoding="utf-8")

    def context(self, enabled: list[str] | None = None, extra=()) -> Context:
        """A Context on the same database, for looking at what the CLI did."""
        ctx = Context.create(load_config(self.config), enabled=[] if enabled is None else enabled,
                             extra_plugins=extra)
        self._contexts.append(ctx)
        return ctx

    def close(self) -> None:
        for ctx in self._contexts:
            ctx.dispose()


def clean_environment(monkeypatch) -> None:
    for key in list(os.environ):
        if key.startswith("PHARMO2O_") and not key.startswith("PHARMO2O_TEST_"):
            monkeypatch.delenv(key)


def _cli(pharmo2o_databases, tmp_path, monkeypatch, migrated: bool):
    clean_environment(monkeypatch)
    url = pharmo2o_databases.fresh([], (), tmp_path, migrated=migrated)
    config = tmp_path / "pharmo2o.toml"
    config.write_text(tomli_w.dumps({"database_url": url, "plugins": {"enabled": []}}), encoding="utf-8")
    return Cli(config, url)


@pytest.fixture
def run(pharmo2o_databases, tmp_path, monkeypatch):
    """``run(*args)`` invokes ``pharmo2o --config <tmp>/pharmo2o.toml *args`` on an empty database."""
    helper = _cli(pharmo2o_databases, tmp_path, monkeypatch, migrated=False)
    yield helper
    helper.close()


@pytest.fixture
def initialised(pharmo2o_databases, tmp_path, monkeypatch):
    """Like ``run``, on a database already migrated for the core (a copy of the template, as `init` leaves it)."""
    helper = _cli(pharmo2o_databases, tmp_path, monkeypatch, migrated=True)
    yield helper
    helper.close()


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """Install the fixture plugins the way a third-party package would: entry points of a distribution."""
    site = tmp_path / "site-packages"
    dist = site / "pharmo2o_fixture-0.0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pharmo2o-fixture\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text(
        "[pharmo2o.plugins]\n"
        "p2o_fixture = tests.core.fixture_plugin\n"
        "p2o_fixture_child = tests.core.fixture_plugin_child\n")
    monkeypatch.syspath_prepend(str(site))
    return site
