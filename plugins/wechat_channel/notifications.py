"""Template messages for order events, sent from the outbox after commit, never twice per (order, event).

::

    order_status_changed (in the order's transaction)
        paid                          -> "paid"
        ready / dispatched            -> "ready" (with the pickup code) / "dispatched"
        awaiting_review -> awaiting_payment           -> "rx_approved"   } only without a review plugin
        awaiting_review -> cancelled by staff         -> "rx_rejected"   } that sends customer.notify
    customer.notify from prescription_review: prescription.approved / .rejected -> "rx_approved" / "rx_rejected"
    WeChat refund accepted (payments.send_refund)  -> "refunded"
      => outbox "wechat.template" {order_id, event}, dedupe key wechat.tpl:<order>:<event>
         (only for customers with an openid, orders of [wechat] notify_channels, events with a template id)

    sender: claim wechat_template_sends[<order>:<event>] (unique)
        sent / skipped / unknown  -> nothing (never twice)
        sending by another, lease alive -> retry later
        sending, lease expired   -> the earlier attempt may have reached WeChat: "unknown", not resent
        new / failed             -> send; WeChat refused (an errcode, an HTTP error) -> "failed", retried;
                                    no answer (timeout after sending) -> "unknown", not resent
"""
from __future__ import annotations

import datetime as dt
import logging

import requests
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from wechatpy.exceptions import WeChatClientException

from core.db import utcnow
from core.models import Customer, Order, OrderEvent, Store
from core.outbox import enqueue

from .models import Follower, TemplateSend
from .settings import Settings, settings_of
from .tokens import AccessTokens, TokenUnavailable

__all__ = ["queue_template", "on_status_changed", "send_template", "send_customer_notice", "record_delivery",
           "TEMPLATE_KIND", "CUSTOMER_NOTIFY_KIND"]

log = logging.getLogger("pharmo2o.wechat.templates")
TEMPLATE_KIND = "wechat.template"
#: messages for a customer from other plugins (prescription_review's decisions); sent here as templates
CUSTOMER_NOTIFY_KIND = "customer.notify"
CUSTOMER_EVENTS = {"prescription.approved": "rx_approved", "prescription.rejected": "rx_rejected"}
LEASE = dt.timedelta(minutes=2)
#: WeChat errors after which sending again cannot help
PERMANENT = {40003: "invalid openid", 43004: "the user does not follow the account", 43101: "the user refused",
             40037: "invalid template id", 47003: "template data does not fit the template"}


def queue_template(ctx, session, order: Order, event: str, **extra) -> bool:
    """Queue the template message of ``event`` for ``order`` (once); ``False`` when there is nothing to send."""
    settings = settings_of(ctx.config)
    if event not in settings.templates or order.channel not in settings.notify_channels:
        return False
    if order.customer_id is None:
        return False
    openid = session.scalar(select(Customer.openid).where(Customer.id == order.customer_id))
    if not openid:
        return False
    payload = {"order_id": order.id, "event": event, **extra}
    return enqueue(session, TEMPLATE_KIND, payload, dedupe_key=f"wechat.tpl:{order.id}:{event}") is not None


def _last_reason(session, order: Order) -> str:
    return session.scalar(select(OrderEvent.reason).where(OrderEvent.order_id == order.id)
                          .order_by(OrderEvent.id.desc()).limit(1)) or ""


def _reviews_notify(ctx) -> bool:
    """Whether a review plugin sends its decisions as ``customer.notify`` messages (prescription_review does)."""
    return any("prescription_review" in (caps or []) for caps in ctx.registry.hook.capabilities())


def on_status_changed(ctx, session, order: Order, old_status, new_status, caller) -> None:
    if new_status in ("paid", "ready", "dispatched"):
        queue_template(ctx, session, order, new_status)
    elif old_status != "awaiting_review" or _reviews_notify(ctx):
        return  # the review plugin's own message (with the pharmacist's words) is the one sent
    elif new_status == "awaiting_payment":
        queue_template(ctx, session, order, "rx_approved")
    elif new_status == "cancelled" and caller is not None and caller.is_staff:
        queue_template(ctx, session, order, "rx_rejected", reason=_last_reason(session, order)[:200])


# ------------------------------------------------------------------ sending

def _yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def _local(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M")


def build(settings: Settings, session, order: Order, event: str, payload: dict) -> tuple[dict, str]:
    """The template data (``first``, ``keyword1..3``, ``remark``) and the link of one message."""
    store = session.get(Store, order.store_id)
    where = f"{store.name} {store.address}".strip() if store else ""
    number = f"{order.id}"
    texts = {
        "paid": ("您的订单已支付成功", number, _yuan(order.total_fen), _local(order.paid_at),
                 "我们正在为您备货" + ("，备好后通知您到店自提。" if order.fulfilment == "pickup" else "，发货后通知您。")),
        "ready": ("您的订单已备好，请到店取货", number, f"取货码 {order.pickup_code or ''}", where,
                  "请凭取货码到店取货。"),
        "dispatched": ("您的订单已发货", number, order.delivery_address or "", _local(utcnow()), "请注意查收。"),
        "rx_approved": ("您的处方已审核通过", number, "审核通过", _local(utcnow()), "请尽快完成支付。"),
        "rx_rejected": ("您的处方审核未通过", number, payload.get("reason") or "处方不符合要求", _local(utcnow()),
                        "您可以重新上传处方后再次下单。"),
        "refunded": ("您的订单已退款", number, _yuan(order.total_fen), _local(utcnow()),
                     "款项将按原路退回，请留意微信支付通知。"),
    }[event]
    names = ("first", "keyword1", "keyword2", "keyword3", "remark")
    data = {name: {"value": value} for name, value in zip(names, texts)}
    return data, settings.link(f"/h5/#/orders/{order.id}")


def _claim(ctx, key: str, order_id: int, event: str) -> TemplateSend | None:
    """Take the (order, event) row for this attempt, or ``None`` when it must not be sent (again)."""
    now = utcnow()
    with ctx.transaction() as s:
        row = s.scalars(select(TemplateSend).where(TemplateSend.dedupe_key == key).with_for_update()).one_or_none()
        if row is None:
            row = TemplateSend(dedupe_key=key, order_id=order_id, event=event, status="sending", attempts=1,
                               lease_until=now + LEASE)
            try:
                with s.begin_nested():
                    s.add(row)
                    s.flush()
            except IntegrityError:  # a concurrent sender created it: it sends
                raise RuntimeError(f"template {key} is being sent by another worker") from None
            return row
        if row.status in ("sent", "skipped", "unknown"):
            return None
        if row.status == "sending":
            if row.lease_until is not None and row.lease_until > now:
                raise RuntimeError(f"template {key} is being sent by another worker")
            row.status, row.last_error = "unknown", "an earlier attempt stopped midway; not resent"
            log.warning("template message %s: an earlier attempt stopped midway; not resent", key)
            return None
        row.status, row.attempts, row.lease_until = "sending", row.attempts + 1, now + LEASE
        return row


def _finish(ctx, row_id: int, **values) -> None:
    with ctx.transaction() as s:
        row = s.get(TemplateSend, row_id)
        for k, v in values.items():
            setattr(row, k, v)
        row.lease_until = None


def send_template(ctx, settings: Settings, payload: dict) -> None:
    """Outbox sender of ``wechat.template``."""
    order_id, event = int(payload["order_id"]), payload["event"]
    key = f"{order_id}:{event}"
    row = _claim(ctx, key, order_id, event)
    if row is None:
        return
    with ctx.session() as s:
        order = s.get(Order, order_id)
        customer = s.get(Customer, order.customer_id) if order.customer_id else None
        openid = customer.openid if customer else None
        follower = s.get(Follower, openid) if openid else None
        template_id = settings.templates.get(event)
        data, url = build(settings, s, order, event, payload)
        channel, unsubscribed = order.channel, follower is not None and not follower.subscribed
    if not openid or not template_id or unsubscribed or channel not in settings.notify_channels:
        why = ("no openid" if not openid else "no template id" if not template_id
               else f"channel {channel}" if channel not in settings.notify_channels else "unsubscribed")
        _finish(ctx, row.id, status="skipped", last_error=why, openid=openid, template_id=template_id)
        return
    if settings.api_missing:
        _finish(ctx, row.id, status="failed", last_error="WeChat API not configured")
        raise RuntimeError(f"WeChat API not configured: set {', '.join(settings.api_missing)}")
    tokens = AccessTokens(ctx, settings)
    try:
        result = tokens.call(lambda c: c.message.send_template(openid, template_id, data, url=url))
    except WeChatClientException as exc:
        if exc.errcode in PERMANENT:
            _finish(ctx, row.id, status="skipped", last_error=f"{exc.errcode}: {PERMANENT[exc.errcode]}",
                    openid=openid, template_id=template_id)
            return
        _finish(ctx, row.id, status="failed", last_error=f"{exc.errcode}: {exc.errmsg}", openid=openid,
                template_id=template_id)
        raise
    except (TokenUnavailable, requests.ConnectTimeout) as exc:  # the message never left
        _finish(ctx, row.id, status="failed", last_error=f"{type(exc).__name__}: {exc}")
        raise
    except Exception as exc:  # no answer after sending: WeChat may have delivered it
        _finish(ctx, row.id, status="unknown", last_error=f"{type(exc).__name__}: {exc}", openid=openid,
                template_id=template_id)
        log.warning("template message %s: no answer from WeChat (%s); not resent", key, type(exc).__name__)
        return
    _finish(ctx, row.id, status="sent", msgid=str(result.get("msgid", ""))[:32] or None, openid=openid,
            template_id=template_id, last_error=None)


def send_customer_notice(ctx, settings: Settings, payload: dict) -> None:
    """Outbox sender of ``customer.notify``: the events WeChat has a template for, once per (order, event)."""
    event = CUSTOMER_EVENTS.get(payload.get("event"))
    if event is None or not payload.get("order_id"):
        log.info("customer.notify event %r has no WeChat template: not sent", payload.get("event"))
        return
    send_template(ctx, settings, {"order_id": payload["order_id"], "event": event,
                                  "reason": str(payload.get("text") or payload.get("reason_label") or "")[:200]})


def record_delivery(session, msgid, status: str) -> None:
    """Store the ``TEMPLATESENDJOBFINISH`` status of a message we sent."""
    if not msgid:
        return
    row = session.scalars(select(TemplateSend).where(TemplateSend.msgid == str(msgid))).first()
    if row is not None:
        row.delivery = (status or "")[:60]
