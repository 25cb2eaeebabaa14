"""Several servers, one PostgreSQL database: what API.md promises holds across processes.

Each server is a real ``python -m todo_wsgi serve`` (waitress) on a loopback
port, started by a fixture and stopped by it. Two of them start at the same
moment on one new, empty database, so they also race to migrate it and to
store the signing key. Needs PostgreSQL (see tests/pg.py); skipped without it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

import todo_wsgi
from tests.conftest import ITERATIONS, add_account
from tests.pg import free_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "root-password-1"
PASSWORD = "a-user-password"

Answer = tuple[int, dict[str, Any]]


# -- talking to a server ------------------------------------------------------------------


def call(base: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    """(status, JSON body) of one request to a live server."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def login(base: str, name: str, password: str) -> dict[str, str]:
    """Log in on one server; the token as request headers."""
    status, body = call(base, "POST", "/login", headers=basic(name, password))
    assert status == 200, body
    return {"x-access-token": body["token"]}


def with_port(url: str, port: int) -> str:
    """A PostgreSQL URL pointing at 127.0.0.1:``port`` instead."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{port}"))


# -- servers --------------------------------------------------------------------------------


class Servers:
    """``python -m todo_wsgi serve`` processes, all stopped by stop()."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, database: str, count: int) -> list[str]:
        """Start ``count`` servers on ``database`` at the same moment; their base URLs once healthy."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TODO_")}
        env.update(TODO_DATABASE=database, TODO_PBKDF2_ITERATIONS=str(ITERATIONS), PYTHONPATH=str(ROOT))
        bases = []
        for _ in range(count):
            port = free_port()
            log = open(self.logs / f"server-{port}.log", "wb")  # a file: a full pipe would stall the server
            process = subprocess.Popen(
                [sys.executable, "-m", "todo_wsgi", "serve", "--listen", f"127.0.0.1:{port}"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            self.processes.append(process)
            bases.append((f"http://127.0.0.1:{port}", process, port))
        for base, process, port in bases:
            self._wait_until_up(base, process, port)
        return [base for base, _, _ in bases]

    def _wait_until_up(self, base: str, process: subprocess.Popen[bytes], port: int) -> None:
        deadline = time.monotonic() + 60  # a start, not a measurement: generous on a busy machine
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError):
                if call(base, "GET", "/healthz")[0] == 200:
                    return
            time.sleep(0.05)
        log = (self.logs / f"server-{port}.log").read_text(errors="replace")
        raise AssertionError(f"server on {base} did not come up (exit {process.poll()}):\n{log[-3000:]}")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    servers = Servers(tmp_path_factory.mktemp("servers"))
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def shared(postgres_cluster: Any, module_servers: Servers) -> Iterator[tuple[str, str, str]]:
    """(url, server A, server B): two servers started at once on a new, empty database, and an admin."""
    url = postgres_cluster.create_database(migrated=False)
    try:
        a, b = module_servers.start(url, 2)
        app = todo_wsgi.create_app(database=url, pbkdf2_iterations=ITERATIONS)
        try:
            add_account(app, "root", ADMIN_PASSWORD, admin=True)
        finally:
            app.close()
        yield url, a, b
    finally:
        module_servers.stop()
        postgres_cluster.drop_database(url)


@pytest.fixture
def account(shared: tuple[str, str, str]) -> str:
    """A new account's name (each test its own), created through server A."""
    _, a, _ = shared
    name = f"u-{uuid.uuid4().hex[:12]}"
    status, body = call(a, "POST", "/user", {"name": name, "password": PASSWORD}, login(a, "root", ADMIN_PASSWORD))
    assert status == 201, body
    return name


# -- a TCP proxy that can cut the database off ---------------------------------------------------


class Proxy:
    """Forwards 127.0.0.1:port to the database until cut(), then refuses and drops everything."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.cut_off = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.cut_off.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                thread.start()
                self.threads.append(thread)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """As if the database went away: no new connections, open ones dropped."""
        self.cut_off.set()
        self.threads[0].join(timeout=5)
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.fixture
def proxy(postgres_cluster: Any) -> Iterator[Callable[[str], tuple[str, Proxy]]]:
    """Wrap a database URL in a proxy that the test can cut; closed at the end."""
    made: list[Proxy] = []

    def wrap(url: str) -> tuple[str, Proxy]:
        parts = urlsplit(url)
        made.append(Proxy((parts.hostname or "127.0.0.1", parts.port or 5432)))
        return with_port(url, made[-1].port), made[-1]

    yield wrap
    for each in made:
        if not each.cut_off.is_set():
            each.cut()


# -- the promises --------------------------------------------------------------------------------


def test_each_server_reports_the_database_healthy(shared):
    _, a, b = shared
    assert call(a, "GET", "/healthz") == (200, {"status": "ok"})
    assert call(b, "GET", "/healthz") == (200, {"status": "ok"})


def test_servers_starting_at_once_on_an_empty_database_migrate_it_once_and_share_one_key(shared):
    url, a, b = shared
    import psycopg

    import store_pg

    with psycopg.connect(url) as conn:
        assert store_pg.schema_version(conn) == store_pg.SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM app_secrets").fetchone() == (1,)
    assert call(b, "GET", "/me", headers=login(a, "root", ADMIN_PASSWORD))[0] == 200


def test_a_token_issued_by_one_server_is_honoured_by_the_other(shared, account):
    _, a, b = shared
    status, body = call(b, "GET", "/me", headers=login(a, account, PASSWORD))
    assert (status, body["user"]["name"]) == (200, account)


def test_writes_through_both_servers_are_neither_lost_nor_doubled(shared, account):
    _, a, b = shared
    tokens = {a: login(a, account, PASSWORD), b: login(b, account, PASSWORD)}
    texts = {base: [f"{tag} {i}" for i in range(12)] for base, tag in ((a, "via a"), (b, "via b"))}
    statuses: list[int] = []

    def post_all(base: str, share: list[str]) -> None:
        for text in share:
            statuses.append(call(base, "POST", "/todo", {"text": text}, tokens[base])[0])

    # Two writers per server, all at once.
    threads = [
        threading.Thread(target=post_all, args=(base, texts[base][half::2])) for base in (a, b) for half in (0, 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [201] * 24
    for base in (a, b):
        status, body = call(base, "GET", "/todo?limit=1000", headers=tokens[base])
        assert status == 200
        ids = [todo["id"] for todo in body["todos"]]
        assert len(ids) == len(set(ids)) == 24
        assert sorted(todo["text"] for todo in body["todos"]) == sorted(texts[a] + texts[b])


def test_logout_on_one_server_ends_the_token_on_the_other(shared, account):
    _, a, b = shared
    token = login(a, account, PASSWORD)
    assert call(b, "GET", "/me", headers=token)[0] == 200  # verified (and remembered) by B first
    assert call(a, "POST", "/logout", headers=token) == (200, {"message": "Logged out!"})
    assert call(b, "GET", "/me", headers=token) == (401, {"message": "Token is invalid!"})


def test_password_change_on_one_server_ends_older_tokens_on_the_other(shared, account):
    _, a, b = shared
    old = login(a, account, PASSWORD)
    assert call(a, "GET", "/me", headers=old)[0] == 200
    change = {"old_password": PASSWORD, "new_password": "a-new-password"}
    assert call(b, "PUT", "/me/password", change, old) == (200, {"message": "Password changed!"})
    assert call(a, "GET", "/me", headers=old) == (401, {"message": "Token is invalid!"})
    new = login(a, account, "a-new-password")
    assert call(b, "GET", "/me", headers=new)[0] == 200


def test_login_throttling_counts_failures_on_both_servers_together(shared, account):
    _, a, b = shared
    wrong = basic(account, "not-the-password")
    for base in (a, b, a, b, a):  # five failures, the limit, split between the servers
        assert call(base, "POST", "/login", headers=wrong) == (401, {"message": "Could not verify"})
    for base in (b, a):  # the right password too, on either server
        status, _ = call(base, "POST", "/login", headers=basic(account, PASSWORD))
        assert status == 429


def test_two_admins_on_different_servers_demoting_each_other_at_once_leave_one_admin(postgres_cluster, servers):
    """Both requests are held at the admin rows' lock until both wait there, then race."""
    import psycopg

    url = postgres_cluster.take_database()
    try:
        app = todo_wsgi.create_app(database=url, pbkdf2_iterations=ITERATIONS)
        try:
            first = add_account(app, "first", ADMIN_PASSWORD, admin=True)
            second = add_account(app, "second", ADMIN_PASSWORD, admin=True)
        finally:
            app.close()
        a, b = servers.start(url, 2)
        requests = [
            (a, f"/user/{second['public_id']}", login(a, "first", ADMIN_PASSWORD)),
            (b, f"/user/{first['public_id']}", login(b, "second", ADMIN_PASSWORD)),
        ]
        statuses = [0, 0]

        def demote(i: int) -> None:
            base, path, token = requests[i]
            statuses[i] = call(base, "PATCH", path, {"admin": False}, token)[0]

        with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as watcher:
            # Hold the admin rows, as a third demotion in progress would.
            holder.execute("SELECT id FROM users WHERE admin FOR UPDATE")
            threads = [threading.Thread(target=demote, args=(i,)) for i in (0, 1)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(t.is_alive() for t in threads):
                (waiting,) = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).fetchone()
                if waiting == 2:
                    break
                time.sleep(0.02)
            holder.commit()  # both are past their admin check and at the lock: let them race
            for thread in threads:
                thread.join(timeout=30)
        # The loser, demoted by the winner first, is no longer an admin when its own write decides.
        assert sorted(statuses) == [200, 403]
        with psycopg.connect(url) as conn:
            admins = [name for (name,) in conn.execute("SELECT name FROM users WHERE admin")]
        assert admins in (["first"], ["second"])
    finally:
        servers.stop()
        postgres_cluster.give_back(url)


def test_each_server_answers_503_on_healthz_when_the_database_is_unreachable(postgres_cluster, servers, proxy):
    url = postgres_cluster.take_database()
    try:
        through_proxy, link = proxy(url)
        a, b = servers.start(through_proxy, 2)
        assert call(a, "GET", "/healthz") == (200, {"status": "ok"})
        assert call(b, "GET", "/healthz") == (200, {"status": "ok"})
        link.cut()
        for base in (a, b):
            status, body = call(base, "GET", "/healthz")
            assert (status, body) == (503, {"message": "Database unavailable"})
    finally:
        servers.stop()
        postgres_cluster.give_back(url)


def test_a_server_pointed_at_a_closed_port_stops_at_start_saying_why(postgres_cluster):
    closed = with_port(postgres_cluster.admin_url, free_port())
    with pytest.raises(RuntimeError, match="cannot use the PostgreSQL database: .*refused"):
        todo_wsgi.create_app(database=closed, pbkdf2_iterations=ITERATIONS)
