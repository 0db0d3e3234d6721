"""Fixtures of the WeChat tests: the fake WeChat, an API on a configured account, a merchant certificate."""
from __future__ import annotations

import datetime as dt

import pytest

from .fake_wechat import FakeWeChat
from .helpers import API_KEY, APPID, MCH_ID, SECRET, settings, shop


@pytest.fixture
def fake():
    server = FakeWeChat(appid=APPID, secret=SECRET, mch_id=MCH_ID, api_key=API_KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A merchant certificate and key as PEM files (self-signed: the fake WeChat does not check them)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MCH_ID)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("wechat-cert")
    (folder / "apiclient_cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "apiclient_key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(folder / "apiclient_cert.pem"), str(folder / "apiclient_key.pem")


@pytest.fixture
def make_wx(make_api, fake, certs):
    """``make_wx(enabled=[...], **wechat settings)`` -> a :class:`helpers.Shop` on a configured account."""
    def factory(enabled=("wechat_channel",), openid="o-customer-1", with_certs=True, extra_plugins=(),
                other=None, **over):
        conf = settings(fake, certs=certs if with_certs else None, **over)
        conf.update(other or {})
        api = make_api(enabled=list(enabled), extra_plugins=list(extra_plugins), settings=conf)
        return shop(api, fake, openid=openid)
    return factory


@pytest.fixture
def wx(make_wx):
    return make_wx()
