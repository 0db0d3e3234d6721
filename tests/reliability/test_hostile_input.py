"""Hostile input (issue #10), with all four bundled plugins enabled: oversized and lying bodies, wrong content
types, uploads that are not what they claim, path traversal, XML bombs and external entities on every WeChat
endpoint that parses XML, SQL metacharacters in every text field of the create endpoints, and Unicode edge cases.

Every refusal is a 4xx (problem+json naming the field for the JSON API; WeChat's own answer format on its XML
endpoints), never a 500, and leaves every table's row count as it was.

Decisions on Unicode (documented here, enforced by the tests):

* Names are stored verbatim: combining marks, RTL overrides, zero-width joiners, astral-plane characters and
  emoji go in and come back byte for byte (they are names people and products really have, or harmless text
  that the console shows escaped).
* NUL (``"\\u0000"``) is refused in every text field, query parameter, form field and POS sale with a 422
  naming the field: PostgreSQL cannot store it, and SQLite would store what PostgreSQL refuses.
* Lone surrogates (``"\\ud800"``) are not Unicode text: the body is refused as malformed JSON (400).
* Full-width digits are not digits for phone numbers, barcodes and resident ID numbers: refused (422), so
  the check digit and the ephedrine register always hold ASCII.
* Identifiers (product SKU, store code) are normalised to NFC before they are stored and compared: "CAFÉ"
  typed precomposed or decomposed is one SKU, the second is refused as already used. Usernames take ASCII
  letters, digits and ``_ . @ -`` only, so no two usernames can look alike through normalisation.
"""
from __future__ import annotations

import json
import time
import unicodedata
from pathlib import Path

import pytest
from sqlalchemy import text

from core.models import Customer, Order, Product, StockMovement, Store, User
from core.testing import FakeHttpServer
from tests.plugins.prescription_review.helpers import JPEG
from tests.plugins.wechat_channel.fake_wechat import FakeWeChat
from tests.plugins.wechat_channel.helpers import (ACCOUNT, API_KEY, APPID, MCH_ID, SECRET, push, text_message)

from .hostile_support import Hostile, make_hostile, resident_id, unique

LIMIT = 1024 * 1024  # the app's default api.max_body_bytes
MAX_DOCUMENT = 64 * 1024  # prescription_review.max_document_bytes in this module


@pytest.fixture(scope="module")
def fake():
    server = FakeWeChat(appid=APPID, secret=SECRET, mch_id=MCH_ID, api_key=API_KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def h(pharmo2o_databases, tmp_path_factory, fake) -> Hostile:
    made = make_hostile(pharmo2o_databases, tmp_path_factory.mktemp("hostile"), fake,
                        **{"prescription_review.max_document_bytes": MAX_DOCUMENT})
    yield made
    made.ctx.dispose()


@pytest.fixture
def unchanged(h):
    """Asserts at the end of the test that no table gained or lost a row."""
    before = h.snapshot()
    files = h.files()
    yield
    after = h.snapshot()
    assert {t: (before[t], after[t]) for t in before if before[t] != after[t]} == {}
    assert h.files() == files


def problem(r, status: int, field: str | None = None) -> dict:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json
    assert body["status"] == status and body["type"].startswith("https://pharmo2o.dev/problems/")
    if field is not None:
        assert field in [e["field"] for e in body.get("errors") or []], body
    return body


# ----------------------------------------------------------------- bodies

def _create_bodies(h: Hostile) -> dict[str, tuple[str, dict]]:
    """A valid body per JSON create endpoint (path, body)."""
    return {
        "stores": ("/api/v1/stores", {"code": unique("S"), "name": "门店"}),
        "products": ("/api/v1/products", {"sku": unique("K"), "generic_name": "布洛芬", "rx_class": "otc_b",
                                          "approval_number": "国药准字H20000001", "price_fen": 100}),
        "customers": ("/api/v1/customers", {"name": "顾客"}),
        "users": ("/api/v1/users", {"username": unique("u"), "password": "long-password-1", "role": "clerk",
                                    "store_id": h.api.store_id}),
        "orders": ("/api/v1/orders", {"store_id": h.api.store_id, "customer_id": h.api.customer_id,
                                      "channel": "store", "fulfilment": "pickup",
                                      "lines": [{"product_id": h.otc, "quantity": 1}]}),
        "receipts": (f"/api/v1/stores/{h.api.store_id}/stock/receipts",
                     {"product_id": h.otc, "lot_no": unique("L"), "expiry": "2099-01-01", "quantity": 1}),
        "pos_devices": ("/api/v1/pos/devices", {"store_id": h.api.store_id, "name": "Counter"}),
        "loyalty_rewards": ("/api/v1/loyalty/rewards", {"product_id": h.otc, "points_cost": 100, "label": "x"}),
    }


ENDPOINTS = ["stores", "products", "customers", "users", "orders", "receipts", "pos_devices", "loyalty_rewards"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_json_body_over_the_limit_is_a_413_and_stores_nothing(h, unchanged, endpoint):
    path, body = _create_bodies(h)[endpoint]
    raw = json.dumps(body).encode()
    padded = raw[:-1] + b" " * (LIMIT + 1 - len(raw)) + b"}"  # valid JSON, one byte too many
    assert len(padded) == LIMIT + 1
    problem(h.raw("POST", path, padded), 413)


def test_a_store_just_under_the_limit_is_accepted(h):
    path, body = _create_bodies(h)["stores"]
    raw = json.dumps(body).encode()
    r = h.raw("POST", path, raw[:-1] + b" " * (LIMIT - len(raw)) + b"}")
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("declared, sent, expect", [
    (str(LIMIT * 4), b'{"code": "X1", "name": "n"}', 413),  # claims more than the limit: refused unread
    ("10", b'{"code": "X2", "name": "' + b"n" * 5000 + b'"}', 400),  # claims less: only 10 bytes are read
    ("-1", b'{"code": "X3", "name": "n"}', 400),  # nonsense
    ("abc", b'{"code": "X4", "name": "n"}', 400),
])
def test_a_lying_content_length_is_refused_cleanly(h, unchanged, declared, sent, expect):
    status, headers, data = h.wsgi("POST", "/api/v1/stores", sent, content_length=declared)
    assert status == expect, data
    assert headers["content-type"].startswith("application/problem+json")


def test_a_body_without_content_length_is_never_read_past_the_limit(h, unchanged):
    """A chunked body (``Transfer-Encoding: chunked``, no Content-Length, the input marked terminated as
    gunicorn does) is read as the server decodes it, and refused (413) once past the limit, the rest
    drained unparsed; a body with neither header, or chunked from a server that does not mark its
    input terminated, is no body at all (a 422 for the missing fields);
    the upload route asks for a Content-Length (411)."""
    body = b'{"code": "X5", "name": "' + b"n" * (LIMIT + 10) + b'"}'
    chunked = {"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}
    status, headers, data = h.wsgi("POST", "/api/v1/stores", body, content_length=None, extra_env=chunked)
    assert status == 413 and f"larger than {LIMIT} bytes".encode() in data, data
    assert headers["content-type"].startswith("application/problem+json")
    status, headers, data = h.wsgi("POST", "/api/v1/stores", body, content_length=None,
                                   extra_env={"wsgi.input_terminated": True})
    assert status == 422, data
    # a server that does not say its input ends (wsgi.input_terminated) could leave a read of a
    # chunked body waiting forever: there it is not read at all
    status, headers, data = h.wsgi("POST", "/api/v1/stores", body, content_length=None,
                                   extra_env={"HTTP_TRANSFER_ENCODING": "chunked"})
    assert status == 422, data
    status, _, data = h.wsgi("POST", "/api/v1/orders/1/prescription", b"--x--" + b"x" * LIMIT, content_length=None,
                             content_type="multipart/form-data; boundary=x", role="admin", extra_env=chunked)
    assert status in (404, 411), data


def test_a_chunked_body_within_the_limit_is_read(h):
    body = json.dumps({"code": "X6", "name": "重庆"}).encode()
    status, _, data = h.wsgi("POST", "/api/v1/stores", body, content_length=None,
                             extra_env={"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"})
    assert status == 201 and json.loads(data)["name"] == "重庆", data


@pytest.mark.parametrize("endpoint", ["stores", "products", "customers", "users", "orders", "pos_devices"])
@pytest.mark.parametrize("content_type, encode", [
    ("text/plain", lambda b: json.dumps(b).encode()),
    ("application/x-www-form-urlencoded", lambda b: "&".join(f"{k}={v}" for k, v in b.items()).encode()),
    ("multipart/form-data; boundary=x",
     lambda b: b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--"),
    ("application/xml", lambda b: b"<xml>" + "".join(f"<{k}>{v}</{k}>" for k, v in b.items()).encode() + b"</xml>"),
    ("text/xml", lambda b: b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a SYSTEM "file:///etc/passwd">]><x>&a;</x>'),
])
def test_a_json_endpoint_refuses_other_content_types_with_a_415(h, unchanged, endpoint, content_type, encode):
    path, body = _create_bodies(h)[endpoint]
    problem(h.raw("POST", path, encode(body), content_type=content_type), 415)


# ----------------------------------------------------------------- uploads

def test_an_oversized_prescription_document_is_a_413_naming_it(h):
    order_id = h.held_rx_order()
    before = h.snapshot()
    r = h.upload(order_id, document=JPEG + b"\x00" * (MAX_DOCUMENT + 1 - len(JPEG)))
    problem(r, 413, "document")
    # a body larger than the upload route's own limit is refused before it is read
    status, _, _ = h.wsgi("POST", f"/api/v1/orders/{order_id}/prescription", b"--x--",
                          content_length=str(MAX_DOCUMENT * 100), content_type="multipart/form-data; boundary=x",
                          role="customer")
    assert status == 413
    assert h.snapshot() == before
    _cancel(h, order_id)


def _cancel(h: Hostile, order_id: int) -> None:
    """Cancel an order a test made (the `unchanged` check only counts rows, which cancelling adds)."""
    h.api.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "test"})


@pytest.fixture
def rx_order(h):
    return h.held_rx_order()


BAD_DOCUMENTS = {
    "elf": b"\x7fELF\x02\x01\x01" + b"\x00" * 200,
    "windows_exe": b"MZ\x90\x00" + b"\x00" * 200,
    "html": b"<!doctype html><script>alert(1)</script>",
    "svg_script": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "zip": b"PK\x03\x04" + b"\x00" * 100,
    "gif": b"GIF89a" + b"\x00" * 100,
    "empty": b"",
    "jpeg_magic_only_two_bytes": b"\xff\xd8",
    "text_named_pdf": b"PDF-1.4 but not really",
}


@pytest.mark.parametrize("declared", ["image/jpeg", "application/pdf"])
@pytest.mark.parametrize("name", sorted(BAD_DOCUMENTS))
def test_an_upload_whose_bytes_are_not_the_declared_type_is_a_422(h, rx_order, name, declared):
    before, files = h.snapshot(), h.files()
    r = h.upload(rx_order, document=BAD_DOCUMENTS[name], content_type=declared,
                 filename={"image/jpeg": "rx.jpg", "application/pdf": "rx.pdf", "image/png": "rx.png"}[declared])
    problem(r, 422, "document")
    assert h.snapshot() == before and h.files() == files


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "image/jpeg",
                                          "application/x-www-form-urlencoded", None])
def test_the_upload_route_takes_only_multipart(h, rx_order, content_type):
    before = h.snapshot()
    r = h.raw("POST", f"/api/v1/orders/{rx_order}/prescription", JPEG, content_type=content_type, role="customer")
    problem(r, 415)
    assert h.snapshot() == before


TRAVERSAL_NAMES = ["../../etc/passwd", "..\\..\\x", "/etc/passwd", "C:\\Windows\\win.ini", "....//....//x.jpg",
                   "%2e%2e%2f%2e%2e%2fx.jpg", "rx\x00.jpg", ".htaccess", "x" * 4000 + ".jpg", "处方/../../../x.jpg"]


@pytest.mark.parametrize("filename", TRAVERSAL_NAMES, ids=lambda n: repr(n[:30]))
def test_an_upload_file_name_never_chooses_where_the_file_goes(h, filename, tmp_path):
    order_id = h.held_rx_order()
    document = JPEG + unique().encode()
    files = set(h.files())
    passwd = Path("/etc/passwd").stat()
    r = h.upload(order_id, document=document, filename=filename)
    assert r.status_code in (201, 400, 422), r.text  # a name the form parser cannot take is a clean 4xx
    new = set(h.files()) - files
    if r.status_code == 201:
        import hashlib
        digest = hashlib.sha256(document).hexdigest()
        assert new == {h.storage_dir / digest[:2] / digest}  # the name is its hash, inside the storage dir
        assert r.json["document"]["sha256"] == digest and filename not in r.text
        got = h.api.get(f"/api/v1/prescriptions/{r.json['id']}/document", role="pharmacist")
        assert got.content == document
        assert got.headers["content-disposition"] == f'inline; filename="prescription-{r.json["id"]}.jpg"'
    else:
        assert new == set()
        _cancel(h, order_id)
    for path in h.files():
        assert path.resolve().is_relative_to(h.storage_dir.resolve())
    assert Path("/etc/passwd").stat().st_mtime == passwd.st_mtime


TRAVERSAL_URLS = [
    "/api/v1/products/..%2f..", "/api/v1/products/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/api/v1/products/../../etc/passwd",
    "/api/v1/stores/1/..%2f..%2fusers", "/api/v1/products/1%00", "/api/v1/products/%00",
    "/api/v1/prescriptions/1%2f..%2f2/document", "/api/v1/orders/1;DROP TABLE orders",
    "/h5/..%2f..%2f..%2f..%2fetc%2fpasswd", "/h5/%2e%2e/%2e%2e/api.py", "/h5/....//....//etc/passwd",
    "/h5/%00", "/h5/app.js%00.html", "/h5/..%5c..%5capi.py", "/h5//etc/passwd",
    "/console/static/..%2f..%2f..%2fmodels.py", "/console/static/%2e%2e/%2e%2e/%2e%2e/models.py",
    "/console/static/%00", "/console/plugins/wechat_channel/..%2f..%2fapi.py", "/console/plugins/..%2f..%2fetc/passwd",
    "/console/plugins/prescription_review/%2e%2e/%2e%2e/%2e%2e/core/models.py", "/console/..%2f..%2fetc%2fpasswd",
]


@pytest.mark.parametrize("url", TRAVERSAL_URLS)
def test_path_traversal_in_url_parameters_is_a_404(h, url):
    path, _, query = url.partition("?")
    r = h.api.client.simulate_get(path, headers=h.api.headers("admin"))
    assert r.status_code in (400, 404), (r.status_code, r.text[:300])
    assert "root:" not in r.text and "import " not in r.text and "sqlalchemy" not in r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    with h.ctx.session() as s:
        assert s.execute(text("SELECT count(*) FROM orders")).scalar_one() >= 0  # the table is still there


# ----------------------------------------------------------------- XML: bombs and external entities

BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
                            for i in range(1, 10))
                  + ']><xml><ToUserName>{acct}</ToUserName><FromUserName>o-bomb</FromUserName>'
                    '<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&lol9;</Content><MsgId>1</MsgId></xml>')
QUADRATIC = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "' + "a" * 50_000 + '">]><xml><MsgType>text</MsgType>'
             '<FromUserName>o-q</FromUserName><Content>' + "&a;" * 300 + '</Content></xml>')
XXE_FILE = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            '<xml><ToUserName>{acct}</ToUserName><FromUserName>o-xxe</FromUserName><CreateTime>1</CreateTime>'
            '<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>2</MsgId><return_code>SUCCESS</return_code>'
            '<out_trade_no>&xxe;</out_trade_no></xml>')
XXE_PARAMETER = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY % p SYSTEM "{url}/param.dtd"> %p;]>'
                 '<xml><FromUserName>o-pe</FromUserName><MsgType>text</MsgType><Content>x</Content></xml>')
XXE_HTTP = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "{url}/entity">]>'
            '<xml><FromUserName>o-http</FromUserName><MsgType>text</MsgType><Content>&e;</Content></xml>')
EXTERNAL_DTD = ('<?xml version="1.0"?><!DOCTYPE xml SYSTEM "{url}/evil.dtd">'
                '<xml><FromUserName>o-dtd</FromUserName><MsgType>text</MsgType><Content>x</Content></xml>')
XINCLUDE = ('<xml xmlns:xi="http://www.w3.org/2001/XInclude"><FromUserName>o-xi</FromUserName>'
            '<MsgType>text</MsgType><Content><xi:include href="file:///etc/passwd" parse="text"/></Content></xml>')
LOWER_DOCTYPE = ('<?xml version="1.0"?><!doctype xml [<!entity e SYSTEM "file:///etc/passwd">]>'
                 '<xml><FromUserName>o-low</FromUserName><MsgType>text</MsgType><Content>&e;</Content></xml>')
UTF16_XXE = XXE_FILE.replace('version="1.0"', 'version="1.0" encoding="UTF-16"')

XML_ATTACKS = {"billion_laughs": BILLION_LAUGHS, "quadratic_blowup": QUADRATIC, "xxe_file": XXE_FILE,
               "xxe_parameter_entity": XXE_PARAMETER, "xxe_http": XXE_HTTP, "external_dtd": EXTERNAL_DTD,
               "xinclude": XINCLUDE, "lowercase_doctype": LOWER_DOCTYPE, "utf16_declared": UTF16_XXE}


@pytest.fixture(scope="module")
def listener():
    """An HTTP server an external entity or DTD would make the app fetch: it must receive nothing."""
    server = FakeHttpServer()
    yield server
    server.close()


def _attack(name: str, listener) -> str:
    return XML_ATTACKS[name].replace("{acct}", ACCOUNT).replace("{url}", listener.url)


def _wechat_rows(h: Hostile) -> tuple:
    with h.ctx.session() as s:
        return tuple(s.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                     for t in ("wechat_inbound", "wechat_followers", "wechat_pay_notifications"))


def _assert_refused(h, r, listener, rows_before, started):
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert "root:" not in r.text and "lollol" not in r.text
    assert time.monotonic() - started < 5  # no expansion, no fetch
    assert listener.received() == []
    assert _wechat_rows(h) == rows_before


def _switch_mode(h: Hostile, mode: str) -> None:
    h.ctx.config.data.setdefault("wechat", {})["message_mode"] = mode


@pytest.fixture
def wechat_mode(h):
    """Set ``[wechat] message_mode`` for one test (restored after)."""
    old = h.ctx.config.data.get("wechat", {}).get("message_mode")

    def set_mode(mode):
        _switch_mode(h, mode)
    yield set_mode
    if old is None:
        h.ctx.config.data["wechat"].pop("message_mode", None)
    else:
        _switch_mode(h, old)


@pytest.mark.parametrize("attack", sorted(XML_ATTACKS))
@pytest.mark.parametrize("mode", ["plain", "compatible", "safe_envelope", "safe_encrypted_inside"])
def test_xml_bombs_and_external_entities_are_refused_on_the_message_callback(h, listener, wechat_mode, attack,
                                                                              mode):
    xml = _attack(attack, listener)
    rows = _wechat_rows(h)
    if mode == "plain":
        wechat_mode("plain")
        p = push(text_message("o-ok", "x"))  # signed as WeChat signs (the signature covers no body)
        body = xml
    elif mode == "compatible":
        wechat_mode("compatible")
        p = push(text_message("o-ok", "x"), "compatible")
        body = xml
    elif mode == "safe_envelope":  # the attack around a genuine encrypted push
        wechat_mode("safe")
        p = push(text_message("o-ok", "x"), "safe")
        inner = p.body.split("<xml>", 1)[1]
        body = xml.split("<xml>", 1)[0] + "<xml>" + inner if "<xml>" in xml else xml
    else:  # encrypted with the account's key by WeChatCrypto: only the plaintext inside is hostile
        wechat_mode("safe")
        p = push(xml, "safe")
        body = p.body
    started = time.monotonic()
    data = body.encode("utf-16") if attack == "utf16_declared" and mode == "plain" else body.encode("utf-8")
    r = h.api.client.simulate_post("/wechat/callback", params=p.params, body=data,
                                   headers={"Content-Type": "text/xml"})
    _assert_refused(h, r, listener, rows, started)


def test_the_message_callback_still_answers_a_genuine_push_in_each_mode(h, wechat_mode):
    """The refusals above are about the attacks: the same route takes WeChat's real pushes."""
    for mode in ("plain", "safe"):
        wechat_mode(mode)
        p = push(text_message(unique("o-"), "维生素"), mode)
        r = h.api.client.simulate_post("/wechat/callback", params=p.params, body=p.body.encode(),
                                       headers={"Content-Type": "text/xml"})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("attack", sorted(XML_ATTACKS))
def test_xml_bombs_and_external_entities_are_refused_on_the_pay_notification(h, listener, attack):
    rows = _wechat_rows(h)
    started = time.monotonic()
    xml = _attack(attack, listener)
    data = xml.encode("utf-16") if attack == "utf16_declared" else xml.encode("utf-8")
    r = h.api.client.simulate_post("/wechat/pay/notify", body=data, headers={"Content-Type": "text/xml"})
    _assert_refused(h, r, listener, rows, started)
    assert "<return_code><![CDATA[FAIL]]></return_code>" in r.text  # WeChat Pay's answer format


def test_an_xml_body_over_the_limit_is_a_413_on_both_wechat_endpoints(h, listener):
    rows = _wechat_rows(h)
    big = ("<xml><MsgType>text</MsgType><Content>" + "x" * (64 * 1024) + "</Content></xml>").encode()
    for path in ("/wechat/callback", "/wechat/pay/notify"):
        p = push(text_message("o-ok", "x"))
        r = h.api.client.simulate_post(path, params=p.params, body=big, headers={"Content-Type": "text/xml"})
        problem(r, 413)
    assert _wechat_rows(h) == rows


# ----------------------------------------------------------------- SQL metacharacters

SQL_PAYLOADS = ["Robert'); DROP TABLE products;--", "' OR '1'='1' --", "\" ; -- /* */ \\ %_ '",
                "x' UNION SELECT password_hash FROM users --", "\\'; DELETE FROM users WHERE '%' LIKE '_"]


def _sql_cases():
    """``(id, build(h, value) -> (method, path, json, role), model, column, limit)`` for every free-text field."""
    store = lambda f: lambda h, v: ("POST", "/api/v1/stores", {"code": unique("S"), "name": "n", f: v}, "admin")  # noqa: E731
    prod = lambda f: lambda h, v: ("POST", "/api/v1/products", {  # noqa: E731
        "sku": unique("K"), "generic_name": "g", "rx_class": "otc_b", "approval_number": "国药准字H20000001",
        "price_fen": 100, f: v}, "admin")
    cust = lambda f: lambda h, v: ("POST", "/api/v1/customers", {"name": "n", f: v}, "clerk")  # noqa: E731
    user = lambda f: lambda h, v: ("POST", "/api/v1/users", {  # noqa: E731
        "username": unique("u"), "password": "long-password-1", "role": "pharmacist", "store_id": h.api.store_id,
        f: v}, "admin")
    order = lambda f: lambda h, v: ("POST", "/api/v1/orders", {  # noqa: E731
        "store_id": h.api.store_id, "customer_id": h.api.customer_id, "channel": "store", "fulfilment": "delivery",
        "delivery_address": "上海", "lines": [{"product_id": h.otc, "quantity": 1}], f: v}, "clerk")
    cases = [("stores." + f, store(f), Store, f, n) for f, n in (("code", 32), ("name", 200), ("address", 500),
                                                                   ("phone", 40))]
    cases += [("products." + f, prod(f), Product, f, n) for f, n in (
        ("sku", 64), ("generic_name", 200), ("brand_name", 200), ("specification", 200), ("pack", 100),
        ("dosage_form", 100), ("manufacturer", 200), ("mah", 200), ("category", 100), ("storage", 200),
        ("package_insert", 100_000))]
    cases += [("customers." + f, cust(f), Customer, f, n) for f, n in (("name", 100), ("openid", 64),
                                                                        ("unionid", 64))]
    cases += [("users." + f, user(f), User, f, n) for f, n in (("display_name", 100), ("licence_number", 64))]
    cases += [("orders." + f, order(f), Order, f, n) for f, n in (("note", 500), ("delivery_address", 500))]
    cases += [("receipts." + f, lambda h, v, f=f: ("POST", f"/api/v1/stores/{h.api.store_id}/stock/receipts", {
        "product_id": h.otc, "lot_no": unique("L"), "expiry": "2099-01-01", "quantity": 1, f: v}, "clerk"),
        StockMovement if f == "reference" else None, f, n) for f, n in (("lot_no", 64), ("reference", 100))]
    return cases


SQL_CASES = _sql_cases()


def _stored(h: Hostile, model, column: str, result) -> str:
    body = result.json
    row_id = body.get("id") or body.get("movement", {}).get("id")
    with h.ctx.session() as s:
        if model is None:  # lot_no: the lot of the receipt
            return body["lot"]["lot_no"] if column == "lot_no" else None
        return getattr(s.get(model, row_id), column)


@pytest.mark.parametrize("case", SQL_CASES, ids=[c[0] for c in SQL_CASES])
def test_sql_metacharacters_are_stored_verbatim_in_every_text_field(h, case):
    name, build, model, column, limit = case
    before = h.snapshot()
    for payload in SQL_PAYLOADS:
        value = payload[:limit]
        if column in ("sku", "code", "openid", "lot_no"):  # unique: tell the payloads apart
            value = ((payload + unique("#"))[-limit:] if len(payload) + 9 > limit else payload + unique("#")).strip()
        method, path, body, role = build(h, value)
        r = h.api.request(method, path, role=role, json=body)
        assert r.status_code == 201, (name, value, r.text)
        assert _stored(h, model, column, r) == value
        if model is not None and "id" in r.json:  # and through the API as a client reads it
            item = {Store: "stores", Product: "products", Customer: "customers", User: "users",
                    Order: "orders"}.get(model)
            if item:
                assert h.api.get(f"/api/v1/{item}/{r.json['id']}").json[column] == value
    after = h.snapshot()  # every table still there, none lost a row
    assert set(after) == set(before) and all(after[t] >= before[t] for t in before)
    with h.ctx.session() as s:
        for t in ("products", "users", "orders", "stores", "customers"):
            s.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()


def test_sql_metacharacters_in_a_password_log_in_and_in_search_match_literally(h):
    password = "Robert'); DROP TABLE users;-- %_\\\"/*"
    r = h.api.post("/api/v1/users", json={"username": unique("sq"), "password": password, "role": "clerk",
                                          "store_id": h.api.store_id})
    assert r.status_code == 201, r.text
    username = r.json["username"]
    assert h.api.post("/api/v1/auth/token", role=None, json={"username": username, "password": password}
                      ).status_code == 200
    assert h.api.post("/api/v1/auth/token", role=None, json={"username": username, "password": "' OR '1'='1"}
                      ).status_code == 401
    assert h.api.post("/api/v1/auth/token", role=None, json={"username": "' OR '1'='1' --", "password": "x' OR 'x"}
                      ).status_code == 401
    # search: % and _ are literal characters, not wildcards
    h.api.post("/api/v1/products", json={"sku": unique("P%"), "generic_name": "百分之百%_纯", "rx_class": "otc_b",
                                         "approval_number": "国药准字H20000001", "price_fen": 1})
    for q in ("%", "_", "%_纯"):
        found = h.api.get("/api/v1/products", params={"q": q, "limit": "200"}).json["items"]
        assert "百分之百%_纯" in [p["generic_name"] for p in found]
        for p in found:  # each match holds the characters literally, in a searched field
            assert any(q.casefold() in (p[f] or "").casefold() for f in ("generic_name", "brand_name", "sku",
                                                                          "barcode")), (q, p)
    assert h.api.get("/api/v1/products", params={"q": "' OR 1=1 --"}).json["items"] == []


def test_sql_metacharacters_in_prescription_fields_are_stored_verbatim(h):
    from plugins.prescription_review.models import Prescription
    value = "Robert'); DROP TABLE rx_prescriptions;-- /* */ %_"
    order_id = h.held_rx_order()
    r = h.upload(order_id, patient_name=value[:100], prescriber=value, institution=value,
                 prescription_number=value[:64], extension_note=value)
    assert r.status_code == 201, r.text
    with h.ctx.session() as s:
        p = s.get(Prescription, r.json["id"])
        assert (p.patient_name, p.prescriber, p.institution, p.prescription_number, p.extension_note) == (
            value, value, value, value[:64], value)
    got = h.api.get(f"/api/v1/prescriptions/{r.json['id']}", role="pharmacist").json
    assert got["prescriber"] == value and got["patient"]["name"] == value


# ----------------------------------------------------------------- Unicode

UNICODE_KEPT = {
    "combining_marks": "e\u0301\u0302\u0303 Z\u0336\u0337a\u0338lgo",
    "rtl_override": "abc\u202edcba.exe",
    "zero_width_joiner": "👨\u200d👩\u200d👧\u200d👦 家庭装",
    "astral_plane": "𠮷野家 😀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "bidi_isolates": "\u2067مرحبا\u2069 \u200e\u200f",
    "bom_and_zero_width": "\ufeffx\u200by\u2060z",
}


@pytest.mark.parametrize("kind", sorted(UNICODE_KEPT))
def test_unicode_names_come_back_byte_for_byte(h, kind):
    value = UNICODE_KEPT[kind]
    made = {
        "stores": h.api.post("/api/v1/stores", json={"code": unique("U"), "name": value}),
        "products": h.api.post("/api/v1/products", json={"sku": unique("U"), "generic_name": value,
                                                        "brand_name": value, "rx_class": "otc_b",
                                                        "approval_number": "国药准字H20000001", "price_fen": 1}),
        "customers": h.api.post("/api/v1/customers", json={"name": value}),
        "users": h.api.post("/api/v1/users", json={"username": unique("u"), "password": "long-password-1",
                                                  "role": "clerk", "store_id": h.api.store_id,
                                                  "display_name": value}),
    }
    for item, r in made.items():
        assert r.status_code == 201, (item, r.text)
        got = h.api.get(f"/api/v1/{item}/{r.json['id']}").json
        field = {"stores": "name", "products": "generic_name", "customers": "name", "users": "display_name"}[item]
        assert got[field] == value and got[field].encode("utf-8") == value.encode("utf-8")
    order = h.order(note=value)
    assert h.api.get(f"/api/v1/orders/{order.json['id']}").json["note"] == value


def _nul_cases():
    nul = "bad\u0000name"
    return [
        ("stores", "/api/v1/stores", lambda h: {"code": unique("N"), "name": nul}, "name"),
        ("stores.code", "/api/v1/stores", lambda h: {"code": "N\u0000", "name": "n"}, "code"),
        ("products", "/api/v1/products", lambda h: {"sku": unique("N"), "generic_name": nul, "rx_class": "otc_b",
                                                    "approval_number": "国药准字H20000001", "price_fen": 1},
         "generic_name"),
        ("products.insert", "/api/v1/products", lambda h: {
            "sku": unique("N"), "generic_name": "g", "rx_class": "otc_b", "approval_number": "国药准字H20000001",
            "price_fen": 1, "package_insert": "x" * 1000 + "\u0000"}, "package_insert"),
        ("customers", "/api/v1/customers", lambda h: {"name": nul}, "name"),
        ("users", "/api/v1/users", lambda h: {"username": unique("n"), "password": "long\u0000password",
                                              "role": "clerk", "store_id": h.api.store_id}, "password"),
        ("orders", "/api/v1/orders", lambda h: {
            "store_id": h.api.store_id, "customer_id": h.api.customer_id, "channel": "store",
            "fulfilment": "pickup", "lines": [{"product_id": h.otc, "quantity": 1}], "note": nul}, "note"),
        ("receipts", "/api/v1/stores/{store}/stock/receipts", lambda h: {
            "product_id": h.otc, "lot_no": "L\u0000", "expiry": "2099-01-01", "quantity": 1}, "lot_no"),
        ("pos_devices", "/api/v1/pos/devices", lambda h: {"store_id": h.api.store_id, "name": nul}, "name"),
        ("loyalty_rewards", "/api/v1/loyalty/rewards", lambda h: {"product_id": h.otc, "points_cost": 1,
                                                                   "label": nul}, "label"),
        ("loyalty_adjustments", "/api/v1/members/{customer}/adjustments", lambda h: {"points": 1, "reason": nul},
         "reason"),
        ("banlist", "/api/v1/prescriptions/banlist", lambda h: {
            "format": 1, "version": "v-nul", "entries": [{"generic_name_contains": nul}]},
         "entries[0].generic_name_contains"),
        ("auth", "/api/v1/auth/token", lambda h: {"username": "admin", "password": nul}, "password"),
    ]


NUL_CASES = _nul_cases()


@pytest.mark.parametrize("case", NUL_CASES, ids=[c[0] for c in NUL_CASES])
def test_nul_is_refused_with_a_422_naming_the_field(h, unchanged, case):
    name, path, build, field = case
    path = path.format(store=h.api.store_id, customer=h.api.customer_id)
    problem(h.api.post(path, role="admin", json=build(h)), 422, field)


def test_nul_is_refused_in_updates_query_parameters_and_forms(h):
    before = h.snapshot()
    problem(h.api.patch(f"/api/v1/stores/{h.api.store_id}", json={"name": "x\u0000"}), 422, "name")
    problem(h.api.get("/api/v1/products", params={"q": "a\u0000b"}), 422, "q")
    problem(h.api.get("/api/v1/customers", params={"q": "\u0000"}, role="clerk"), 422, "q")
    order_id = h.held_rx_order()
    before = h.snapshot()
    problem(h.upload(order_id, patient_name="王\u0000小明"), 422, "patient_name")
    problem(h.upload(order_id, prescriber="x\u0000"), 422, "prescriber")
    assert h.snapshot() == before
    _cancel(h, order_id)


def test_lone_surrogates_and_invalid_utf8_are_malformed_json(h, unchanged):
    for raw in (b'{"code": "Z1", "name": "x\\ud800y"}', b'{"code": "Z2", "name": "\\udc00"}',
                b'{"code": "Z3", "name": "\\ud800\\ud800"}', b'{"code": "Z4", "name": "\xff\xfe"}',
                b'{"code": "Z5", "name": "\xed\xa0\x80"}'):  # the UTF-8 bytes of a surrogate
        problem(h.raw("POST", "/api/v1/stores", raw), 400)


@pytest.mark.parametrize("path, body, field", [
    ("/api/v1/stores", {"code": "C" * 33, "name": "n"}, "code"),
    ("/api/v1/stores", {"code": "LONG", "name": "名" * 201}, "name"),
    ("/api/v1/products", {"sku": "K" * 65, "generic_name": "g", "rx_class": "otc_b",
                          "approval_number": "国药准字H20000001", "price_fen": 1}, "sku"),
    ("/api/v1/products", {"sku": "LONG-1", "generic_name": "g", "rx_class": "otc_b", "package_insert": "x" * 100_001,
                          "approval_number": "国药准字H20000001", "price_fen": 1}, "package_insert"),
    ("/api/v1/customers", {"name": "😀" * 101}, "name"),
    ("/api/v1/users", {"username": "u" * 65, "password": "long-password-1", "role": "clerk"}, "username"),
    ("/api/v1/users", {"username": "longpw", "password": "p" * 201, "role": "clerk"}, "password"),
    ("/api/v1/pos/devices", {"store_id": 1, "name": "n" * 101}, "name"),
])
def test_strings_over_their_maximum_length_are_a_422_naming_the_field(h, unchanged, path, body, field):
    problem(h.api.post(path, json=body), 422, field)


def test_too_long_prescription_fields_are_a_422_naming_them(h):
    order_id = h.held_rx_order()
    before = h.snapshot()
    r = h.upload(order_id, patient_name="名" * 101, institution="院" * 201, prescription_number="9" * 65)
    body = problem(r, 422)
    assert {"patient_name", "institution", "prescription_number"} <= {e["field"] for e in body["errors"]}
    assert h.snapshot() == before
    _cancel(h, order_id)


FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def test_full_width_digits_are_not_digits_in_phone_barcode_and_id_numbers(h, unchanged):
    problem(h.api.post("/api/v1/customers", json={"name": "n", "phone": "13800000000".translate(FULL_WIDTH)}),
            422, "phone")
    problem(h.api.post("/api/v1/products", json={
        "sku": unique("FW"), "generic_name": "g", "rx_class": "otc_b", "approval_number": "国药准字H20000001",
        "price_fen": 1, "barcode": "6901234567892".translate(FULL_WIDTH)}), 422, "barcode")
    problem(h.api.post("/api/v1/products", json={
        "sku": unique("FW"), "generic_name": "g", "rx_class": "otc_b", "price_fen": 1,
        "approval_number": "国药准字H" + "20000001".translate(FULL_WIDTH)}), 422, "approval_number")
    problem(h.api.post("/api/v1/products", json={
        "sku": unique("FW"), "generic_name": "g", "rx_class": "otc_b", "approval_number": "国药准字H20000001",
        "price_fen": 1, "barcode": "²³¹"}), 422, "barcode")
    buyer = resident_id()
    r = h.api.post("/api/v1/orders", role="clerk", json={
        "store_id": h.api.store_id, "customer_id": h.api.customer_id, "channel": "store", "fulfilment": "pickup",
        "lines": [{"product_id": h.eph, "quantity": 1}], "buyer_id_number": buyer.translate(FULL_WIDTH)})
    problem(r, 422, "buyer_id_number")


def test_a_full_width_resident_id_on_a_prescription_is_a_422(h):
    order_id = h.held_rx_order()
    before = h.snapshot()
    problem(h.upload(order_id, patient_id_number=resident_id().translate(FULL_WIDTH)), 422, "patient_id_number")
    assert h.snapshot() == before
    _cancel(h, order_id)


def test_the_ascii_resident_id_still_buys_ephedrine(h):
    r = h.order([(h.eph, 1)], buyer_id_number=resident_id())
    assert r.json["status"] == "awaiting_payment"


def test_nfc_and_nfd_spellings_of_an_identifier_are_one_identifier(h):
    base = unique("CAFÉ-")
    nfc, nfd = unicodedata.normalize("NFC", base), unicodedata.normalize("NFD", base)
    assert nfc != nfd
    product = {"generic_name": "g", "rx_class": "otc_b", "approval_number": "国药准字H20000001", "price_fen": 1}
    first = h.api.post("/api/v1/products", json={"sku": nfd, **product})
    assert first.status_code == 201 and first.json["sku"] == nfc  # stored in NFC
    before = h.snapshot()
    problem(h.api.post("/api/v1/products", json={"sku": nfc, **product}), 422, "sku")
    assert h.api.post("/api/v1/stores", json={"code": nfc[:20], "name": "n"}).status_code == 201
    problem(h.api.post("/api/v1/stores", json={"code": unicodedata.normalize("NFD", nfc[:20]), "name": "n"}),
            422, "code")
    assert h.snapshot()["products"] == before["products"]
    assert h.snapshot()["stores"] == before["stores"] + 1
    # usernames are ASCII: neither spelling is a username, so none can shadow another
    for spelling in (nfc, nfd):
        problem(h.api.post("/api/v1/users", json={"username": spelling.lower()[:20], "password": "long-password-1",
                                                  "role": "clerk", "store_id": h.api.store_id}), 422, "username")


def test_a_pos_sale_with_nul_or_full_width_text_is_rejected_alone(h):
    """The terminal's batch is parsed sale by sale: the bad sale is rejected, the good one is accepted."""
    import datetime as dt
    reg = h.api.post("/api/v1/pos/devices", json={"store_id": h.api.store_id, "name": "Counter N"})
    assert reg.status_code == 201, reg.text
    secret = reg.json["secret"]
    price = h.api.get(f"/api/v1/products/{h.otc}").json["price_fen"]
    catalog = h.api.request("GET", "/api/v1/pos/catalog", headers={"Authorization": f"Bearer {secret}",
                                                                   "X-POS-Database-Id": "db-hostile-1"})
    assert catalog.status_code == 200, catalog.text
    pv = catalog.json.get("price_list_version", 1)

    def sale(cid, **extra):
        return {"client_sale_id": cid, "device_seq": len(cid), "sold_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "lines": [{"line_id": "l1", "product_id": h.otc, "quantity": 1, "unit_price_fen": price,
                           "price_list_version": pv}],
                "payments": [{"method": "cash", "amount_fen": price}], **extra}
    r = h.api.request("POST", "/api/v1/pos/sales:batch", headers={
        "Authorization": f"Bearer {secret}", "X-POS-Database-Id": "db-hostile-1"}, json={"sales": [
            sale(unique("bad-"), note="x\u0000y"), sale(unique("ok-"), note="Robert'); DROP TABLE orders;--")]})
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json["results"]] == ["rejected", "accepted"], r.json
    assert "NUL" in r.json["results"][0]["reason"]
    with h.ctx.session() as s:
        order = s.get(Order, r.json["results"][1]["order_id"])
        assert "Robert'); DROP TABLE orders;--" in (order.note, (order.extra or {}).get("note"))


def test_wechat_text_with_odd_unicode_is_answered_not_crashed(h, wechat_mode):
    """A signed push whose fields carry odd text (RTL, astral, a non-ASCII digit as CreateTime) gets a 200."""
    from wechatpy.pay.utils import dict_to_xml
    wechat_mode("plain")
    for content, created in (("\u202e维生素😀", "²"), ("e\u0301" * 50, "１２３")):
        xml = dict_to_xml({"ToUserName": ACCOUNT, "FromUserName": unique("o-"), "CreateTime": created,
                           "MsgType": "text", "Content": content, "MsgId": str(time.time_ns())})
        p = push(xml)
        r = h.api.client.simulate_post("/wechat/callback", params=p.params, body=p.body.encode(),
                                       headers={"Content-Type": "text/xml"})
        assert r.status_code == 200, r.text
