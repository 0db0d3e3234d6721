"""pharmo2o deployed as issue #10 describes it, for tests over real HTTP.

One PostgreSQL database (the test run's server), one Redis, ALL FOUR bundled
plugins enabled, and a fake WeChat on 127.0.0.1. The database is served in
one of two ways (:data:`KINDS`):

``gunicorn-workers``
    one ``GunicornServer`` (as ``pharmo2o serve`` runs it) with 3 sync workers;
``nginx-two-instances``
    "two hosts": two ``GunicornServer`` instances with 2 workers each, each
    with its own working directory and configuration file (as two machines
    would have), behind an nginx on 127.0.0.1 that balances them round robin;
    small pools and no server-side prepared statements (``[database]``, as
    behind pgbouncer in transaction mode).

:func:`nginx_conf` writes the nginx configuration that ``docs/deploy.md``
shows an operator; :class:`NginxProxy` runs it as a non-daemon child process
(``nginx -c <conf> -p <prefix> -e <error log> -g 'daemon off;'``) with every
path (pid, logs, temp files) under the test's directory.

A deployment is built once per test module (see ``conftest.py``), so the
scenarios make their own products, orders and members instead of counting
on an empty database.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlalchemy import text

from core.config import Config
from core.context import Context
from core.testing import ApiClient, GunicornServer, build_api_client, free_port

PLUGINS = ["wechat_channel", "prescription_review", "loyalty", "pos_sync"]
KINDS = ("gunicorn-workers", "nginx-two-instances")
REDIS_URL = os.environ.get("PHARMO2O_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NGINX = os.environ.get("PHARMO2O_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
ACCESS_LOGGER = "pharmo2o.api.access"


# ---------------------------------------------------------------------------- nginx

def nginx_conf(upstreams: list[str], *, listen: str, client_max_body_size: int, prefix: str = "/var/lib/pharmo2o-nginx",
               pid: str = "/run/nginx-pharmo2o.pid", access_log: str = "/var/log/nginx/pharmo2o.access.log",
               error_log: str = "/var/log/nginx/pharmo2o.error.log", user: str | None = "www-data",
               server_name: str = "_", upstream_timeout_s: int = 35, tls_certificate: str | None = None,
               tls_certificate_key: str | None = None, worker_processes: str = "auto") -> str:
    """A complete nginx.conf for pharmo2o behind nginx: ``upstreams`` are the gunicorn ``host:port``s.

    - round robin over the hosts; a POST is never retried on another host
      (nginx's default: non-idempotent requests are not passed to the next
      upstream) so a checkout or a payment cannot run twice because of nginx;
    - ``X-Forwarded-For`` is OVERWRITTEN with the address nginx sees (the app,
      with ``[api] trust_forwarded_for = true``, takes the last hop as the
      client: appending would let a client choose its own address), and a
      client's ``Forwarded`` header is dropped (Falcon would prefer it);
    - ``X-Request-Id``: the client's, else one nginx makes; the same id is in
      nginx's access log, the app's JSON log line and the response;
    - ``client_max_body_size``: the largest body the app accepts (prescription
      uploads), so the app itself answers 413 with its problem+json for every
      other operation's smaller limit;
    - timeouts a little above gunicorn's 30 s worker timeout;
    - with ``tls_certificate``/``tls_certificate_key``: HTTPS on ``listen`` and
      plain HTTP on port 80 redirected to it (WeChat calls only https URLs).
    """
    servers = "\n".join(f"        server {u} max_fails=3 fail_timeout=10s;" for u in upstreams)
    user_line = f"user {user};\n" if user else ""
    redirect = tls = ""
    if tls_certificate:
        redirect = f"""
    server {{
        listen 80;
        server_name {server_name};
        return 301 https://$host$request_uri;
    }}
"""
        tls = f""" ssl;
        ssl_certificate {tls_certificate};
        ssl_certificate_key {tls_certificate_key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:p2o_tls:10m"""
    return f"""{user_line}worker_processes {worker_processes};
pid {pid};
error_log {error_log} warn;

events {{
    worker_connections 1024;
}}

http {{
    default_type application/octet-stream;
    server_tokens off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    # the client's X-Request-Id when it sends one, else nginx's own
    map $http_x_request_id $p2o_request_id {{
        default $http_x_request_id;
        ""      $request_id;
    }}

    log_format p2o '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                   'upstream=$upstream_addr upstream_status=$upstream_status '
                   'request_id=$p2o_request_id request_time=$request_time';
    access_log {access_log} p2o;

    upstream pharmo2o {{
        # round robin (the default); one line per host running `pharmo2o serve --bind <ip>:8000`
{servers}
    }}
{redirect}
    server {{
        listen {listen}{tls};
        server_name {server_name};

        client_max_body_size {client_max_body_size};
        client_body_buffer_size 128k;

        location / {{
            proxy_pass http://pharmo2o;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $p2o_request_id;
            proxy_set_header Forwarded "";

            proxy_connect_timeout 5s;
            proxy_send_timeout {upstream_timeout_s}s;
            proxy_read_timeout {upstream_timeout_s}s;
            proxy_next_upstream error timeout;  # only when a host is down; never a POST (nginx's default)
            proxy_next_upstream_tries 2;
        }}
    }}
}}
"""


#: the configuration docs/deploy.md shows (two hosts at 10.0.0.11/12, TLS): tests/reliability/test_deploy_doc.py
#: checks the page shows exactly ``nginx_conf(**DOC_EXAMPLE)`` and that nginx accepts it
DOC_EXAMPLE = {"upstreams": ["10.0.0.11:8000", "10.0.0.12:8000"], "listen": "443", "server_name": "shop.example.com",
               "client_max_body_size": 10 * 1024 * 1024 + 64 * 1024,
               "tls_certificate": "/etc/nginx/tls/shop.example.com.crt",
               "tls_certificate_key": "/etc/nginx/tls/shop.example.com.key"}


class NginxProxy:
    """nginx in front of ``upstreams`` on 127.0.0.1 (``port``), all its files under ``workdir``."""

    def __init__(self, upstreams: list[str], workdir: Path, *, port: int | None = None,
                 client_max_body_size: int = 1024 * 1024) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (workdir / sub).mkdir(exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = workdir / "access.log"
        self.error_log = workdir / "error.log"
        # as root nginx's workers would drop to "nobody", who cannot write the test's temp files: keep our user
        user = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(nginx_conf(upstreams, listen=f"127.0.0.1:{self.port}",
                                        client_max_body_size=client_max_body_size, prefix=str(workdir),
                                        pid=str(workdir / "nginx.pid"), access_log=str(self.access_log),
                                        error_log=str(self.error_log), user=user, worker_processes="1"),
                             encoding="utf-8")
        self.proc: subprocess.Popen | None = None

    def start(self, wait: float = 30) -> "NginxProxy":
        check = subprocess.run([NGINX, "-t", "-q", "-c", str(self.conf), "-p", str(self.workdir),
                                "-e", str(self.error_log)], check=False, capture_output=True, text=True)
        if check.returncode != 0:
            raise AssertionError(f"nginx refused its configuration:\n{check.stderr}")
        with open(self.workdir / "nginx.out", "ab") as out:
            self.proc = subprocess.Popen([NGINX, "-c", str(self.conf), "-p", str(self.workdir), "-e",
                                          str(self.error_log), "-g", "daemon off;"], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + wait
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"nginx did not come up:\n{self.error_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self, timeout: float = 10) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGQUIT)  # graceful: finish the requests in flight
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def error_text(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def upstream_counts(self) -> Counter:
        """Requests per upstream ``host:port`` in nginx's access log (a retried request counts for each try)."""
        counts: Counter = Counter()
        if self.access_log.exists():
            for line in self.access_log.read_text(errors="replace").splitlines():
                m = re.search(r"upstream=(\S+)", line)
                if m and m.group(1) != "-":
                    for addr in m.group(1).split(", "):
                        counts[addr] += 1
        return counts


# ---------------------------------------------------------------------------- the deployment

def access_lines(server: GunicornServer) -> list[dict]:
    """The app's JSON access lines in ``server``'s log (one per request it answered)."""
    out = []
    for line in server.log_text().splitlines():
        if ACCESS_LOGGER not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("logger") == ACCESS_LOGGER:
            out.append(record)
    return out


def largest_body(api: ApiClient) -> int:
    """The largest request body any operation of the app accepts (what nginx must let through)."""
    state = api.app.api
    return max([state.max_body_bytes] + [state.body_limit(r.operation) for r in state.routes])


@dataclass
class Deployment:
    kind: str
    url: str  # where clients connect: nginx, or the single gunicorn
    ctx: Context  # the shared database, for seeding and counting rows
    api: ApiClient  # an in-process client on the same database: seeding only, and its tokens (valid over HTTP)
    servers: list[GunicornServer]
    fake: object  # the FakeWeChat the wechat_channel plugin talks to
    appid: str
    proxy: NginxProxy | None = None
    extra: dict = field(default_factory=dict)

    def headers(self, role: str | None = None, **extra) -> dict:
        return self.api.headers(role, extra)

    def session(self) -> requests.Session:
        """A client's own HTTP session (one per thread: ``requests.Session`` is not thread-safe)."""
        s = requests.Session()
        s.headers["User-Agent"] = "pharmo2o-reliability-test"
        return s

    def requests_served(self) -> dict[str, int]:
        """Requests each gunicorn instance answered so far (the app's access lines in its log)."""
        return {s.workdir.name: len(access_lines(s)) for s in self.servers}

    def connections(self) -> int:
        """Connections open to the database now (every process: the servers, this test)."""
        dbname = self.ctx.engine.url.database
        with self.ctx.engine.connect() as c:
            return c.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"), {"d": dbname}).scalar()

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for server in self.servers:
            server.stop(timeout=10)

    def logs(self) -> str:
        """The tail of every log, for a failing assertion's message."""
        parts = [f"--- {s.workdir.name}\n{s.log_text()[-2000:]}" for s in self.servers]
        if self.proxy is not None:
            parts.append(f"--- nginx\n{self.proxy.error_text()[-1000:]}")
        return "\n".join(parts)


def build_deployment(kind: str, databases, workdir: Path, fake_factory) -> Deployment:
    """Start a deployment of ``kind`` on a fresh database from ``databases`` (the ``pharmo2o_databases``
    fixture). ``fake_factory(appid)`` makes and starts the fake WeChat for that AppID."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    from tests.plugins.pos_sync.helpers import FAST
    from tests.plugins.wechat_channel.helpers import settings as wechat_settings

    workdir.mkdir(parents=True, exist_ok=True)
    appid = "wx" + secrets.token_hex(8)  # its own Redis key: other runs' tokens are not ours
    fake = fake_factory(appid)
    front_port = free_port()
    url = f"http://127.0.0.1:{front_port}"
    database_url = databases.fresh(PLUGINS, (), workdir)
    data: dict = {"database_url": database_url, "plugins": {"enabled": list(PLUGINS)}}
    conf = {**wechat_settings(fake, base_url=url, appid=appid, redis_url=REDIS_URL), **FAST,
            # documents live on storage every host mounts (NFS, ...): here one directory
            "prescription_review.storage_dir": str(workdir / "shared" / "prescriptions"),
            "api.trust_forwarded_for": kind == "nginx-two-instances"}
    if kind == "nginx-two-instances":  # docs/deploy.md's settings for a tight server or pgbouncer (transaction mode)
        conf.update({"database.pool_size": 2, "database.max_overflow": 2, "database.prepared_statements": False})
    for key, value in conf.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    ctx = Context.create(Config(path=workdir / "pharmo2o.toml", data=data))
    servers: list[GunicornServer] = []
    proxy = None
    try:
        api = build_api_client(ctx, validate_responses=False)
        if kind == "gunicorn-workers":
            servers.append(GunicornServer(ctx, workdir, workers=3, name="host-a", port=front_port).start())
        else:
            servers = [GunicornServer(ctx, workdir, workers=2, name=name) for name in ("host-a", "host-b")]
            for server in servers:
                server.start()
            proxy = NginxProxy([s.url.removeprefix("http://") for s in servers], workdir / "nginx",
                               port=front_port, client_max_body_size=largest_body(api)).start()
    except BaseException:
        if proxy is not None:
            proxy.stop()
        for server in servers:
            server.kill()
        ctx.dispose()
        fake.stop()
        raise
    return Deployment(kind, url, ctx, api, servers, fake, appid, proxy)
