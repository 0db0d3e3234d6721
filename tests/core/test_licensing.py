import datetime as dt

import pytest

from core import licensing
from core.config import Config
from core.errors import LicenseError
from core.plugins import load_registry


@pytest.fixture(scope="module")
def keys():
    return licensing.generate_keypair()


def write(tmp_path, keys, modules, expires):
    private, public = keys
    (tmp_path / "vendor.pub").write_bytes(public)
    (tmp_path / "chain.lic").write_text(licensing.issue(private, "老百姓大药房", modules, expires))
    return {"file": str(tmp_path / "chain.lic"), "public_key": str(tmp_path / "vendor.pub")}


def test_issue_and_verify_round_trip(keys):
    text = licensing.issue(keys[0], "益丰", ["loyalty", "pos_sync"], dt.date(2030, 1, 1))
    lic = licensing.verify(text, keys[1])
    assert (lic.chain, lic.modules, lic.expires) == ("益丰", frozenset({"loyalty", "pos_sync"}), dt.date(2030, 1, 1))
    assert not lic.is_expired(dt.date(2030, 1, 1)) and lic.is_expired(dt.date(2030, 1, 2))


def test_tampered_or_foreign_license_is_refused(keys):
    text = licensing.issue(keys[0], "A", ["loyalty"], dt.date(2030, 1, 1))
    payload, sig = text.split(".")
    forged = licensing._b64(licensing._unb64(payload).replace(b"loyalty", b"pos_syn")) + "." + sig
    with pytest.raises(LicenseError, match="signature does not match"):
        licensing.verify(forged, keys[1])
    other_private, other_public = licensing.generate_keypair()
    with pytest.raises(LicenseError, match="signature does not match"):
        licensing.verify(text, other_public)
    with pytest.raises(LicenseError, match="<payload>.<signature>"):
        licensing.verify("garbage", keys[1])


def test_unlicensed_plugin_is_refused_naming_it(tmp_path, keys):
    lic = write(tmp_path, keys, ["loyalty"], dt.date.today() + dt.timedelta(days=30))
    config = Config(path=tmp_path / "p.toml", data={"license": lic, "plugins": {"enabled": ["loyalty", "pos_sync"]}})
    with pytest.raises(LicenseError, match=r"does not include 'pos_sync'"):
        load_registry(config)
    config.data["plugins"]["enabled"] = ["loyalty"]
    registry = load_registry(config)
    assert registry.license_state == "valid"
    assert registry.is_licensed("loyalty") and not registry.is_licensed("pos_sync")


def test_expired_license_keeps_plugins_running_and_says_so(tmp_path, keys, caplog):
    lic = write(tmp_path, keys, ["loyalty"], dt.date.today() - dt.timedelta(days=1))
    config = Config(path=tmp_path / "p.toml", data={"license": lic, "plugins": {"enabled": ["loyalty"]}})
    registry = load_registry(config)
    assert registry.enabled == ["loyalty"] and registry.license_state == "expired"
    assert "expired" in caplog.text and "renew" in registry.warnings[0]


def test_no_license_allows_every_bundled_plugin(tmp_path):
    config = Config(path=tmp_path / "p.toml",
                    data={"plugins": {"enabled": ["wechat_channel", "prescription_review", "loyalty", "pos_sync"]}})
    registry = load_registry(config)
    assert registry.license_state == "none" and len(registry.enabled) == 4


def test_license_without_public_key_is_a_clear_error(tmp_path, keys):
    lic = write(tmp_path, keys, ["loyalty"], dt.date(2030, 1, 1))
    config = Config(path=tmp_path / "p.toml", data={"license": {"file": lic["file"]}})
    with pytest.raises(LicenseError, match="public_key"):
        load_registry(config)
