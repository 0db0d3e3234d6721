"""Hook implementations of the wechat_channel plugin.

* ``register_sales_channels``: the online channel ``wechat`` (so the core's online rules apply: ban list,
  Rx notice, no Rx sale without prescription review).
* ``register_payment_providers``: ``wechat`` (:class:`.payments.WechatPayProvider`).
* ``order_before_transition``: a WeChat-paid order is refunded only when WeChat refunds can be made.
* ``order_status_changed``: queue what WeChat must hear (refunds, trade closing, template messages).
* ``notification_senders``: the outbox senders of those (template messages, refunds, trade closing).
* ``register_routes`` / ``register_commands`` / ``register_jobs``: the endpoints, ``pharmo2o wechat ...``,
  and the periodic reconciliation.
"""
from __future__ import annotations

from core import hookimpl
from core.context import context_of
from core.jobs import Job

from . import notifications, payments
from .settings import settings_of


@hookimpl
def startup(registry):
    settings_of(registry.config)  # a bad [wechat] section fails at start, naming the key


@hookimpl
def capabilities():
    return ["wechat_oauth", "wechat_pay"]


@hookimpl
def register_sales_channels():
    return [{"name": "wechat", "online": True, "label": "WeChat Official Account H5 shop"}]


@hookimpl
def register_payment_providers():
    return [payments.WechatPayProvider()]


@hookimpl
def order_before_transition(session, order, old_status, new_status, caller):
    if new_status == "refunded":
        return payments.refund_veto(settings_of(context_of(session).config), order)
    return None


@hookimpl
def order_status_changed(session, order, old_status, new_status, caller):
    ctx = context_of(session)
    payments.on_status_changed(session, settings_of(ctx.config), order, old_status, new_status)
    notifications.on_status_changed(ctx, session, order, old_status, new_status, caller)


@hookimpl
def notification_senders(ctx):
    def settings():
        return settings_of(ctx.config)
    return {
        notifications.TEMPLATE_KIND: lambda payload: notifications.send_template(ctx, settings(), payload),
        notifications.CUSTOMER_NOTIFY_KIND: lambda payload: notifications.send_customer_notice(ctx, settings(),
                                                                                                payload),
        "wechat.refund": lambda payload: payments.send_refund(ctx, settings(), payload),
        "wechat.close_trade": lambda payload: payments.send_close(ctx, settings(), payload),
    }


@hookimpl
def register_routes():
    from .api import routes
    return routes()


@hookimpl
def register_commands(cli):
    from .cli import wechat
    cli.add_command(wechat)


def _reconcile(ctx) -> str:
    settings = settings_of(ctx.config)
    if settings.pay_missing:
        return ""
    result = payments.reconcile(ctx, settings)
    return "" if not result["checked"] else ", ".join(f"{k} {v}" for k, v in sorted(result.items()))


def _cleanup(ctx) -> str:
    from .oauth import cleanup
    n = cleanup(ctx)
    return f"deleted {n} expired sign-in and push row(s)" if n else ""


@hookimpl
def register_jobs():
    return [Job("wechat.reconcile", 300, _reconcile), Job("wechat.cleanup", 3600, _cleanup)]
