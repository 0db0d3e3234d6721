"""docs/deploy.md shows the nginx configuration the reliability tests run, and nginx accepts it."""
from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

from .deployment import DOC_EXAMPLE, NGINX, nginx_conf

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def shown_conf() -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- nginx-conf:begin -->\n```nginx\n(.*?)```\n<!-- nginx-conf:end -->", text, re.DOTALL)
    assert m, "docs/deploy.md lost its nginx-conf block"
    return m.group(1)


def self_signed(folder: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.example.com")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return str(folder / "tls.crt"), str(folder / "tls.key")


def test_the_page_shows_exactly_the_configuration_the_tests_generate():
    assert shown_conf() == nginx_conf(**DOC_EXAMPLE)


def test_nginx_accepts_that_configuration(tmp_path):
    cert, key = self_signed(tmp_path)
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(**{**DOC_EXAMPLE, "prefix": str(tmp_path), "pid": str(tmp_path / "nginx.pid"),
                                  "access_log": str(tmp_path / "access.log"), "error_log": str(tmp_path / "error.log"),
                                  "user": None, "tls_certificate": cert, "tls_certificate_key": key}))
    done = subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr and "test is successful" in done.stderr
