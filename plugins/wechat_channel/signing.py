"""WeChat Pay (API v2) signatures and the XML WeChat exchanges, checked here rather than trusted to wechatpy.

``WeChatPay.parse_payment_result`` knows MD5 signatures only and
``check_signature`` does not run on API answers, so both directions are
verified here, MD5 and HMAC-SHA256, with a constant-time comparison.
"""
from __future__ import annotations

import hmac
from xml.parsers.expat import ExpatError

import xmltodict
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac

__all__ = ["sign", "verify", "parse_xml", "MalformedXml", "pay_answer", "safe_cdata", "MAX_XML_BYTES"]

MAX_XML_BYTES = 64 * 1024


class MalformedXml(ValueError):
    """Not a WeChat XML document (malformed, a DOCTYPE, no <xml> root, nested values)."""


def sign(params: dict, api_key: str, sign_type: str = "MD5") -> str:
    """The signature WeChat Pay expects over ``params`` (without ``sign``)."""
    if sign_type == "HMAC-SHA256":
        return calculate_signature_hmac(params, api_key)
    if sign_type == "MD5":
        return calculate_signature(params, api_key)
    raise ValueError(f"unsupported sign_type {sign_type!r}")


def verify(params: dict, api_key: str) -> bool:
    """Whether ``params`` carries a valid ``sign``, by its own ``sign_type`` (MD5 when absent)."""
    given = params.get("sign")
    if not isinstance(given, str) or not given:
        return False
    sign_type = params.get("sign_type") or "MD5"
    if sign_type not in ("MD5", "HMAC-SHA256"):
        return False
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    expected = sign(unsigned, api_key, sign_type)
    return hmac.compare_digest(given.upper().encode(), expected.encode())


def parse_xml(raw: bytes | str) -> dict[str, str]:
    """The flat ``<xml>`` document WeChat sends, as ``{name: text}``; :class:`MalformedXml` otherwise.

    DOCTYPEs (entity expansion) are refused outright.
    """
    if isinstance(raw, bytes):
        if len(raw) > MAX_XML_BYTES:
            raise MalformedXml(f"larger than {MAX_XML_BYTES} bytes")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedXml("not UTF-8") from None
    if "<!DOCTYPE" in raw.upper() or "<!ENTITY" in raw.upper():
        raise MalformedXml("a DOCTYPE is not accepted")
    try:
        doc = xmltodict.parse(raw)
    except (ExpatError, ValueError) as exc:
        raise MalformedXml(f"not well-formed XML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("xml"), dict):
        raise MalformedXml("the root element must be <xml> with fields")
    out: dict[str, str] = {}
    for key, value in doc["xml"].items():
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise MalformedXml(f"field {key!r} is not a plain value")
        out[key] = value
    return out


def safe_cdata(text: str) -> str:
    """``text`` safe inside ``<![CDATA[...]]>`` (a ``]]>`` in it would end the section)."""
    return text.replace("]]>", "]]]]><![CDATA[>")


def pay_answer(ok: bool, message: str = "OK") -> str:
    """The answer WeChat Pay expects to a notification."""
    code = "SUCCESS" if ok else "FAIL"
    return (f"<xml><return_code><![CDATA[{code}]]></return_code>"
            f"<return_msg><![CDATA[{safe_cdata(message)}]]></return_msg></xml>")
