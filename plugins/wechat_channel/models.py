"""The wechat_channel plugin's tables.

* ``wechat_inbound`` — every push of the Official Account server, once: the
  unique ``dedupe_key`` (``MsgId``, or ``FromUserName + CreateTime + Event``)
  makes a retried push find the reply stored by the first one.
* ``wechat_followers`` — who follows the account and the store a store QR code bound them to.
* ``wechat_oauth_states`` / ``wechat_login_codes`` — single-use values of the
  OAuth sign-in (stored as SHA-256, never in clear).
* ``wechat_payments`` — one row per WeChat Pay trade (our ``out_trade_no``);
  the unique ``transaction_id`` is what makes a payment count once.
* ``wechat_pay_notifications`` — every verified notification as received (append-only).
* ``wechat_refunds`` — refunds asked of WeChat (unique ``out_refund_no``: WeChat refunds it once).
* ``wechat_template_sends`` — one row per (order, event) template message: never sent twice.
* ``wechat_access_tokens`` — the shared access token when Redis is not configured, with its refresh lease.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow
from core.models import AppendOnlyViolation

__all__ = ["InboundMessage", "Follower", "OAuthState", "LoginCode", "WechatPayment", "PayNotification",
           "WechatRefund", "TemplateSend", "AccessTokenRow", "PAYMENT_STATUSES"]

IdType = BigInteger().with_variant(Integer, "sqlite")

PAYMENT_STATUSES = (
    "creating",    # our row exists, the unified order is being placed
    "pending",     # WeChat gave a prepay id; the customer may pay
    "paid",        # WeChat confirmed it (notification or order query) and the order is paid
    "refund_due",  # confirmed, but the order could not take it (cancelled, paid otherwise): refunded
    "closed",      # never paid (closed, expired, failed to create)
)


class InboundMessage(Base):
    __tablename__ = "wechat_inbound"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    msg_type: Mapped[str] = mapped_column(String(32))
    event: Mapped[str | None] = mapped_column(String(64))
    reply: Mapped[str] = mapped_column(Text, default="")  # the plaintext reply XML ("" = "success")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Follower(Base):
    __tablename__ = "wechat_followers"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    scene: Mapped[str | None] = mapped_column(String(100))
    subscribed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OAuthState(Base):
    __tablename__ = "wechat_oauth_states"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64))  # the cookie that started the sign-in
    next_path: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class LoginCode(Base):
    __tablename__ = "wechat_login_codes"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WechatPayment(Base):
    __tablename__ = "wechat_payments"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    openid: Mapped[str] = mapped_column(String(64))
    client_ip: Mapped[str] = mapped_column(String(64))
    sign_type: Mapped[str] = mapped_column(String(12))
    prepay_id: Mapped[str | None] = mapped_column(String(64))
    prepay_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12), index=True)
    transaction_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    confirmed_via: Mapped[str | None] = mapped_column(String(12))  # notify | query
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class PayNotification(Base):
    """A verified payment notification or query answer as received; append-only."""

    __tablename__ = "wechat_pay_notifications"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), index=True)
    transaction_id: Mapped[str | None] = mapped_column(String(32), index=True)
    source: Mapped[str] = mapped_column(String(12))  # notify | query
    verdict: Mapped[str] = mapped_column(String(20))  # accepted | duplicate | late | amount_mismatch | ...
    raw: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WechatRefund(Base):
    __tablename__ = "wechat_refunds"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("wechat_payments.id"), index=True)
    out_refund_no: Mapped[str] = mapped_column(String(64), unique=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(12))  # pending | requested | failed
    refund_id: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class TemplateSend(Base):
    __tablename__ = "wechat_template_sends"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(100), unique=True)  # "<order id>:<event>"
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    event: Mapped[str] = mapped_column(String(20))
    openid: Mapped[str | None] = mapped_column(String(64))
    template_id: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10))  # sending | sent | failed | skipped | unknown
    msgid: Mapped[str | None] = mapped_column(String(32), index=True)
    delivery: Mapped[str | None] = mapped_column(String(60))  # the TEMPLATESENDJOBFINISH status
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AccessTokenRow(Base):
    __tablename__ = "wechat_access_tokens"

    appid: Mapped[str] = mapped_column(String(40), primary_key=True)
    token: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


def _refuse(mapper, connection, target):
    raise AppendOnlyViolation(f"{type(target).__tablename__} is append-only: rows are never changed or deleted")


event.listen(PayNotification, "before_update", _refuse)
event.listen(PayNotification, "before_delete", _refuse)
