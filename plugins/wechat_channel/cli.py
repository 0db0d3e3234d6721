"""``pharmo2o wechat ...``: payment reconciliation and the configuration check."""
from __future__ import annotations

import datetime as dt
import json

import click

from core.cli import CliError, pass_state

from . import payments
from .settings import settings_of


@click.group()
def wechat() -> None:
    """WeChat Official Account and WeChat Pay."""


@wechat.command("reconcile")
@click.option("--older-than", "older_than", type=click.IntRange(0, 24 * 60), default=None, metavar="MINUTES",
              help="Only trades placed at least this long ago (default: [wechat] reconcile_after_minutes).")
@pass_state
def reconcile(state, older_than: int | None) -> None:
    """Ask WeChat Pay about every pending trade and apply the answers (missed notifications, expired trades)."""
    ctx = state.context()
    settings = settings_of(ctx.config)
    if settings.pay_missing:
        raise CliError(f"WeChat Pay is not configured: set {', '.join(settings.pay_missing)}")
    result = payments.reconcile(ctx, settings, older_than=None if older_than is None
                                else dt.timedelta(minutes=older_than))
    click.echo(f"checked {result.pop('checked')} pending trade(s): " +
               (", ".join(f"{v} {k}" for k, v in sorted(result.items()) if v) or "nothing to change"))
    if result.get("errors"):
        raise CliError(f"{result['errors']} trade(s) could not be checked; see the log")


@wechat.command("status")
@pass_state
def status(state) -> None:
    """Show the [wechat] configuration (secrets only as set / not set) and what is missing."""
    settings = settings_of(state.config())
    click.echo(json.dumps(settings.public(), ensure_ascii=False, indent=2))
    for what, missing in (("server", settings.server_missing), ("API", settings.api_missing),
                          ("OAuth", settings.oauth_missing), ("Pay", settings.pay_missing),
                          ("refunds", settings.refund_missing)):
        click.echo(f"{what}: " + ("ready" if not missing else "missing " + ", ".join(missing)))
