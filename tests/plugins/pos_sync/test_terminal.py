"""The reference terminal against a real gunicorn server: the server dies mid-sync, an answer is
lost on the way back; afterwards every sale is on the server exactly once and off the queue."""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner
from sqlalchemy import func, select

from core import stock
from core.cli import cli
from core.models import Order, OrderLine
from plugins.pos_sync import terminal
from plugins.pos_sync.models import PosSale

from .helpers import FAST, pos_ctx, shop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn serving the test database (pos_sync enabled), started and killed at will."""

    def __init__(self, ctx, tmp_path: Path):
        self.config = tmp_path / "server.toml"
        settings = {}
        for key, value in FAST.items():
            section, name = key.split(".")
            settings.setdefault(section, {})[name] = value
        self.config.write_text(tomli_w.dumps({"database_url": ctx.config.database_url,
                                              "plugins": {"enabled": ["pos_sync"]}, **settings}), encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp_path
        self.proc = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHARMO2O_")}
        code = f"from core.api.server import serve; serve({str(self.config)!r}, '127.0.0.1:{self.port}', 1)"
        self.log = open(self.tmp / "gunicorn.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=self.tmp, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((self.tmp / "gunicorn.log").read_text(errors="replace")[-3000:])
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole server (master and worker): whatever it was doing is cut off."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        self.proc = None
        self.log.close()


@pytest.fixture
def setup(make_ctx, tmp_path):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx, products=4, stock=2000)
    server = Server(ctx, tmp_path)
    server.start()
    yield ctx, sh, server
    server.kill()


def till(tmp_path, server, sh, name="till.db") -> terminal.TerminalDB:
    db = terminal.TerminalDB(tmp_path / name)
    with db.tx():
        db.set("server", server.url)
        db.set("secret", sh.secret)
    return db


def queue_sales(db, product_ids, n, seed=7):
    rnd = random.Random(seed)
    for _ in range(n):
        db.record_sale([(pid, rnd.randint(1, 2)) for pid in rnd.sample(product_ids, 2)])


def server_side(ctx):
    with ctx.session() as s:
        ids = set(s.scalars(select(PosSale.client_sale_id).where(PosSale.status == "accepted")))
        orders = s.scalar(select(func.count()).select_from(Order).where(Order.channel == "pos"))
        units = s.scalar(select(func.coalesce(func.sum(OrderLine.quantity), 0)))
        assert stock.verify(s) == []
        return ids, orders, units


def local_ids(db, *statuses):
    marks = ",".join("?" * len(statuses))
    return {r[0] for r in db.conn.execute(f"SELECT client_sale_id FROM sales WHERE status IN ({marks})", statuses)}


def test_the_server_killed_mid_sync_loses_and_duplicates_nothing(setup, tmp_path):
    ctx, sh, server = setup
    db = till(tmp_path, server, sh)
    client = terminal.Client(server.url, sh.secret, db.database_id, timeout=10)
    terminal.pull(db, client, say=lambda m: None)
    n = 300
    queue_sales(db, sh.product_ids, n)
    units = sum(l["quantity"] for s in db.queued(n) for l in s["lines"])
    said, outcome = [], {}

    def run():
        worker_db = terminal.TerminalDB(db.path)  # the sync runs like its own process would
        try:
            outcome["report"] = terminal.sync(worker_db, terminal.Client(server.url, sh.secret, worker_db.database_id,
                                                                         timeout=10),
                                              batch=40, retries=-1, wait=0.2, say=said.append)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc
        finally:
            worker_db.close()

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while len(server_side(ctx)[0]) < 60:  # part of the queue is on the server...
        assert time.monotonic() < deadline and thread.is_alive(), (outcome, said)
        time.sleep(0.05)
    server.kill()  # ...when the server dies, in the middle of a batch or between two
    time.sleep(1.0)
    assert thread.is_alive() and any("unreachable" in m for m in said), said
    server.start()
    thread.join(timeout=120)
    assert not thread.is_alive() and "error" not in outcome, (outcome, said[-5:])
    report = outcome["report"]
    assert report.left == 0 and report.rejected == 0 and report.retries >= 1
    assert report.accepted + report.duplicate == n
    ids, orders, sold = server_side(ctx)
    assert ids == local_ids(db, "accepted", "duplicate") and len(ids) == n == orders
    assert sold == units
    assert db.counts()["queued"] == 0
    assert any(m.startswith(f"synced {n}/{n}") for m in said), said[-3:]


class DroppingProxy:
    """A TCP proxy that lets chosen POSTs reach the server but drops the answer on the way back."""

    def __init__(self, upstream_port: int, drop_posts: set[int]):
        self.upstream = upstream_port
        self.drop_posts = drop_posts
        self.posts = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client):
        up = socket.create_connection(("127.0.0.1", self.upstream))
        first = client.recv(65536)
        drop = False
        if first.startswith(b"POST"):
            self.posts += 1
            drop = self.posts in self.drop_posts

        def forward():
            data = first
            while data:
                up.sendall(data)
                data = client.recv(65536)
        threading.Thread(target=forward, daemon=True).start()
        answer = b""
        while chunk := up.recv(65536):
            answer += chunk
        if not drop:
            client.sendall(answer)
        try:
            client.shutdown(socket.SHUT_RDWR)  # a dropped answer: the connection just ends
        except OSError:
            pass
        client.close()
        up.close()

    def close(self):
        self.sock.close()


def test_a_lost_answer_is_resent_and_answered_duplicate_through_the_cli(setup, tmp_path):
    ctx, sh, server = setup
    proxy = DroppingProxy(server.port, drop_posts={2})
    config = tmp_path / "terminal.toml"
    config.write_text(tomli_w.dumps({"plugins": {"enabled": ["pos_sync"]}}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHARMO2O_")}
    runner = CliRunner(env={**{k: None for k in os.environ if k.startswith("PHARMO2O_")}})
    db_path = str(tmp_path / "cli-till.db")

    def pos(*args):
        result = runner.invoke(cli, ["--config", str(config), "pos-terminal", "--db", db_path, *args])
        return result

    try:
        assert pos("setup", "--server", proxy.url, "--secret", sh.secret).exit_code == 0
        r = pos("sell", f"{sh.product_ids[0]}:1")
        assert r.exit_code != 0 and "pull first" in r.output  # nothing is sold without a catalogue
        r = pos("pull", "--limit", "3")
        assert r.exit_code == 0 and "catalogue up to date" in r.output, r.output
        for i in range(25):
            r = pos("sell", f"{sh.product_ids[i % 4]}:1", f"{sh.product_ids[(i + 1) % 4]}:2", "--pay", "wechat")
            assert r.exit_code == 0 and "queued" in r.output, r.output
        r = pos("sync", "--batch", "10", "--retry-wait", "0.1")
        assert r.exit_code == 0, r.output
        # batch 2 reached the server but its answer was lost: re-sent, the server says duplicate
        assert "server unreachable" in r.output
        assert "done: 15 accepted, 10 already known, 0 rejected, 0 queued" in r.output, r.output
        assert "synced 10/25" in r.output and "synced 30/25" not in r.output
        status = pos("status")
        assert "queued 0, accepted 15, duplicate 10, rejected 0" in status.output, status.output
    finally:
        proxy.close()
    ids, orders, _ = server_side(ctx)
    assert len(ids) == orders == 25


def test_a_copied_or_restored_terminal_database_gets_a_new_database_id(tmp_path):
    import shutil
    original = terminal.TerminalDB(tmp_path / "a.db")
    first = original.database_id
    original.close()
    again = terminal.TerminalDB(tmp_path / "a.db")
    assert again.database_id == first and not again.identity_changed  # reopening is not copying
    again.close()
    shutil.copy(tmp_path / "a.db", tmp_path / "copy.db")
    copy = terminal.TerminalDB(tmp_path / "copy.db")
    assert copy.identity_changed and copy.database_id != first
    copy.close()


def test_an_unreachable_server_leaves_the_queue_intact(tmp_path):
    db = terminal.TerminalDB(tmp_path / "t.db")
    with db.tx():
        db.conn.execute("INSERT INTO products VALUES (1, 'S1', 'x', 500, 3, 'otc_b', 1, '[]', 0, 0, NULL)")
    db.record_sale([(1, 2)])
    client = terminal.Client(f"http://127.0.0.1:{free_port()}", "pos_x", db.database_id, timeout=2)
    said = []
    with pytest.raises(terminal.ServerUnreachable):
        terminal.sync(db, client, retries=2, wait=0.01, say=said.append)
    assert len([m for m in said if "unreachable" in m]) == 2
    assert db.counts()["queued"] == 1
    sale = db.queued(1)[0]
    assert sale["device_seq"] == 1 and sale["lines"][0]["unit_price_fen"] == 500
    assert sale["lines"][0]["price_list_version"] == 3 and sale["payments"] == [{"method": "cash", "amount_fen": 1000}]
    db.close()
