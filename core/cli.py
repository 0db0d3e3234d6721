"""The ``pharmo2o`` command line.

::

    pharmo2o [--config PATH] init | demo | serve
                             plugins list | enable NAME... | disable NAME... | purge NAME --yes
                             users create USERNAME --role ROLE [--password PW]
                             license keygen | issue | show
                             products import FILE.csv [--dry-run] [--errors-out FILE]
                             outbox run [--once] | orders expire

The configuration is ``--config PATH``, else ``PHARMO2O_CONFIG``, else
``./pharmo2o.toml`` (see :mod:`core.config`). Nothing is loaded before a
command needs it, so ``--help`` works even when the configuration or a plugin
is broken; the error shows up when a command needs the broken part.

Enabled plugins add commands through the ``register_commands(cli)`` hook; a
plugin command gets the running :class:`core.context.Context` with::

    from core.cli import pass_state

    @click.command()
    @pass_state
    def my_command(state):
        ctx = state.context()

Refusals (:class:`core.errors.DomainError`, plugin, license and configuration
errors) print one line ``error: ...`` on stderr and exit non-zero (2 for
invalid input, 1 otherwise), never a traceback.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Iterable

import click

from . import __version__
from .config import DEFAULT_DATABASE_URL, Config, ConfigError, load_config
from .errors import DomainError, LicenseError, PluginError, ValidationFailed

__all__ = ["cli", "main", "State", "pass_state", "CliError"]

CLI_ACTOR = "cli"


class CliError(click.ClickException):
    """A refusal printed as ``error: ...`` (plus detail lines) with an exit code."""

    def __init__(self, message: str, *, exit_code: int = 1, details: Iterable[str] = ()):
        super().__init__(message)
        self.exit_code = exit_code
        self.details = list(details)

    def show(self, file=None) -> None:
        for line in [f"error: {self.format_message()}"] + [f"  {d}" for d in self.details]:
            click.echo(line, file=file, err=file is None)


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: show it as configured
        return url


class State:
    """What one CLI run has loaded so far (configuration, plugins, database)."""

    def __init__(self, config_path: str | None = None, extra_plugins: Iterable[ModuleType] = ()):
        self.config_path = config_path
        #: plugin modules outside the entry points (tests, like ``Context.create(extra_plugins=...)``)
        self.extra_plugins = tuple(extra_plugins)
        self.plugin_error: str | None = None
        self._config: Config | None = None
        self._registry = None
        self._context = None
        self._plugin_commands: dict[str, click.Command] | None = None

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def reload_config(self) -> Config:
        self._config = None
        return self.config()

    def registry(self):
        """The plugin registry of the configured plugin set (loaded once)."""
        if self._registry is None:
            from .plugins import load_registry
            self._registry = load_registry(self.config(), extra=self.extra_plugins)
        return self._registry

    def context(self, *, require_db: bool = True):
        """The running Context; with ``require_db`` the database must have been initialised."""
        if self._context is None:
            from .context import Context
            from .db import make_engine, make_sessionmaker
            registry = self.registry()  # the registry already loaded for this run (startup ran once)
            engine = make_engine(self.config().database_url)
            self._context = Context(self.config(), engine, make_sessionmaker(engine), registry)
        if require_db:
            _require_initialised(self._context)
        return self._context

    def plugin_commands(self, builtin: Iterable[str]) -> dict[str, click.Command]:
        """Commands the enabled plugins add; a load failure is remembered, not raised."""
        if self._plugin_commands is None:
            self._plugin_commands = {}
            try:
                registry = self.registry()
                collector = click.Group("pharmo2o")
                registry.hook.register_commands(cli=collector)
            except Exception as exc:  # --help must work with a broken configuration or plugin
                self.plugin_error = _one_line(exc)
                return self._plugin_commands
            clashes = sorted(set(collector.commands) & set(builtin))
            if clashes:
                self.plugin_error = f"plugin command(s) {', '.join(clashes)} clash with built-in commands and are hidden"
            self._plugin_commands = {k: v for k, v in collector.commands.items() if k not in clashes}
        return self._plugin_commands

    def close(self) -> None:
        if self._context is not None:
            self._context.dispose()
            self._context = None


pass_state = click.make_pass_decorator(State, ensure=True)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _require_initialised(ctx) -> None:
    from . import migrations
    with ctx.engine.connect() as conn:
        branches = migrations.current_branches(ctx, conn)
    if "core" not in branches:
        raise CliError(f"the database {_masked(ctx.config.database_url)} is not initialised: run `pharmo2o init`")
    missing = [n for n in ctx.registry.enabled
               if ctx.registry.available[n].migrations_path is not None and n not in branches]
    if missing:
        raise CliError(f"enabled plugin(s) {', '.join(missing)} have no tables yet: run `pharmo2o init`")


class RootGroup(click.Group):
    """The root group: built-in commands plus the enabled plugins' ones, and
    one-line errors instead of tracebacks."""

    def _plugins(self, ctx: click.Context) -> dict[str, click.Command]:
        return ctx.ensure_object(State).plugin_commands(self.commands)

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._plugins(ctx)))

    def get_command(self, ctx, name):
        return super().get_command(ctx, name) or self._plugins(ctx).get(name)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            error = ctx.ensure_object(State).plugin_error
            if error:
                exc.message += f" (plugin commands are unavailable: {error})"
            raise

    def format_commands(self, ctx, formatter):
        super().format_commands(ctx, formatter)
        error = ctx.ensure_object(State).plugin_error
        if error:
            with formatter.section("Plugin commands"):
                formatter.write_text(f"unavailable: {error}")

    def invoke(self, ctx):
        from alembic.util import CommandError
        from sqlalchemy.exc import OperationalError, ProgrammingError
        try:
            return super().invoke(ctx)
        except ValidationFailed as exc:
            details = [f"{f['field']}: {f['message']}" for f in exc.fields]
            raise CliError("invalid input" if details else exc.detail, exit_code=2, details=details) from exc
        except DomainError as exc:
            raise CliError(exc.detail) from exc
        except (PluginError, ConfigError) as exc:  # LicenseError is a PluginError
            raise CliError(_one_line(exc)) from exc
        except (OperationalError, ProgrammingError) as exc:
            raise CliError(f"database error: {_one_line(exc.orig or exc)}") from exc
        except CommandError as exc:
            raise CliError(f"migration error: {_one_line(exc)}") from exc


def _remember_config(ctx: click.Context, _param, value):
    if value is not None:
        ctx.ensure_object(State).config_path = value
    return value


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=_remember_config, metavar="PATH",
              help="Configuration file (default: $PHARMO2O_CONFIG, else ./pharmo2o.toml).")
@click.version_option(__version__, prog_name="pharmo2o")
@click.pass_context
def cli(cctx: click.Context) -> None:
    """pharmo2o: the modular O2O ERP for pharmacy chains."""
    cctx.call_on_close(cctx.ensure_object(State).close)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    lines = ["  ".join(str(h).upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


# ------------------------------------------------------------------ init / demo

@cli.command()
@pass_state
def init(state: State) -> None:
    """Create or upgrade the database (the core and every enabled plugin).

    Safe to run again: an up-to-date database is left as it is. When the
    configuration file does not exist, a minimal one is written first
    (SQLite file pharmo2o.db in the working directory, no plugins).
    """
    import tomli_w

    from . import migrations
    config = state.config()
    if not config.path.exists():
        config.path.write_text(tomli_w.dumps({"database_url": DEFAULT_DATABASE_URL, "plugins": {"enabled": []}}),
                               encoding="utf-8")
        click.echo(f"wrote {config.path} (database {DEFAULT_DATABASE_URL}, no plugins enabled)")
        config = state.reload_config()
    ctx = state.context(require_db=False)
    with ctx.engine.connect() as conn:
        before = migrations.current_heads(conn)
    targets = migrations.upgrade(ctx)
    with ctx.engine.connect() as conn:
        after = migrations.current_heads(conn)
    what = "already up to date" if before == after else "upgraded"
    click.echo(f"database {_masked(config.database_url)}: {what} (branches: {', '.join(targets)})")


@cli.command()
@pass_state
def demo(state: State) -> None:
    """Load a demo pharmacy chain and print the demo logins.

    Three stores, a catalogue of Rx, OTC-A and OTC-B drugs (one banned from
    online sale, one containing ephedrine, one cold-chain), lot stock with
    different expiries (one lot already expired), staff of every role and a
    few customers. Loading again changes nothing.
    """
    from .demo import DEMO_STORES, load_demo
    result = load_demo(state.context())
    if result.created:
        click.echo(f"loaded the demo chain: {result.stores} stores, {result.products} products, {result.lots} lots "
                   f"(one expired), {result.users} staff users, {result.customers} customers")
    else:
        click.echo(f"the demo chain is already loaded (store {DEMO_STORES[0]['code']} exists): nothing changed")
    click.echo("\ndemo logins (change these passwords before real use):")
    click.echo(_table([[c["username"], c["password"], c["role"], c["store"]] for c in result.credentials],
                      ["username", "password", "role", "store"]))


# ---------------------------------------------------------------------- plugins

@cli.group()
def plugins() -> None:
    """List, enable, disable and purge plugins."""


def _rows_without_registry(state: State) -> tuple[list[dict], str | None]:
    """What `plugins list` can still say when the configured set does not load."""
    from . import licensing
    from .plugins import discover
    config = state.config()
    available = discover(state.extra_plugins)
    try:
        lic, _, _ = licensing.from_config(config)
        lic_note = None
    except LicenseError as exc:
        lic, lic_note = None, _one_line(exc)
    enabled = config.enabled_plugins
    rows = []
    for name in sorted(set(available) | set(enabled)):
        m = available[name].manifest if name in available else None
        rows.append({"name": name, "version": m.version if m else "-",
                     "summary": m.summary if m else "(not installed)", "depends": list(m.depends) if m else [],
                     "enabled": name in enabled,
                     "licensed": "?" if lic_note else (lic is None or name in lic.modules), "hooks": []})
    return rows, lic_note


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def plugins_list(state: State, as_json: bool) -> None:
    """Show the installed plugins: version, enabled, licensed, dependencies."""
    problem = None
    try:
        registry = state.registry()
        rows = registry.describe()
        lic, lic_state = registry.license, registry.license_state
    except PluginError as exc:
        problem = _one_line(exc)
        rows, _ = _rows_without_registry(state)
        lic, lic_state = None, "unknown"
    if as_json:
        click.echo(json.dumps({"plugins": rows, "license": {"state": lic_state, **(lic.as_dict() if lic else {})},
                               "error": problem}, ensure_ascii=False, indent=2))
    else:
        table = [[r["name"], r["version"], _yes(r["enabled"]),
                  r["licensed"] if isinstance(r["licensed"], str) else _yes(r["licensed"]),
                  ", ".join(r["depends"]) or "-", r["summary"]] for r in rows]
        click.echo(_table(table, ["name", "version", "enabled", "licensed", "depends", "summary"]) if rows
                   else "no plugins installed")
        hooked = [r for r in rows if r["hooks"]]
        if hooked:
            click.echo("\nhooks implemented by the enabled plugins:")
            for r in hooked:
                click.echo(f"  {r['name']}: {', '.join(r['hooks'])}")
        if lic is not None:
            click.echo(f"\nlicense: {lic.chain}, {lic_state}, expires {lic.expires.isoformat()}")
        elif lic_state == "none":
            click.echo("\nlicense: none configured (every installed plugin may be enabled)")
    if problem:
        raise CliError(f"the configured plugins do not load: {problem}")


def _audit(ctx, action: str, name: str, before: list[str], after: list[str], detail: str = "") -> None:
    from . import audit
    with ctx.transaction() as session:
        audit.record(session, CLI_ACTOR, action, "plugin", name, before={"enabled": sorted(before)},
                     after={"enabled": sorted(after)}, detail=detail)


@plugins.command("enable")
@click.argument("names", nargs=-1, required=True)
@pass_state
def plugins_enable(state: State, names: tuple[str, ...]) -> None:
    """Enable plugins (and the plugins they depend on) and create their tables.

    Refused for a plugin that is not installed, or one the configured license
    does not name, or when the license has expired.
    """
    from .plugin_admin import enable_plugins
    result = enable_plugins(state.config(), names, CLI_ACTOR, extra_plugins=state.extra_plugins)
    if result.enabled:
        click.echo(f"enabled {', '.join(result.enabled)}"
                   + (f" (and {', '.join(result.dependencies)}, needed as a dependency)" if result.dependencies
                      else ""))
    elif result.dependencies:
        click.echo(f"enabled {', '.join(result.dependencies)}, needed as a dependency")
    if result.migrated:
        click.echo(f"migrated branches: {', '.join(result.migrated)}")
    if result.already:
        click.echo(f"already enabled: {', '.join(result.already)}")


@plugins.command("disable")
@click.argument("names", nargs=-1, required=True)
@pass_state
def plugins_disable(state: State, names: tuple[str, ...]) -> None:
    """Disable plugins; their tables and data are kept.

    Refused while another enabled plugin depends on one of them. Use
    `pharmo2o plugins purge NAME --yes` to delete a disabled plugin's data.
    """
    from .plugin_admin import disable_plugins
    result = disable_plugins(state.config(), names, CLI_ACTOR, extra_plugins=state.extra_plugins)
    if result.disabled:
        click.echo(f"disabled {', '.join(result.disabled)} "
                   "(data kept; `pharmo2o plugins purge NAME --yes` deletes it)")
    if result.not_enabled:
        click.echo(f"not enabled: {', '.join(result.not_enabled)}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.disabled and not result.audited:
        click.echo("note: the database is not initialised, so no audit entry was written", err=True)


@plugins.command("purge")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Confirm that the plugin's tables and data are to be deleted.")
@pass_state
def plugins_purge(state: State, name: str, yes: bool) -> None:
    """Delete a disabled plugin's tables and all their data (downgrade its branch).

    Refused without --yes, while the plugin is enabled, and while another
    plugin depends on it (enabled, or disabled with its tables still there).
    """
    from . import migrations
    if not yes:
        raise CliError(f"purging {name!r} drops its tables and deletes their data for good; "
                       "re-run with --yes to confirm")
    ctx = state.context()
    if name not in ctx.registry.available:
        raise CliError(f"unknown plugin {name!r}; installed: {', '.join(sorted(ctx.registry.available)) or 'none'}")
    applied = migrations.current_branches(ctx)
    migrations.downgrade_plugin(ctx, name)  # refuses an enabled or depended-on plugin
    if name not in applied:
        click.echo(f"nothing to purge: {name!r} has no tables in this database")
        return
    _audit(ctx, "plugin.purge", name, ctx.registry.enabled, ctx.registry.enabled, detail="tables dropped")
    click.echo(f"purged {name!r}: its tables and data are deleted")


# ------------------------------------------------------------------------ users

@cli.group()
def users() -> None:
    """Manage staff users."""


@users.command("create")
@click.argument("username")
@click.option("--role", required=True, metavar="ROLE", help="admin, store_manager, pharmacist or clerk.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="At least 8 characters; asked for (hidden, twice) when omitted.")
@click.option("--store-id", type=int, help="The store the user works in.")
@click.option("--display-name", help="Name shown in the consoles.")
@click.option("--licence-number", help="Pharmacist licence (执业药师注册证) number.")
@click.option("--licence-expiry", metavar="YYYY-MM-DD", help="Pharmacist licence expiry date.")
@pass_state
def users_create(state: State, username: str, role: str, password: str, store_id: int | None,
                 display_name: str | None, licence_number: str | None, licence_expiry: str | None) -> None:
    """Create a staff user (invalid input exits with code 2 naming the field)."""
    from . import people
    from .demo import CLI_CALLER
    data = {"username": username, "role": role, "password": password}
    for key, value in (("store_id", store_id), ("display_name", display_name),
                       ("licence_number", licence_number), ("licence_expiry", licence_expiry)):
        if value is not None:
            data[key] = value
    ctx = state.context()
    with ctx.transaction() as session:
        user = people.create_user(session, data, CLI_CALLER)
        uid = user.id
    click.echo(f"created user {username!r} (id {uid}, role {role})")


# ---------------------------------------------------------------------- license

@cli.group()
def license() -> None:  # noqa: A001 - the command is called "license"
    """Issue (vendor side) and inspect signed licenses."""


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    if path.exists() and not force:
        raise CliError(f"{path} exists: refusing to overwrite it (use --force)")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


@license.command("keygen")
@click.option("--private-out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the vendor's Ed25519 private key (PEM, mode 600). Keep it secret.")
@click.option("--public-out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the public key deployments verify licenses with.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def license_keygen(private_out: Path, public_out: Path, force: bool) -> None:
    """Create a vendor key pair for signing licenses."""
    from .licensing import generate_keypair
    private, public = generate_keypair()
    _write_new(private_out, private, 0o600, force)
    _write_new(public_out, public, 0o644, force)
    click.echo(f"wrote private key {private_out} and public key {public_out}")


@license.command("issue")
@click.option("--private-key", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The vendor's Ed25519 private key (PEM).")
@click.option("--chain", required=True, help="The licensed pharmacy chain.")
@click.option("--modules", required=True, help="Comma-separated plugin names the chain may enable.")
@click.option("--expires", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Last valid day (YYYY-MM-DD).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="License file (default: stdout).")
@pass_state
def license_issue(state: State, private_key: Path, chain: str, modules: str, expires: dt.datetime,
                  out: Path | None) -> None:
    """Sign a license for a chain (vendor side)."""
    from .licensing import issue
    from .plugins import discover
    names = sorted({m.strip() for m in modules.split(",") if m.strip()})
    if not chain.strip():
        raise ValidationFailed.one("chain", "is required")
    expiry = expires.date()
    if expiry < dt.date.today():
        click.echo(f"warning: the license expires in the past ({expiry.isoformat()})", err=True)
    try:
        installed = set(discover(state.extra_plugins))
    except PluginError:
        installed = None
    if installed is not None and set(names) - installed:
        click.echo(f"warning: not installed here: {', '.join(sorted(set(names) - installed))}", err=True)
    try:
        text = issue(private_key.read_bytes(), chain.strip(), names, expiry)
    except ValueError as exc:
        raise LicenseError(f"{private_key} is not a usable private key: {_one_line(exc)}") from exc
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote license for {chain.strip()!r} ({', '.join(names) or 'no modules'}, "
                   f"until {expiry.isoformat()}) to {out}")


@license.command("show")
@pass_state
def license_show(state: State) -> None:
    """Verify the configured license and show what it allows."""
    from .licensing import from_config
    config = state.config()
    lic, lic_state, _ = from_config(config)
    if lic is None:
        click.echo("no license configured: every installed plugin may be enabled")
        return
    click.echo(f"chain:   {lic.chain}")
    click.echo(f"modules: {', '.join(sorted(lic.modules)) or '(none)'}")
    click.echo(f"expires: {lic.expires.isoformat()}")
    click.echo(f"issued:  {lic.issued_at.isoformat()}")
    click.echo(f"state:   {lic_state}")
    if lic_state == "expired":
        click.echo("the license has expired: enabled plugins keep running and all data stays available, "
                   "but no further plugin can be enabled", err=True)
    outside = [n for n in config.enabled_plugins if n not in lic.modules]
    if outside:
        click.echo(f"warning: enabled but not licensed: {', '.join(outside)}", err=True)


# --------------------------------------------------------------------- products

@cli.group()
def products() -> None:
    """Manage the product catalogue."""


@products.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check every row and report, but save nothing.")
@click.option("--errors-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the row errors to this CSV file.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="Rows per commit.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@pass_state
def products_import(state: State, file: Path, dry_run: bool, errors_out: Path | None, chunk_size: int,
                    no_progress: bool) -> None:
    """Create or update products from a UTF-8 CSV file.

    The header names product fields (sku is required; a new product also
    needs generic_name, approval_number, rx_class and price_fen). A row with
    a known sku updates that product; empty cells are left unchanged. Each row
    is saved whole or not at all; the bad ones are listed by row number and
    field. Exit code 1 when any row failed.
    """
    from tqdm import tqdm

    from . import importer
    from .demo import CLI_CALLER
    ctx = state.context()
    with tqdm(total=file.stat().st_size, unit="B", unit_scale=True, desc=f"importing {file.name}",
              file=sys.stderr, disable=no_progress, leave=False) as bar:
        def on_row(report):
            if report.rows % 100 == 0:
                bar.set_postfix(rows=report.rows, failed=report.failed, refresh=False)

        report = importer.import_products(ctx, file, CLI_CALLER, dry_run=dry_run, chunk_size=chunk_size,
                                          progress=bar.update, on_row=on_row)
    lines = importer.error_lines(report)
    limit = 100
    for line in lines[:limit]:
        click.echo(line)
    if len(lines) > limit:
        click.echo(f"... and {len(lines) - limit} more" + ("" if errors_out else " (use --errors-out FILE)"))
    if errors_out:
        importer.write_error_report(report, errors_out)
        click.echo(f"row errors written to {errors_out}")
    click.echo(f"{report.rows} rows: created {report.created}, updated {report.updated}, failed {report.failed}"
               + (" (dry run: nothing was saved)" if dry_run else ""))
    if report.stopped:
        click.echo(f"error: reading stopped early: {report.stopped}", err=True)
    if not report.ok:
        raise click.exceptions.Exit(1)


# ----------------------------------------------------------------- outbox, orders

@cli.group()
def outbox() -> None:
    """Deliver queued messages to the outside world."""


@outbox.command("run")
@click.option("--once", is_flag=True, help="Deliver what is due once and exit.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between rounds.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Messages per round.")
@pass_state
def outbox_run(state: State, once: bool, interval: float, limit: int) -> None:
    """Send due outbox messages, retrying failures with backoff (until Ctrl-C)."""
    from .outbox import dispatch
    ctx = state.context()
    try:
        while True:
            result = dispatch(ctx, limit=limit)
            handled = result.sent + result.failed + result.dead
            if handled or once:
                click.echo(f"sent {result.sent}, failed {result.failed} (will retry), dead {result.dead}")
            if once:
                return
            if handled < limit:
                time.sleep(interval)
    except KeyboardInterrupt:
        click.echo("stopped")


@cli.group()
def orders() -> None:
    """Order maintenance."""


@orders.command("expire")
@pass_state
def orders_expire(state: State) -> None:
    """Cancel unpaid orders past their deadline and release their stock."""
    from .orders import expire_unpaid
    ctx = state.context()
    total = 0
    while True:
        done = expire_unpaid(ctx, limit=500)
        total += done
        if done < 500:
            break
    click.echo(f"expired {total} unpaid order(s)")


# ------------------------------------------------------------------------ jobs, serve

@cli.command()
@click.option("--once", is_flag=True, help="Run every job once and exit.")
@pass_state
def worker(state: State, once: bool) -> None:
    """Run the periodic jobs (outbox delivery, unpaid-order expiry, plugins' jobs) until stopped."""
    import logging
    from .jobs import jobs_of, run_due, run_forever
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx = state.context()
    if once:
        for name, result in run_due(ctx, jobs_of(ctx.registry), {}).items():
            click.echo(f"{name}: {'failed: ' + str(result) if isinstance(result, Exception) else result or 'nothing to do'}")
        return
    try:
        run_forever(ctx)
    except KeyboardInterrupt:
        click.echo("stopped")


@cli.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True, metavar="HOST:PORT", help="Address to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--jobs/--no-jobs", default=True, show_default=True,
              help="Also run the periodic jobs (`pharmo2o worker`) in a child process.")
@pass_state
def serve(state: State, bind: str, workers: int, jobs: bool) -> None:
    """Serve the REST API with gunicorn (and, by default, the periodic jobs beside it)."""
    import subprocess
    import sys
    from .api.server import serve as run_server
    state.context()  # refuse an uninitialised database before starting anything
    runner = None
    if jobs:
        args = [sys.executable, "-m", "core.cli"]
        if state.config_path:
            args += ["--config", str(state.config_path)]
        runner = subprocess.Popen(args + ["worker"])
    try:
        run_server(state.config_path, bind, workers)
    finally:
        if runner is not None:
            runner.terminate()
            try:
                runner.wait(timeout=10)
            except subprocess.TimeoutExpired:
                runner.kill()


def main(argv: list[str] | None = None):
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="pharmo2o")


if __name__ == "__main__":  # pragma: no cover
    main()
