"""WeChat Pay (API v2, JSAPI): the payment provider, unified orders, notifications, reconciliation, refunds.

::

    customer --POST /api/v1/orders/{id}/wechat-pay--> prepay(): order awaiting_payment? our out_trade_no,
             amount = order total, the customer's IP, expiry <= the order's -> WeChat unified order
             <-- JS-SDK parameters (signed) -- WeixinJSBridge getBrandWCPayRequest
    WeChat --POST /wechat/pay/notify--> notification(): XML, signature (MD5 / HMAC-SHA256), appid, mch_id
             -> settle(): lock order, lock payment; amount = ours; transaction id stored (unique)
                -> core.orders.pay(..., "wechat", ...) exactly once; a duplicate is answered SUCCESS again
                -> a payment the order cannot take (cancelled, already paid) is refunded
    `pharmo2o wechat reconcile` / job: order query for pending trades -> settle() (missed notifications)
    order refunded (core) -> outbox "wechat.refund" -> WeChat refund (out_refund_no: WeChat refunds once)

Lock order everywhere: the order row first, then the payment row.
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass

import requests
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from wechatpy.exceptions import WeChatPayException

from core import audit, orders
from core.auth import Caller
from core.db import utcnow
from core.errors import Conflict, DomainError, Forbidden, IllegalTransition, NotFound
from core.models import Customer, Order
from core.outbox import enqueue

from . import sdk
from .models import PayNotification, WechatPayment, WechatRefund
from .settings import Settings
from .signing import MalformedXml, parse_xml, pay_answer, sign, verify

__all__ = ["PROVIDER", "WechatPayProvider", "WechatUnavailable", "NotConfigured", "prepay", "notification",
           "settle", "reconcile", "send_refund", "send_close", "on_status_changed", "refund_veto",
           "PAY_CALLER", "CHINA"]

log = logging.getLogger("pharmo2o.wechat.pay")
PROVIDER = "wechat"
PAY_CALLER = Caller(role="system", name="wechat_pay")
CHINA = dt.timezone(dt.timedelta(hours=8))  # WeChat Pay times are Beijing time (no DST)
MIN_PREPAY = dt.timedelta(minutes=1)


class WechatUnavailable(DomainError):
    status = 502
    type = "https://pharmo2o.dev/problems/wechat-unavailable"
    title = "WeChat Pay did not accept the request"


class NotConfigured(DomainError):
    status = 503
    type = "https://pharmo2o.dev/problems/wechat-not-configured"
    title = "WeChat is not configured"

    @classmethod
    def keys(cls, what: str, missing: list[str]) -> "NotConfigured":
        return cls(f"{what} is not configured on this server: set {', '.join(missing)}")


@dataclass(frozen=True)
class WechatPayProvider:
    """The core's payment provider for WeChat Pay: it only records what WeChat confirmed.

    ``capture`` succeeds only for an order with a WeChat payment confirmed by a
    verified notification or order query (:func:`settle` calls it); staff
    calling ``POST /orders/{id}/pay`` with ``wechat`` get the same answer, so
    nobody can mark an order paid by WeChat without WeChat.
    """

    name: str = PROVIDER
    roles: tuple[str, ...] = ()

    def capture(self, session, order, payload, caller):
        payment = session.scalars(select(WechatPayment).where(
            WechatPayment.order_id == order.id, WechatPayment.status == "paid",
            WechatPayment.transaction_id.is_not(None)).order_by(WechatPayment.id)).first()
        if payment is None:
            raise Conflict(f"order {order.id} has no WeChat payment confirmed by WeChat Pay",
                           fields=[{"field": "provider", "message": "WeChat confirms its own payments"}])
        if payment.amount_fen != order.total_fen:
            raise Conflict(f"the WeChat payment of order {order.id} is {payment.amount_fen} fen, "
                           f"the order total {order.total_fen}")
        return {"reference": payment.transaction_id}


# ------------------------------------------------------------------ prepay

def _pay_api_error(exc: Exception) -> WechatUnavailable:
    if isinstance(exc, WeChatPayException):
        detail = exc.errmsg or exc.return_msg or exc.errcode or exc.return_code
        return WechatUnavailable(f"WeChat Pay refused the request: {detail}")
    return WechatUnavailable(f"WeChat Pay did not answer ({type(exc).__name__}); retry shortly")


def js_params(settings: Settings, prepay_id: str) -> dict[str, str]:
    """The ``getBrandWCPayRequest`` parameters, signed like the unified order (MD5 or HMAC-SHA256)."""
    params = {"appId": settings.appid, "timeStamp": str(int(utcnow().timestamp())),
              "nonceStr": secrets.token_hex(16), "package": f"prepay_id={prepay_id}", "signType": settings.sign_type}
    params["paySign"] = sign(params, settings.api_key, settings.sign_type)
    return params


def _answer(payment: WechatPayment, settings: Settings) -> dict:
    return {"order_id": payment.order_id, "out_trade_no": payment.out_trade_no, "amount_fen": payment.amount_fen,
            "expires_at": payment.prepay_expires_at.isoformat() if payment.prepay_expires_at else None,
            "js_params": js_params(settings, payment.prepay_id)}


def prepay(ctx, settings: Settings, order_id: int, caller: Caller, client_ip: str) -> dict:
    """Place (or reuse) the WeChat unified order for ``order_id`` and return the JS-SDK parameters.

    Refused unless the order is the caller's and ``awaiting_payment``. The
    network call happens between two short transactions, never inside one.
    """
    if settings.pay_missing:
        raise NotConfigured.keys("WeChat Pay", settings.pay_missing)
    now = utcnow()
    with ctx.transaction() as s:
        order = orders.get_order(s, order_id, lock=True)
        if caller.role != "customer" or order.customer_id != caller.customer_id:
            raise NotFound(f"order {order_id} does not exist")
        if order.status != "awaiting_payment":
            hint = " (the prescription must be approved first)" if order.status == "awaiting_review" else ""
            raise IllegalTransition(f"order {order.id} is {order.status}: only an order awaiting payment can be "
                                    f"paid{hint}", status_from=order.status, status_to="paid")
        if order.total_fen <= 0:
            raise Conflict(f"order {order.id} totals 0 fen: nothing to pay through WeChat")
        customer = s.get(Customer, order.customer_id)
        if not customer.openid:
            raise Forbidden("sign in through WeChat first: the customer has no WeChat openid")
        expires = now + dt.timedelta(minutes=settings.prepay_minutes)
        if order.expires_at is not None:
            expires = min(expires, order.expires_at)
        if expires - now < MIN_PREPAY:
            raise Conflict(f"order {order.id} expires in less than a minute; place it again")
        reusable = s.scalars(select(WechatPayment).where(
            WechatPayment.order_id == order.id, WechatPayment.status == "pending",
            WechatPayment.amount_fen == order.total_fen, WechatPayment.openid == customer.openid,
            WechatPayment.prepay_expires_at > now + MIN_PREPAY).order_by(WechatPayment.id.desc())).first()
        if reusable is not None:
            return _answer(reusable, settings)
        creating = s.scalar(select(func.count()).select_from(WechatPayment).where(
            WechatPayment.order_id == order.id, WechatPayment.status == "creating",
            WechatPayment.created_at > now - dt.timedelta(seconds=30)))
        if creating:
            raise Conflict(f"a WeChat payment of order {order.id} is being prepared; retry in a moment")
        n = s.scalar(select(func.count()).select_from(WechatPayment).where(WechatPayment.order_id == order.id))
        payment = WechatPayment(order_id=order.id, out_trade_no=f"P2O{order.id}-{n + 1}", amount_fen=order.total_fen,
                                openid=customer.openid, client_ip=client_ip[:64], sign_type=settings.sign_type,
                                status="creating", prepay_expires_at=expires)
        s.add(payment)
        s.flush()
        payment_id, body = payment.id, _body(order)
        out_trade_no, amount, openid = payment.out_trade_no, payment.amount_fen, payment.openid
    extra = {"sign_type": "HMAC-SHA256"} if settings.sign_type == "HMAC-SHA256" else {}
    try:
        result = sdk.pay(settings).order.create(
            trade_type="JSAPI", body=body, total_fee=amount, notify_url=settings.link("/wechat/pay/notify"),
            client_ip=client_ip, user_id=openid, out_trade_no=out_trade_no, attach=str(order_id),
            time_start=now.astimezone(CHINA), time_expire=expires.astimezone(CHINA), **extra)
        if not isinstance(result, dict) or not verify(result, settings.api_key):
            raise WechatUnavailable("WeChat Pay's answer to the unified order carries no valid signature")
        if result.get("appid") != settings.appid or result.get("mch_id") != settings.mch_id \
                or not result.get("prepay_id"):
            raise WechatUnavailable("WeChat Pay's answer names another account or no prepay id")
    except (WeChatPayException, requests.RequestException, WechatUnavailable) as exc:
        error = exc if isinstance(exc, WechatUnavailable) else _pay_api_error(exc)
        with ctx.transaction() as s:
            payment = s.get(WechatPayment, payment_id)
            payment.status, payment.last_error = "closed", error.detail[:1000]
        raise error from None
    with ctx.transaction() as s:
        payment = s.get(WechatPayment, payment_id)
        payment.prepay_id, payment.status = result["prepay_id"], "pending"
        s.flush()
        return _answer(payment, settings)


def _body(order: Order) -> str:
    names = [line.product_name for line in order.lines]
    text = names[0] + (f" 等{len(names)}件" if len(names) > 1 else "")
    return f"订单{order.id}-{text}"[:120]


# ------------------------------------------------------------ notifications

def notification(ctx, settings: Settings, raw: bytes) -> tuple[int, str]:
    """Handle one ``/wechat/pay/notify`` body: ``(http status, XML answer)``."""
    if settings.pay_missing:
        return 503, pay_answer(False, "not configured")
    try:
        data = parse_xml(raw)
    except MalformedXml as exc:
        return 400, pay_answer(False, f"malformed: {exc}")
    if data.get("return_code") != "SUCCESS":
        return 400, pay_answer(False, "return_code is not SUCCESS")
    if not verify(data, settings.api_key):
        log.warning("WeChat Pay notification with an invalid signature refused (out_trade_no %s)",
                    data.get("out_trade_no"))
        return 400, pay_answer(False, "invalid signature")
    if data.get("appid") != settings.appid or data.get("mch_id") != settings.mch_id:
        log.warning("WeChat Pay notification for another account refused (appid/mch_id mismatch)")
        return 400, pay_answer(False, "appid or mch_id mismatch")
    verdict = settle(ctx, settings, data, "notify", raw.decode("utf-8"))
    if verdict in ("accepted", "duplicate", "late", "payment_failed"):
        return 200, pay_answer(True)
    return 200, pay_answer(False, verdict)


def _record(s, data: dict, source: str, verdict: str, raw: str | None) -> None:
    s.add(PayNotification(out_trade_no=str(data.get("out_trade_no", ""))[:32],
                          transaction_id=(data.get("transaction_id") or None) and str(data["transaction_id"])[:32],
                          source=source, verdict=verdict, raw=raw if raw is not None else _xml_of(data)))


def _xml_of(data: dict) -> str:
    from wechatpy.pay.utils import dict_to_xml
    return dict_to_xml({k: v for k, v in data.items() if k != "sign" and v is not None}, data.get("sign"))


def settle(ctx, settings: Settings, data: dict, source: str, raw: str | None = None) -> str:
    """Apply a verified payment result (a notification or an order query); returns the verdict.

    ``accepted``: the order is now paid; ``duplicate``: it was already, by
    this transaction; ``late``: WeChat took the money but the order cannot
    take it (cancelled, or paid otherwise): a refund is queued;
    ``amount_mismatch`` / ``unknown_trade`` / ``payment_failed``: nothing paid.
    """
    out_trade_no, transaction_id = data.get("out_trade_no"), data.get("transaction_id")
    with ctx.transaction() as s:
        found = s.scalar(select(WechatPayment.order_id).where(WechatPayment.out_trade_no == out_trade_no))
        if found is None:
            _record(s, data, source, "unknown_trade", raw)
            log.warning("WeChat Pay result for an unknown out_trade_no %r", out_trade_no)
            return "unknown_trade"
        order = orders.get_order(s, found, lock=True)
        payment = s.scalars(select(WechatPayment).where(WechatPayment.out_trade_no == out_trade_no)
                            .with_for_update().execution_options(populate_existing=True)).one()
        if data.get("result_code") != "SUCCESS" or data.get("trade_state", "SUCCESS") != "SUCCESS":
            _record(s, data, source, "payment_failed", raw)
            return "payment_failed"
        if not transaction_id:
            _record(s, data, source, "no_transaction", raw)
            return "no_transaction"
        if payment.transaction_id is not None:
            verdict = "duplicate" if payment.transaction_id == transaction_id else "conflict"
            _record(s, data, source, verdict, raw)
            if verdict == "conflict":
                log.error("WeChat Pay: %s already settled by transaction %s, now %s", out_trade_no,
                          payment.transaction_id, transaction_id)
            return verdict
        try:
            total = int(data.get("total_fee", ""))
        except ValueError:
            total = -1
        if total != payment.amount_fen:
            _record(s, data, source, "amount_mismatch", raw)
            audit.record(s, PAY_CALLER, "wechat.payment.amount_mismatch", "order", order.id,
                         after={"out_trade_no": out_trade_no, "paid_fen": total, "expected_fen": payment.amount_fen},
                         detail="WeChat reports a different amount: not accepted; check the merchant platform")
            log.error("WeChat Pay: %s paid %s fen, expected %s: not accepted", out_trade_no, total, payment.amount_fen)
            return "amount_mismatch"
        payment.transaction_id, payment.confirmed_via, payment.paid_at = transaction_id, source, utcnow()
        try:
            with s.begin_nested():
                s.flush()  # the unique transaction id: one payment per WeChat transaction
        except IntegrityError:
            _record(s, data, source, "conflict", raw)
            return "conflict"
        refused = None
        if order.status == "awaiting_payment" and order.total_fen == payment.amount_fen:
            try:
                with s.begin_nested():  # a plugin may still veto the payment (e.g. the prescription expired)
                    payment.status = "paid"
                    s.flush()
                    orders.pay(ctx, s, order.id, PROVIDER, {"reference": transaction_id}, PAY_CALLER)
            except DomainError as exc:
                refused = exc.detail
            else:
                _record(s, data, source, "accepted", raw)
                return "accepted"
            s.refresh(order)
            s.refresh(payment)
        payment.status = "refund_due"
        _queue_refund(s, order, payment, f"the order refused the payment: {refused}" if refused else
                      f"payment arrived after the order was {order.status} "
                      f"(paid via {order.payment_provider or '-'})")
        _record(s, data, source, "late", raw)
        audit.record(s, PAY_CALLER, "wechat.payment.late", "order", order.id,
                     after={"out_trade_no": out_trade_no, "transaction_id": transaction_id, "status": order.status},
                     detail="WeChat payment the order could not take: refund queued")
        return "late"


# ----------------------------------------------------------------- refunds

def _queue_refund(s, order: Order, payment: WechatPayment, reason: str) -> None:
    out_refund_no = f"{payment.out_trade_no}R"
    if s.scalar(select(WechatRefund.id).where(WechatRefund.out_refund_no == out_refund_no)) is not None:
        return
    refund = WechatRefund(order_id=order.id, payment_id=payment.id, out_refund_no=out_refund_no,
                          amount_fen=payment.amount_fen, reason=reason[:500], status="pending")
    s.add(refund)
    s.flush()
    enqueue(s, "wechat.refund", {"refund_id": refund.id}, dedupe_key=f"wechat.refund:{out_refund_no}")


def refund_veto(settings: Settings, order: Order) -> str | None:
    """Why a WeChat-paid order cannot be refunded here (no merchant certificate), or ``None``."""
    if order.payment_provider == PROVIDER and settings.refund_missing:
        return (f"order {order.id} was paid with WeChat Pay, which refunds only with the merchant certificate: "
                f"set {', '.join(settings.refund_missing)}")
    return None


def send_refund(ctx, settings: Settings, payload: dict) -> None:
    """Outbox sender of ``wechat.refund``: ask WeChat to refund (idempotent by ``out_refund_no``)."""
    with ctx.session() as s:
        refund = s.get(WechatRefund, payload["refund_id"])
        payment = s.get(WechatPayment, refund.payment_id)
        if refund.status == "requested":
            return
        args = dict(total_fee=payment.amount_fen, refund_fee=refund.amount_fen, out_refund_no=refund.out_refund_no,
                    transaction_id=payment.transaction_id, refund_desc=(refund.reason or "退款")[:80])
        order_id = refund.order_id
    if settings.refund_missing:
        raise RuntimeError(f"WeChat refunds need {', '.join(settings.refund_missing)}")
    try:
        result = sdk.pay(settings, with_cert=True).refund.apply(**args)
        if not isinstance(result, dict) or not verify(result, settings.api_key):
            raise RuntimeError("WeChat Pay's refund answer carries no valid signature")
    except Exception as exc:
        with ctx.transaction() as s:
            refund = s.get(WechatRefund, payload["refund_id"])
            refund.status, refund.last_error = "failed", _describe(exc)[:1000]
        raise
    with ctx.transaction() as s:
        refund = s.get(WechatRefund, payload["refund_id"])
        refund.status, refund.refund_id, refund.last_error = "requested", result.get("refund_id"), None
        order = s.get(Order, order_id)
        if order.status == "refunded":  # a late payment's refund is not the order's refund
            from .notifications import queue_template
            queue_template(ctx, s, order, "refunded")


def send_close(ctx, settings: Settings, payload: dict) -> None:
    """Outbox sender of ``wechat.close_trade``: close a trade the order no longer needs."""
    with ctx.session() as s:
        payment = s.get(WechatPayment, payload["payment_id"])
        if payment.status not in ("pending", "creating"):
            return
        out_trade_no = payment.out_trade_no
    try:
        sdk.pay(settings).order.close(out_trade_no)
        status = "closed"
    except WeChatPayException as exc:
        if exc.errcode == "ORDERPAID":  # paid meanwhile: the order query settles (and refunds) it
            reconcile_one(ctx, settings, payload["payment_id"])
            return
        if exc.errcode != "ORDERCLOSED":
            raise
        status = "closed"
    with ctx.transaction() as s:
        payment = s.get(WechatPayment, payload["payment_id"])
        if payment.status in ("pending", "creating"):
            payment.status = status


def _describe(exc: Exception) -> str:
    if isinstance(exc, WeChatPayException):
        return f"{exc.errcode or exc.return_code}: {exc.errmsg or exc.return_msg}"
    return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- reconcile

def reconcile_one(ctx, settings: Settings, payment_id: int) -> str:
    """Ask WeChat about one trade and apply the answer; returns what happened."""
    with ctx.session() as s:
        payment = s.get(WechatPayment, payment_id)
        out_trade_no, expired = payment.out_trade_no, (payment.prepay_expires_at or utcnow()) < utcnow()
    try:
        result = sdk.pay(settings).order.query(out_trade_no=out_trade_no)
    except WeChatPayException as exc:
        if exc.errcode == "ORDERNOTEXIST":
            _close(ctx, payment_id, "WeChat does not know the trade")
            return "closed"
        raise
    if not isinstance(result, dict) or not verify(result, settings.api_key) \
            or result.get("appid") != settings.appid or result.get("mch_id") != settings.mch_id:
        raise WechatUnavailable(f"WeChat Pay's answer about {out_trade_no} is not signed for this account")
    state = result.get("trade_state")
    if state == "SUCCESS":
        return settle(ctx, settings, result, "query")
    if state in ("CLOSED", "REVOKED", "PAYERROR"):
        _close(ctx, payment_id, f"trade {state}")
        return "closed"
    if state == "NOTPAY" and expired:
        try:
            sdk.pay(settings).order.close(out_trade_no)
        except WeChatPayException as exc:
            if exc.errcode == "ORDERPAID":
                return reconcile_one(ctx, settings, payment_id)
            if exc.errcode != "ORDERCLOSED":
                raise
        _close(ctx, payment_id, "expired unpaid")
        return "closed"
    return "pending"


def _close(ctx, payment_id: int, why: str) -> None:
    with ctx.transaction() as s:
        payment = s.get(WechatPayment, payment_id)
        if payment.status in ("pending", "creating"):
            payment.status, payment.last_error = "closed", why


def reconcile(ctx, settings: Settings, *, older_than: dt.timedelta | None = None,
              now: dt.datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Query WeChat about every trade still pending (older than ``older_than``) and apply the answers."""
    if settings.pay_missing:
        raise NotConfigured.keys("WeChat Pay", settings.pay_missing)
    now = now or utcnow()
    cutoff = now - (older_than if older_than is not None else dt.timedelta(minutes=settings.reconcile_after_minutes))
    with ctx.session() as s:
        ids = s.scalars(select(WechatPayment.id).where(
            WechatPayment.status.in_(("pending", "creating")), WechatPayment.created_at <= cutoff)
            .order_by(WechatPayment.id).limit(limit)).all()
    summary: dict[str, int] = {"checked": 0, "errors": 0}
    for payment_id in ids:
        summary["checked"] += 1
        try:
            outcome = reconcile_one(ctx, settings, payment_id)
        except Exception as exc:  # one trade's failure never stops the others
            log.warning("reconcile of WeChat payment %s failed: %s", payment_id, _describe(exc))
            summary["errors"] += 1
            continue
        summary[outcome] = summary.get(outcome, 0) + 1
    return summary


# -------------------------------------------------------------- order hooks

def on_status_changed(session, settings: Settings, order: Order, old_status, new_status) -> None:
    """Queue what WeChat must hear when an order changes (inside the order's transaction)."""
    if new_status == "refunded" and order.payment_provider == PROVIDER:
        payment = session.scalars(select(WechatPayment).where(
            WechatPayment.order_id == order.id, WechatPayment.status == "paid",
            WechatPayment.transaction_id == order.payment_reference)).first()
        if payment is not None:
            _queue_refund(session, order, payment, "order refunded")
    # a trade is opened for an order that exists and awaits payment: an order created in this change
    # (old_status None, e.g. a POS sale recorded as paid) has none to close, so no query for it
    if old_status is not None and (new_status == "cancelled"
                                   or (new_status == "paid" and order.payment_provider != PROVIDER)):
        for payment in session.scalars(select(WechatPayment).where(
                WechatPayment.order_id == order.id, WechatPayment.status.in_(("pending", "creating")))):
            enqueue(session, "wechat.close_trade", {"payment_id": payment.id},
                    dedupe_key=f"wechat.close:{payment.out_trade_no}")
