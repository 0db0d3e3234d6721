"""``pharmo2o loyalty ...``: the plugin's scheduled jobs and its consistency check.

Run ``vest``, ``expire`` and ``tiers`` from cron (daily is enough; each is
idempotent and safe beside live traffic and beside another run of itself).
"""
from __future__ import annotations

import datetime as dt
import json

import click

from core.cli import CliError, pass_state

from . import ledger, services
from .settings import settings_of


def _now(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--now {value!r}: not an ISO 8601 time", exit_code=2) from None
    if moment.tzinfo is None:
        raise CliError(f"--now {value!r}: give a time zone (e.g. 2027-02-01T00:00:00+08:00)", exit_code=2)
    return moment.astimezone(dt.timezone.utc)


_now_option = click.option("--now", metavar="ISO-TIME", help="Act as if it were this time (with a zone).")


@click.group()
def loyalty() -> None:
    """Membership points: vesting, expiry, tiers, verification."""


@loyalty.command("expire")
@_now_option
@pass_state
def expire(state, now: str | None) -> None:
    """Expire points lots past their expiry (running it twice changes nothing)."""
    ctx = state.context()
    result = services.run_expire(ctx, settings_of(ctx.config), _now(now))
    click.echo(f"expired {result['points']} point(s) of {result['members']} member(s)")


@loyalty.command("vest")
@_now_option
@pass_state
def vest(state, now: str | None) -> None:
    """Make pending points usable for sales whose return window has closed."""
    ctx = state.context()
    result = services.run_vest(ctx, settings_of(ctx.config), _now(now))
    click.echo(f"vested the points of {result['orders']} order(s)")


@loyalty.command("tiers")
@_now_option
@pass_state
def tiers(state, now: str | None) -> None:
    """Re-evaluate every member's tier from their rolling 12-month spend."""
    ctx = state.context()
    result = services.run_tiers(ctx, settings_of(ctx.config), _now(now))
    click.echo(f"{result['changed']} of {result['members']} member(s) changed tier")


@loyalty.command("verify")
@pass_state
def verify(state) -> None:
    """Re-derive every balance from the ledger; exit 1 listing any mismatch."""
    ctx = state.context()
    with ctx.session() as session:
        problems = ledger.verify(session)
    if problems:
        raise CliError(f"{len(problems)} loyalty balance problem(s)",
                       details=[json.dumps(p, ensure_ascii=False) for p in problems[:50]])
    click.echo("ledger and balances agree")
