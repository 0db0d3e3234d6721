"""Fixtures of the reliability tests: a deployment over real HTTP (see deployment.py).

``deployment`` is module-scoped and parametrized over :data:`deployment.KINDS`:
a module's tests run against one gunicorn with 3 workers, then against two
gunicorn "hosts" behind nginx, each built once (pytest orders the tests by
the parameter so only one deployment runs at a time). PostgreSQL only: on the
SQLite pass the tests that use it are skipped with the reason.
"""
from __future__ import annotations

import pytest

from core.testing import backend

from .deployment import KINDS, build_deployment

PG_ONLY = pytest.mark.skipif(backend() != "postgresql",
                             reason="several gunicorn processes (and hosts) share one PostgreSQL database; "
                                    "run with PHARMO2O_TEST_DATABASE=postgresql")


def _fake_wechat(appid: str):
    from tests.plugins.wechat_channel.fake_wechat import FakeWeChat
    from tests.plugins.wechat_channel.helpers import API_KEY, MCH_ID, SECRET
    return FakeWeChat(appid=appid, secret=SECRET, mch_id=MCH_ID, api_key=API_KEY).start()


@pytest.fixture
def fake():
    """A fake WeChat on 127.0.0.1 for the account of ``tests.plugins.wechat_channel.helpers``."""
    from tests.plugins.wechat_channel.helpers import APPID
    server = _fake_wechat(APPID)
    yield server
    server.stop()


@pytest.fixture(scope="module", params=KINDS)
def deployment(request, pharmo2o_databases, tmp_path_factory):
    """A started :class:`deployment.Deployment` (all four plugins, PostgreSQL, Redis, fake WeChat)."""
    if backend() != "postgresql":
        pytest.skip("needs PostgreSQL (PHARMO2O_TEST_DATABASE=postgresql)")
    dep = build_deployment(request.param, pharmo2o_databases, tmp_path_factory.mktemp(request.param), _fake_wechat)
    try:
        yield dep
    finally:
        dep.stop()
        dep.ctx.dispose()
        dep.fake.stop()
