"""``pharmo2o meituan ...``: look at Meituan orders, sign a payload for a manual test."""
from __future__ import annotations

import click
from sqlalchemy import select

from core.cli import CliError, pass_state

from .models import MeituanOrder
from .settings import settings_of
from .signing import HEADER, sign


@click.group()
def meituan() -> None:
    """Meituan delivery: linked orders, request signatures."""


@meituan.command("orders")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@pass_state
def orders(state, limit: int) -> None:
    """The latest Meituan orders and where their delivery is."""
    ctx = state.context()
    with ctx.session() as session:
        links = session.scalars(select(MeituanOrder).order_by(MeituanOrder.id.desc()).limit(limit)).all()
        for link in links:
            click.echo(f"{link.meituan_order_id}  order #{link.order_id}  {link.delivery_status}  "
                       f"{link.meituan_total_fen} fen  {link.created_at.isoformat()}")
    if not links:
        click.echo("no Meituan orders yet")


@meituan.command("sign")
@click.argument("body_file", type=click.File("rb"))
@pass_state
def sign_body(state, body_file) -> None:
    """Print the signature header for BODY_FILE ('-' for stdin), to call the webhooks by hand."""
    secret = settings_of(state.config()).secret
    if not secret:
        raise CliError("set [meituan] secret first")
    click.echo(f"{HEADER}: {sign(secret, body_file.read())}")
