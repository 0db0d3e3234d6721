import click
from sqlalchemy import text

from core import hookimpl
from core.cli import pass_state


@click.command("fixture-notes")
@pass_state
def fixture_notes(state):
    """Count the fixture plugin's notes."""
    ctx = state.context()
    with ctx.session() as session:
        n = session.execute(text("SELECT count(*) FROM p2o_fixture_notes")).scalar_one()
    click.echo(f"p2o_fixture notes: {n}")


@hookimpl
def register_commands(cli):
    cli.add_command(fixture_notes)
