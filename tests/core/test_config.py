import pytest

from core.config import ConfigError, load_config


def test_file_then_environment_overrides(tmp_path):
    path = tmp_path / "pharmo2o.toml"
    path.write_text('database_url = "sqlite:///a.db"\n[plugins]\nenabled = ["loyalty"]\n[orders]\nunpaid_ttl_minutes = 30\n')
    config = load_config(path, environ={"PHARMO2O_DATABASE_URL": "postgresql://x/y", "PHARMO2O_ORDERS__UNPAID_TTL_MINUTES": "5"})
    assert config.database_url == "postgresql://x/y"
    assert config.get("orders.unpaid_ttl_minutes") == 5
    assert config.enabled_plugins == ["loyalty"]
    assert load_config(path, environ={"PHARMO2O_PLUGINS": "pos_sync, loyalty"}).enabled_plugins == ["pos_sync", "loyalty"]


def test_missing_file_gives_the_embedded_default(tmp_path):
    config = load_config(tmp_path / "absent.toml", environ={})
    assert config.database_url == "sqlite:///pharmo2o.db" and config.enabled_plugins == []


def test_config_file_from_environment_and_bad_toml(tmp_path):
    path = tmp_path / "other.toml"
    path.write_text("database_url = [unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(environ={"PHARMO2O_CONFIG": str(path)})


def test_set_enabled_plugins_keeps_the_rest_of_the_file(tmp_path):
    path = tmp_path / "pharmo2o.toml"
    path.write_text('database_url = "sqlite:///keep.db"\n[wechat]\nappid = "wx1"\n')
    config = load_config(path, environ={})
    config.set_enabled_plugins(["pos_sync", "loyalty"])
    again = load_config(path, environ={})
    assert again.enabled_plugins == ["loyalty", "pos_sync"]
    assert again.database_url == "sqlite:///keep.db" and again.get("wechat.appid") == "wx1"
