"""Hooks the wechat_channel plugin offers other plugins (declared through ``Manifest.hookspecs``).

The core adds these specifications to the plugin manager, before any plugin
registers, whenever wechat_channel is enabled. A plugin that implements them
either depends on ``wechat_channel`` or marks its implementation
``@hookimpl(optionalhook=True)`` so that it still loads when WeChat is not
enabled (the hook is then never called).
"""
from __future__ import annotations

from core.hookspecs import hookspec


@hookspec
def wechat_event(session, message):
    """Observe one push of the Official Account server (a message or an event) and optionally answer it.

    Runs once per push — duplicates WeChat sends again are answered from the
    stored reply without calling it — inside the transaction that records the
    push, after wechat_channel's own handling (the follower's store binding is
    already written), so raising rolls the push back and WeChat retries it.
    It must be quick (WeChat waits 5 seconds for all of it): put slow or
    outside-world work in the outbox (:func:`core.outbox.enqueue`).

    ``message`` is a :class:`plugins.wechat_channel.server.WechatMessage`
    dict: ``kind`` (MsgType), ``event`` (``subscribe``, ``subscribe_scan``,
    ``scan``, ``unsubscribe``, ``click``, ``view``,
    ``templatesendjobfinish``, ... or ``None``), ``openid``, ``key``,
    ``content``, ``created_at``, ``customer_id``, ``store_id``, ``raw``.

    Return a text to add to the reply, or ``None``. Every implementation is
    called in plugin order; the texts are appended after wechat_channel's own
    (blank line between), so no plugin overrides another's answer.
    """
