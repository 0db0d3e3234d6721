"""``pharmo2o prescriptions ...``: the online-sale ban list and a look at the review queue."""
from __future__ import annotations

import json
from pathlib import Path

import click

from core.cli import CliError, pass_state
from core.errors import DomainError

from . import banlist
from .models import Prescription
from .settings import settings_of


@click.group()
def prescriptions() -> None:
    """Prescription review: the online-sale ban list, the queue."""


@prescriptions.group("banlist")
def banlist_group() -> None:
    """The online-sale ban list (versioned data; every loaded version is kept)."""


@banlist_group.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--actor", default="cli", show_default=True, help="Who loads it (kept in the audit log).")
@pass_state
def banlist_load(state, file: Path, actor: str) -> None:
    """Load FILE (JSON, see the bundled data/banlist.json) as the list in force."""
    ctx = state.context()
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"{file}: not a JSON ban list: {exc}", exit_code=2) from None
    try:
        with ctx.transaction() as session:
            before = len(banlist.versions(session))
            row = banlist.store_version(session, document, f"cli:{actor}", source=str(file.resolve()))
            new = len(banlist.versions(session)) > before
            version, entries = row.version, len(row.document["entries"])
    except DomainError as exc:
        raise CliError(exc.detail, exit_code=2, details=[f"{f['field']}: {f['message']}" for f in exc.fields]) from None
    click.echo(f"ban list {version} ({entries} entries) {'loaded and in force' if new else 'was already loaded'}")


@banlist_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print the whole list as JSON.")
@pass_state
def banlist_show(state, as_json: bool) -> None:
    """Show the version in force (and every loaded version)."""
    ctx = state.context()
    with ctx.session() as session:
        found = banlist.in_force(session, settings_of(ctx.config))
        history = [(v.version, v.loaded_by, v.loaded_at) for v in banlist.versions(session)]
    if as_json:
        click.echo(json.dumps(found.document, ensure_ascii=False, indent=2))
        return
    click.echo(f"in force: {found.version} ({found.origin}, {len(found.entries)} entries) {found.title}")
    for version, by, at in history:
        click.echo(f"  loaded {version} by {by} at {at.isoformat()}")


@prescriptions.command("queue")
@click.option("--store", "store_id", type=int, help="Only this store.")
@pass_state
def queue(state, store_id: int | None) -> None:
    """Pending prescriptions, oldest first, with how long each has waited."""
    from sqlalchemy import select

    from core.db import utcnow
    ctx = state.context()
    now = utcnow()
    with ctx.session() as session:
        stmt = select(Prescription).where(Prescription.status == "pending").order_by(Prescription.id)
        if store_id is not None:
            stmt = stmt.where(Prescription.store_id == store_id)
        rows = [(p.id, p.order_id, p.store_id, int((now - p.submitted_at).total_seconds() // 60))
                for p in session.scalars(stmt)]
    if not rows:
        click.echo("no prescription waits for review")
    for pid, oid, sid, minutes in rows:
        click.echo(f"#{pid}  order {oid}  store {sid}  waiting {minutes} min")
