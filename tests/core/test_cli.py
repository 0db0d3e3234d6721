"""The ``pharmo2o`` command line, run against a real database of the backend under test."""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

import click
import pytest
import tomli_w
from click.testing import CliRunner
from sqlalchemy import inspect, select, text, update

from core import catalog, demo, migrations, outbox, people, stock
from core import orders as order_service
from core.auth import Caller, verify_password
from core.cli import cli
from core.models import ROLES, AuditEntry, Customer, Order, OutboxMessage, Product, StockLot, Store, User
from tests.core.clitools import clean_environment, initialised, run, third_party  # noqa: F401  (fixtures)

ADMIN = Caller(role="admin", user_id=1, name="admin")
CORE_TABLES = {"stores", "products", "customers", "users", "stock_lots", "stock_movements", "orders",
               "order_lines", "audit_log", "outbox"}


def tables(ctx) -> set[str]:
    return set(inspect(ctx.engine).get_table_names())


def plugin_audit(ctx) -> list[tuple[str, str, str]]:
    with ctx.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action.like("plugin.%")).order_by(AuditEntry.id)).all()
        return [(r.action, r.entity_id, r.actor) for r in rows]


# ------------------------------------------------------------------------- help

def _command_paths(group: click.Group, prefix=()):
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _command_paths(command, (*prefix, name))


def test_every_command_has_help(tmp_path, monkeypatch):
    clean_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    paths = list(_command_paths(cli))
    names = {" ".join(p) for p, _ in paths}
    assert {"init", "demo", "serve", "plugins list", "plugins enable", "plugins disable", "plugins purge",
            "users create", "license keygen", "license issue", "license show", "products import",
            "outbox run", "orders expire"} <= names
    for path, command in [((), cli), *paths]:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        assert command.help and command.help.strip(), f"{' '.join(path)} has no help text"
    assert not (tmp_path / "pharmo2o.toml").exists()  # --help writes nothing


def test_help_survives_a_broken_configuration_and_commands_say_why(tmp_path, monkeypatch):
    clean_environment(monkeypatch)
    broken = tmp_path / "broken.toml"
    broken.write_text("database_url = [unterminated\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(broken), "--help"])
    assert result.exit_code == 0
    assert "init" in result.output and "Plugin commands" in result.output
    assert "not valid TOML" in result.output
    result = CliRunner().invoke(cli, ["--config", str(broken), "init"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "not valid TOML" in result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    # an unknown command mentions that plugin commands could not be loaded
    result = CliRunner().invoke(cli, ["--config", str(broken), "fixture-notes"])
    assert result.exit_code == 2 and "plugin commands are unavailable" in result.stderr


def test_console_script_prints_one_error_line_not_a_traceback(run):
    exe = Path(sys.executable).with_name("pharmo2o")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHARMO2O_") or k.startswith("PHARMO2O_TEST_")}
    helped = subprocess.run([str(exe), "--help"], capture_output=True, text=True, env=env, cwd=run.config.parent)
    assert helped.returncode == 0 and "plugins" in helped.stdout
    refused = subprocess.run([str(exe), "--config", str(run.config), "demo"], capture_output=True, text=True,
                             env=env)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert refused.stderr.startswith("error: ") and "pharmo2o init" in refused.stderr


# ------------------------------------------------------------------------- init

def test_init_creates_the_schema_then_is_idempotent(run):
    first = run.ok("init")
    assert "upgraded" in first.stdout
    ctx = run.context()
    assert CORE_TABLES <= tables(ctx)
    with ctx.engine.connect() as conn:
        heads = migrations.current_heads(conn)
    assert heads and migrations.current_branches(ctx) == {"core"}
    with ctx.transaction() as s:
        people.create_store(s, {"code": "KEEP", "name": "kept"}, ADMIN)
    second = run.ok("init")
    assert "already up to date" in second.stdout
    with ctx.engine.connect() as conn:
        assert migrations.current_heads(conn) == heads
    with ctx.session() as s:
        assert s.scalar(select(Store.name).where(Store.code == "KEEP")) == "kept"


def test_init_writes_a_default_configuration_when_there_is_none(pharmo2o_databases, tmp_path, monkeypatch):
    import tomllib
    clean_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    url = pharmo2o_databases.fresh([], (), tmp_path, migrated=False)
    monkeypatch.setenv("PHARMO2O_CONFIG", str(tmp_path / "site.toml"))
    monkeypatch.setenv("PHARMO2O_DATABASE_URL", url)  # the environment overrides the file's default
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout
    written = tomllib.loads((tmp_path / "site.toml").read_text(encoding="utf-8"))
    assert written == {"database_url": "sqlite:///pharmo2o.db", "plugins": {"enabled": []}}
    assert not (tmp_path / "pharmo2o.db").exists()
    from core.config import load_config
    from core.context import Context
    ctx = Context.create(load_config())
    try:
        assert "core" in migrations.current_branches(ctx)
    finally:
        ctx.dispose()
    again = CliRunner().invoke(cli, ["init"])
    assert again.exit_code == 0 and "wrote" not in again.stdout and "already up to date" in again.stdout


def test_commands_refuse_an_uninitialised_database(run):
    for args in (["demo"], ["users", "create", "bob", "--role", "clerk", "--password", "long-enough"],
                 ["orders", "expire"]):
        result = run(*args)
        assert result.exit_code == 1, args
        assert "is not initialised: run `pharmo2o init`" in result.stderr


# ------------------------------------------------------------------------- demo

def test_demo_loads_a_realistic_chain_once(initialised):
    run = initialised
    first = run.ok("demo")
    for cred in demo.credentials():
        assert cred["username"] in first.stdout and cred["password"] in first.stdout
    ctx = run.context()
    today = stock.today_utc()
    with ctx.session() as s:
        before = demo.counts(s)
        stores = s.scalars(select(Store)).all()
        assert len(stores) == 3
        products = s.scalars(select(Product)).all()
        assert len(products) >= 40
        classes = Counter(p.rx_class for p in products)
        assert min(classes[c] for c in ("rx", "otc_a", "otc_b")) >= 5, classes
        assert all(catalog.APPROVAL_NUMBER_RE.match(p.approval_number) for p in products)
        assert len({p.sku for p in products}) == len(products)
        assert [p.generic_name for p in products if p.online_banned]
        ephedrine = [p for p in products if p.ephedrine]
        assert ephedrine and all(p.rx_class != "rx" for p in ephedrine)
        lots = s.scalars(select(StockLot)).all()
        expired = [lot for lot in lots if not stock.sellable(lot, today)]
        assert [lot.lot_no for lot in expired] == [demo.EXPIRED_LOT_NO]
        assert expired[0].on_hand > 0 and expired[0].expiry < today
        for store in stores:
            expiries = {lot.expiry for lot in lots if lot.store_id == store.id and stock.sellable(lot, today)}
            assert len(expiries) >= 10, store.code
        assert stock.verify(s) == []
        users = s.scalars(select(User)).all()
        assert {u.role for u in users} == set(ROLES)
        for store in stores:
            assert {u.role for u in users if u.store_id == store.id} == {"store_manager", "pharmacist", "clerk"}
        for pharmacist in (u for u in users if u.role == "pharmacist"):
            assert pharmacist.licence_number and pharmacist.licence_expiry > today
        admin = next(u for u in users if u.role == "admin")
        password = next(c["password"] for c in demo.credentials() if c["username"] == admin.username)
        assert verify_password(admin.password_hash, password)
        assert s.scalar(select(Customer.id).limit(1)) is not None
        assert before["customers"] >= 3
    # FEFO never hands out the expired lot, even when every sellable unit is asked for (rolled back)
    session = ctx.sessions()
    try:
        with session.begin():
            lot = session.scalars(select(StockLot).where(StockLot.lot_no == demo.EXPIRED_LOT_NO)).one()
            sellable = sum(x.on_hand - x.reserved for x in stock.on_hand(session, lot.store_id, lot.product_id)
                           if stock.sellable(x, today))
            taken = stock.reserve_fefo(ctx, session, lot.store_id, lot.product_id, sellable, order_id=None,
                                       actor="test")
            assert sellable > 0 and lot.id not in {t.id for t, _ in taken}
            session.rollback()
    finally:
        session.close()
    second = run.ok("demo")
    assert "already loaded" in second.stdout
    assert "demo.admin" in second.stdout
    with ctx.session() as s:
        assert demo.counts(s) == before


# ---------------------------------------------------------------------- plugins

def test_enable_disable_purge_a_third_party_plugin(initialised, third_party):
    run = initialised
    listed = json.loads(run.ok("plugins", "list", "--json").stdout)
    names = {p["name"]: p for p in listed["plugins"]}
    assert {"loyalty", "pos_sync", "prescription_review", "wechat_channel", "p2o_fixture"} <= set(names)
    assert names["p2o_fixture_child"]["depends"] == ["p2o_fixture"] and not names["p2o_fixture"]["enabled"]
    assert "fixture-notes" not in run.ok("--help").stdout

    enabled = run.ok("plugins", "enable", "p2o_fixture_child")
    assert "p2o_fixture, needed as a dependency" in enabled.stdout
    assert run.settings()["plugins"]["enabled"] == ["p2o_fixture", "p2o_fixture_child"]
    ctx = run.context(["p2o_fixture", "p2o_fixture_child"])
    assert {"p2o_fixture_notes", "p2o_fixture_child_rows"} <= tables(ctx)
    assert migrations.current_branches(ctx) == {"core", "p2o_fixture", "p2o_fixture_child"}
    with ctx.transaction() as s:
        store = people.create_store(s, {"code": "S1", "name": "一号店"}, ADMIN)
        s.execute(text("INSERT INTO p2o_fixture_notes (store_id, body) VALUES (:s, '盘点')"), {"s": store.id})
        s.execute(text("INSERT INTO p2o_fixture_child_rows (note_id) SELECT id FROM p2o_fixture_notes"))
    # the plugin's command exists while it is enabled
    assert "fixture-notes" in run.ok("--help").stdout
    assert run.ok("fixture-notes").stdout.strip() == "p2o_fixture notes: 1"

    refused = run("plugins", "disable", "p2o_fixture")
    assert refused.exit_code == 1 and "p2o_fixture_child depend on it" in refused.stderr
    assert run.settings()["plugins"]["enabled"] == ["p2o_fixture", "p2o_fixture_child"]

    run.ok("plugins", "disable", "p2o_fixture_child")
    assert run.settings()["plugins"]["enabled"] == ["p2o_fixture"]
    with ctx.session() as s:  # data kept
        assert s.execute(text("SELECT count(*) FROM p2o_fixture_child_rows")).scalar_one() == 1

    no_yes = run("plugins", "purge", "p2o_fixture")
    assert no_yes.exit_code == 1 and "--yes" in no_yes.stderr
    while_enabled = run("plugins", "purge", "p2o_fixture", "--yes")
    assert while_enabled.exit_code == 1 and "is enabled" in while_enabled.stderr
    run.ok("plugins", "disable", "p2o_fixture")
    gone = run("fixture-notes")
    assert gone.exit_code == 2 and "No such command" in gone.stderr
    held = run("plugins", "purge", "p2o_fixture", "--yes")  # the child's rows point at its table
    assert held.exit_code == 1 and "p2o_fixture_child" in held.stderr
    assert {"p2o_fixture_notes", "p2o_fixture_child_rows"} <= tables(ctx)

    run.ok("plugins", "purge", "p2o_fixture_child", "--yes")
    assert "p2o_fixture_child_rows" not in tables(ctx) and "p2o_fixture_notes" in tables(ctx)
    run.ok("plugins", "purge", "p2o_fixture", "--yes")
    assert "p2o_fixture_notes" not in tables(ctx)
    assert CORE_TABLES <= tables(ctx)
    assert migrations.current_branches(ctx) == {"core"}
    with ctx.session() as s:
        assert s.scalar(select(Store.name).where(Store.code == "S1")) == "一号店"
    again = run.ok("plugins", "purge", "p2o_fixture", "--yes")
    assert "nothing to purge" in again.stdout
    assert plugin_audit(ctx) == [
        ("plugin.enable", "p2o_fixture", "cli"), ("plugin.enable", "p2o_fixture_child", "cli"),
        ("plugin.disable", "p2o_fixture_child", "cli"), ("plugin.disable", "p2o_fixture", "cli"),
        ("plugin.purge", "p2o_fixture_child", "cli"), ("plugin.purge", "p2o_fixture", "cli"),
    ]
    # enabling again recreates an empty table
    run.ok("plugins", "enable", "p2o_fixture")
    with ctx.session() as s:
        assert s.execute(text("SELECT count(*) FROM p2o_fixture_notes")).scalar_one() == 0


def test_hook_register_commands(pharmo2o_databases, tmp_path, monkeypatch):
    """An enabled plugin's ``register_commands`` adds a working command; a disabled one's does not."""
    from core.cli import State
    from tests.core import fixture_plugin
    clean_environment(monkeypatch)
    url = pharmo2o_databases.fresh(["p2o_fixture"], [fixture_plugin], tmp_path)
    config = tmp_path / "pharmo2o.toml"

    def invoke(enabled, *args):
        config.write_text(tomli_w.dumps({"database_url": url, "plugins": {"enabled": enabled}}), encoding="utf-8")
        return CliRunner().invoke(cli, list(args), obj=State(str(config), extra_plugins=[fixture_plugin]))

    helped = invoke(["p2o_fixture"], "--help")
    assert helped.exit_code == 0 and "fixture-notes  Count the fixture plugin's notes." in helped.stdout
    ran = invoke(["p2o_fixture"], "fixture-notes")
    assert ran.exit_code == 0 and ran.stdout.strip() == "p2o_fixture notes: 0"
    assert "fixture-notes" not in invoke([], "--help").stdout
    missing = invoke([], "fixture-notes")
    assert missing.exit_code == 2 and "No such command 'fixture-notes'" in missing.stderr


def test_enable_refuses_unknown_plugins_and_changes_nothing(initialised):
    result = initialised("plugins", "enable", "loyalty", "no_such_plugin")
    assert result.exit_code == 1
    assert "unknown plugin(s) 'no_such_plugin'" in result.stderr
    installed = result.stderr.split("installed: ", 1)[1].strip().split(", ")  # third-party ones may be there too
    assert {"loyalty", "pos_sync", "prescription_review", "wechat_channel"} <= set(installed)
    assert installed == sorted(installed)
    assert initialised.settings()["plugins"]["enabled"] == []
    assert "loyalty" not in migrations.current_branches(initialised.context())


def test_enable_and_disable_bundled_plugins(initialised):
    run = initialised
    result = run.ok("plugins", "enable", "loyalty", "pos_sync")
    assert "migrated branches: core, loyalty, pos_sync" in result.stdout
    assert run.settings()["plugins"]["enabled"] == ["loyalty", "pos_sync"]
    assert "already enabled: loyalty" in run.ok("plugins", "enable", "loyalty").stdout
    ctx = run.context()
    assert {"loyalty", "pos_sync"} <= migrations.current_branches(ctx)
    listed = {p["name"]: p["enabled"] for p in json.loads(run.ok("plugins", "list", "--json").stdout)["plugins"]}
    bundled = {name: listed[name] for name in ("loyalty", "pos_sync", "prescription_review", "wechat_channel")}
    assert bundled == {"loyalty": True, "pos_sync": True, "prescription_review": False, "wechat_channel": False}
    assert [name for name, enabled in listed.items() if enabled] == ["loyalty", "pos_sync"]
    run.ok("plugins", "disable", "pos_sync")
    assert run.settings()["plugins"]["enabled"] == ["loyalty"]
    assert "pos_sync" in migrations.current_branches(ctx)  # disabling keeps the branch (and data)
    assert plugin_audit(ctx) == [("plugin.enable", "loyalty", "cli"), ("plugin.enable", "pos_sync", "cli"),
                                 ("plugin.disable", "pos_sync", "cli")]


def test_enable_refuses_when_the_environment_fixes_the_plugins(initialised, monkeypatch):
    monkeypatch.setenv("PHARMO2O_PLUGINS", "loyalty")
    result = initialised("plugins", "enable", "pos_sync")
    assert result.exit_code == 1 and "PHARMO2O_PLUGINS" in result.stderr
    assert initialised.settings()["plugins"]["enabled"] == []


def test_a_configuration_naming_a_missing_plugin_can_be_repaired(initialised):
    run = initialised
    run.update(plugins={"enabled": ["ghost"]})
    refused = run("demo")
    assert refused.exit_code == 1 and "'ghost'" in refused.stderr and "not installed" in refused.stderr
    listing = run("plugins", "list")
    assert listing.exit_code == 1 and "(not installed)" in listing.stdout and "loyalty" in listing.stdout
    assert run("plugins", "enable", "loyalty").exit_code == 1
    run.ok("plugins", "disable", "ghost")
    assert run.settings()["plugins"]["enabled"] == []
    run.ok("plugins", "enable", "loyalty")


# ---------------------------------------------------------------------- license

def _tamper(license_text: str) -> str:
    payload, signature = license_text.strip().split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["modules"].append("pos_sync")
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{forged}.{signature}"


def test_license_keygen_issue_show_and_enable_refusals(initialised, tmp_path):
    run = initialised
    private, public, lic = tmp_path / "vendor.pem", tmp_path / "vendor.pub", tmp_path / "chain.lic"
    run.ok("license", "keygen", "--private-out", str(private), "--public-out", str(public))
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert run("license", "keygen", "--private-out", str(private), "--public-out", str(public)).exit_code == 1
    future = (dt.date.today() + dt.timedelta(days=365)).isoformat()
    run.ok("license", "issue", "--private-key", str(private), "--chain", "仁和连锁", "--modules", "loyalty",
           "--expires", future, "--out", str(lic))
    assert "license: none configured" in run.ok("plugins", "list").stdout
    run.update(license={"file": str(lic), "public_key": str(public)})
    shown = run.ok("license", "show").stdout
    assert "仁和连锁" in shown and "modules: loyalty" in shown and f"expires: {future}" in shown
    assert "state:   valid" in shown

    refused = run("plugins", "enable", "pos_sync")
    assert refused.exit_code == 1
    assert "does not include 'pos_sync'" in refused.stderr and "licensed modules: loyalty" in refused.stderr
    assert run.settings()["plugins"]["enabled"] == []
    assert "pos_sync" not in migrations.current_branches(run.context())
    run.ok("plugins", "enable", "loyalty")
    assert run.settings()["plugins"]["enabled"] == ["loyalty"]

    # an expired license keeps what is enabled running but allows nothing more
    past = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    issued = run.ok("license", "issue", "--private-key", str(private), "--chain", "仁和连锁", "--modules",
                    "loyalty,prescription_review", "--expires", past, "--out", str(lic))
    assert "in the past" in issued.stderr
    assert "state:   expired" in run.ok("license", "show").stdout
    expired = run("plugins", "enable", "prescription_review")
    assert expired.exit_code == 1 and "expired" in expired.stderr
    listed = json.loads(run.ok("plugins", "list", "--json").stdout)
    assert listed["license"]["state"] == "expired"
    assert {p["name"]: p["enabled"] for p in listed["plugins"]}["loyalty"] is True

    lic.write_text(_tamper(lic.read_text()), encoding="utf-8")
    forged = run("license", "show")
    assert forged.exit_code == 1 and forged.stderr.startswith("error: ") and "signature" in forged.stderr


def test_license_issue_to_stdout_verifies_with_the_public_key(tmp_path, monkeypatch):
    from core import licensing
    clean_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    runner = CliRunner()
    assert runner.invoke(cli, ["license", "keygen", "--private-out", str(private),
                               "--public-out", str(public)]).exit_code == 0
    result = runner.invoke(cli, ["license", "issue", "--private-key", str(private), "--chain", "Acme",
                                 "--modules", "pos_sync, loyalty", "--expires", "2031-06-30"])
    assert result.exit_code == 0, result.output
    lic = licensing.verify(result.stdout.strip(), public.read_bytes())
    assert lic.chain == "Acme" and lic.modules == {"loyalty", "pos_sync"} and lic.expires == dt.date(2031, 6, 30)
    bad = runner.invoke(cli, ["license", "issue", "--private-key", str(private), "--chain", "Acme",
                              "--modules", "loyalty", "--expires", "30/06/2031"])
    assert bad.exit_code == 2 and "--expires" in bad.stderr


# ------------------------------------------------------------------------ users

def test_users_create_validates_and_exits_2_naming_the_field(initialised):
    run = initialised
    cases = [
        (["--role", "chef", "--password", "long-enough-1"], "role"),
        (["--role", "clerk", "--password", "short"], "password"),
        (["--role", "clerk", "--password", "long-enough-1", "--store-id", "999"], "store_id"),
        (["--role", "pharmacist", "--password", "long-enough-1", "--licence-expiry", "31/12/2030"],
         "licence_expiry"),
    ]
    for args, field in cases:
        result = run("users", "create", "bob", *args)
        assert result.exit_code == 2, (args, result.output)
        assert f"  {field}: " in result.stderr, result.stderr
        assert "Traceback" not in result.output
    bad_name = run("users", "create", "x", "--role", "clerk", "--password", "long-enough-1")
    assert bad_name.exit_code == 2 and "username" in bad_name.stderr
    with run.context().session() as s:
        assert s.scalar(select(User.id).limit(1)) is None


def test_users_create_with_options_and_with_a_prompted_password(initialised):
    run = initialised
    ctx = run.context()
    with ctx.transaction() as s:
        store_id = people.create_store(s, {"code": "S9", "name": "九号店"}, ADMIN).id
    created = run.ok("users", "create", "wang.jing", "--role", "pharmacist", "--password", "s3cret-pass",
                     "--store-id", str(store_id), "--licence-number", "YS3101202300118",
                     "--licence-expiry", "2030-12-31", "--display-name", "王静")
    assert "wang.jing" in created.stdout
    prompted = run.ok("users", "create", "clerk1", "--role", "clerk", input="typed-secret\ntyped-secret\n")
    assert "typed-secret" not in prompted.stdout  # hidden input
    with ctx.session() as s:
        pharmacist = s.scalars(select(User).where(User.username == "wang.jing")).one()
        assert (pharmacist.role, pharmacist.store_id, pharmacist.licence_number, pharmacist.licence_expiry,
                pharmacist.display_name) == ("pharmacist", store_id, "YS3101202300118", dt.date(2030, 12, 31), "王静")
        assert verify_password(pharmacist.password_hash, "s3cret-pass")
        clerk = s.scalars(select(User).where(User.username == "clerk1")).one()
        assert verify_password(clerk.password_hash, "typed-secret")
        assert s.scalars(select(AuditEntry.action).where(AuditEntry.action == "user.create")).all() == \
            ["user.create"] * 2
    taken = run("users", "create", "clerk1", "--role", "clerk", "--password", "another-pass")
    assert taken.exit_code == 2 and "username" in taken.stderr


# ------------------------------------------------------------- outbox, orders, serve

def test_outbox_run_once_delivers_due_messages(initialised):
    ctx = initialised.context()
    assert "sent 0" in initialised.ok("outbox", "run", "--once").stdout
    with ctx.transaction() as s:
        msg_id = outbox.enqueue(s, "log", {"text": "取药提醒"}).id
    assert "sent 1, failed 0" in initialised.ok("outbox", "run", "--once").stdout
    with ctx.session() as s:
        assert s.get(OutboxMessage, msg_id).status == "sent"


def test_orders_expire_cancels_overdue_unpaid_orders(initialised):
    ctx = initialised.context()
    with ctx.transaction() as s:
        store = people.create_store(s, {"code": "S1", "name": "一号店"}, ADMIN)
        product = catalog.create_product(s, {"sku": "P1", "generic_name": "维生素C片", "rx_class": "otc_b",
                                             "approval_number": "国药准字H32020863", "price_fen": 350}, ADMIN)
        stock.receive(ctx, s, store.id, product.id, "L1", dt.date.today() + dt.timedelta(days=200), 5, ADMIN)
        order, _ = order_service.create_order(ctx, s, store_id=store.id, channel="store", fulfilment="pickup",
                                              lines=[{"product_id": product.id, "quantity": 2}], caller=ADMIN)
        order_id = order.id
    assert "expired 0" in initialised.ok("orders", "expire").stdout
    with ctx.transaction() as s:
        s.execute(update(Order).where(Order.id == order_id)
                  .values(expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)))
    assert "expired 1" in initialised.ok("orders", "expire").stdout
    with ctx.session() as s:
        assert s.get(Order, order_id).status == "cancelled"
        assert sum(lot.reserved for lot in stock.on_hand(s, store.id)) == 0


def test_serve_hands_over_to_the_api_server(initialised, monkeypatch):
    calls = []
    fake = types.ModuleType("core.api.server")
    fake.serve = lambda config_path, bind, workers: calls.append((config_path, bind, workers))
    monkeypatch.setitem(sys.modules, "core.api.server", fake)
    initialised.ok("serve", "--no-jobs")
    initialised.ok("serve", "--bind", "0.0.0.0:9000", "--workers", "4", "--no-jobs")
    assert calls == [(str(initialised.config), "127.0.0.1:8000", 2), (str(initialised.config), "0.0.0.0:9000", 4)]
    assert initialised("serve", "--workers", "0").exit_code == 2


def test_serve_runs_the_job_runner_beside_gunicorn_and_stops_it(initialised, monkeypatch):
    import subprocess
    started = []
    real_popen = subprocess.Popen

    def spy(args, *a, **kw):
        proc = real_popen(args, *a, **kw)
        started.append((args, proc))
        return proc
    monkeypatch.setattr(subprocess, "Popen", spy)
    fake = types.ModuleType("core.api.server")
    fake.serve = lambda config_path, bind, workers: None
    monkeypatch.setitem(sys.modules, "core.api.server", fake)
    initialised.ok("serve")
    [(args, proc)] = started
    assert args[-3:] == ["--config", str(initialised.config), "worker"]
    assert proc.poll() is not None  # stopped when the server returned


def test_worker_once_runs_every_job(initialised):
    ctx = initialised.context()
    with ctx.transaction() as s:
        msg_id = outbox.enqueue(s, "log", {"text": "到店取药"}).id
    out = initialised.ok("worker", "--once").stdout
    assert "outbox.dispatch: sent 1, failed 0, dead 0" in out and "orders.expire_unpaid: nothing to do" in out
    with ctx.session() as s:
        assert s.get(OutboxMessage, msg_id).status == "sent"


def test_global_config_option_and_environment(initialised, monkeypatch, tmp_path):
    # PHARMO2O_CONFIG names the file when --config is not given
    monkeypatch.setenv("PHARMO2O_CONFIG", str(initialised.config))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    other = tmp_path / "other.toml"
    other.write_text(tomli_w.dumps({"database_url": initialised.url, "plugins": {"enabled": ["loyalty"]}}),
                     encoding="utf-8")
    listed = CliRunner().invoke(cli, ["--config", str(other), "plugins", "list", "--json"])
    assert {p["name"]: p["enabled"] for p in json.loads(listed.stdout)["plugins"]}["loyalty"] is True


@pytest.mark.parametrize("args", [["plugins", "enable"], ["products", "import"], ["users", "create"]])
def test_missing_arguments_are_usage_errors(run, args):
    result = run(*args)
    assert result.exit_code == 2 and "Usage:" in result.stderr
