"""Shared fixtures: a fresh database per test, the app wrapped in wsgiref's validator.

Tests use a low PBKDF2 iteration count for speed; the production default is
exercised by the settings tests only.

Every test that uses the ``database`` fixture (through ``make_app``, ``app``,
``client`` ...) runs twice: ``[sqlite]`` on a file in its tmp_path and
``[postgres]`` on an empty database of a throwaway PostgreSQL server started
once per session (tests/pg.py), or of the server named by
TODO_TEST_POSTGRES_URL. Without PostgreSQL the second half is skipped, and
the summary says how to enable it; ``-k sqlite`` runs the first half alone.

A test about the SQLite file itself runs on SQLite only: mark it
``@pytest.mark.sqlite_only`` (or the whole module with ``pytestmark``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.validate import validator

import pytest
from webtest import TestApp

import todo_wsgi
import todo_wsgi_cli

ITERATIONS = 1000
ADMIN_PASSWORD = "admin-password-1"
USER_PASSWORD = "user-password-1"


class FakeClock:
    """A settable clock: tests move time instead of sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


BACKENDS = ["sqlite", "postgres"]
PG_SKIPPED = "PostgreSQL half skipped"
# tests/test_browser.py skips itself with this reason when Chromium is missing.
BROWSER_SKIPPED = "Browser half skipped"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: inspects the SQLite file or store.py itself; runs on SQLite only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses the ``database`` fixture on both backends."""
    if "database" not in metafunc.fixturenames:
        return
    if any("database" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")):
        return  # the test chose its databases itself
    backends = ["sqlite"] if metafunc.definition.get_closest_marker("sqlite_only") else BACKENDS
    metafunc.parametrize("database", backends, indirect=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Any]:
    """One throwaway PostgreSQL server for the session (tests/pg.py), started on first use."""
    from tests import pg

    reason = pg.unavailable_reason()
    if reason is not None:
        pytest.skip(f"{PG_SKIPPED}: {reason}")
    cluster = pg.open_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh database for each test: a SQLite file in the test's own directory,
    or an empty, migrated PostgreSQL database (a URL)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield str(tmp_path / "todo.db")
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.take_database()
    try:
        yield url
    finally:
        cluster.give_back(url)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Report every PostgreSQL skip at one place, so ``-ra`` folds them into one line."""
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple) and PG_SKIPPED in str(report.longrepr[2]):
        report.longrepr = (__file__, None, report.longrepr[2])
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say plainly when the PostgreSQL half or the browser half did not run, and how to run it."""
    from tests import pg

    skipped = [r for r in terminalreporter.stats.get("skipped", []) if PG_SKIPPED in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"The PostgreSQL half of the suite did not run ({len(skipped)} tests skipped). "
            f"To run it: {pg.HOW_TO_ENABLE}.",
            yellow=True,
            bold=True,
        )
    if any(BROWSER_SKIPPED in str(r.longrepr) for r in terminalreporter.stats.get("skipped", [])):
        terminalreporter.write_line(
            "The browser half of the suite did not run (tests/test_browser.py skipped: no Chromium). "
            "To run it: apt-get install chromium chromium-driver (Debian's packages), then make test.",
            yellow=True,
            bold=True,
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(database: str, clock: FakeClock) -> Iterator[Callable[..., todo_wsgi.TodoApp]]:
    """Build apps on the test's database; each closed when the test ends."""
    apps: list[todo_wsgi.TodoApp] = []

    def make(**settings: Any) -> todo_wsgi.TodoApp:
        settings.setdefault("database", database)
        settings.setdefault("pbkdf2_iterations", ITERATIONS)
        settings.setdefault("clock", clock)
        app = todo_wsgi.create_app(**settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app: Callable[..., todo_wsgi.TodoApp]) -> todo_wsgi.TodoApp:
    return make_app()


@pytest.fixture
def client(app: todo_wsgi.TodoApp) -> TestApp:
    """WebTest over wsgiref's validator, so PEP 3333 mistakes fail loudly."""
    return TestApp(validator(app))


def add_account(app: todo_wsgi.TodoApp, name: str, password: str, admin: bool = False) -> dict[str, Any]:
    """Create an account directly in the store, as the command line does."""
    import uuid

    password_hash = todo_wsgi.hash_password(password, app.settings.pbkdf2_iterations)
    with app.db.connection() as conn:
        return app.store.create_user(conn, None, str(uuid.uuid4()), name, password_hash, admin)  # type: ignore[no-any-return]


def store_caller(app: todo_wsgi.TodoApp, name: str) -> Any:
    """A session of the account ``name`` started straight in the store, as the
    ``Caller`` its store writes take (for tests that fill the store directly)."""
    import uuid

    import store

    with app.db.connection() as conn:
        row = app.store.get_login(conn, name)
        caller = store.Caller(uuid.uuid4().hex, row["public_id"], None, app.clock())
        refresh_hash = uuid.uuid4().hex
        assert app.store.start_session(conn, row, caller, refresh_hash, app.clock() + 86400)
    return caller


def every_row(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table the schema has, by table, read from the catalog (so
    a table added later is covered too): what a refused write must leave as it was."""
    import sqlite3

    if isinstance(conn, sqlite3.Connection):  # sqlite_sequence too: a rolled-back insert leaves it alone
        catalog = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        catalog = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    tables = [name for (name,) in conn.execute(catalog).fetchall()]
    assert {"users", "todos", "sessions", "audit_events"} <= set(tables), tables
    return {
        table: sorted(map(tuple, conn.execute(f'SELECT * FROM "{table}"').fetchall()), key=repr) for table in tables
    }


def stored_rows(app: todo_wsgi.TodoApp) -> dict[str, list[tuple[Any, ...]]]:
    """``every_row`` of the app's database."""
    with app.db.connection() as conn:
        return every_row(conn)


class HeldWrite:
    """The next store write that records ``action`` (on ``target``, if given) held inside its
    transaction, its event written, until ``go_on`` is set: a race's window held open."""

    def __init__(self, app: todo_wsgi.TodoApp, monkeypatch: pytest.MonkeyPatch, action: str, target: str | None = None):
        import threading

        self.inside, self.go_on = threading.Event(), threading.Event()
        real_record = app.store._record

        def record_then_hold(conn: Any, caller: Any, recorded: str, recorded_target: str | None) -> None:
            real_record(conn, caller, recorded, recorded_target)
            if recorded == action and target in (None, recorded_target):
                self.inside.set()
                assert self.go_on.wait(10), "the held write was never let go"

        monkeypatch.setattr(app.store, "_record", record_then_hold)


def basic(name: str, password: str) -> dict[str, str]:
    """An HTTP Basic Authorization header."""
    encoded = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def challenge(why: str) -> str:
    """The WWW-Authenticate challenge of a refused token (RFC 6750 3): expired, revoked or malformed."""
    return f'Bearer error="invalid_token", error_description="{why}"'


def session_of(token: str) -> str:
    """The session id (``sid``) a token names, read without checking its signature."""
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["sid"])


def login(client: TestApp, name: str, password: str) -> str:
    """Log in and return the token."""
    response = client.post("/login", headers=basic(name, password), status=200)
    return str(response.json["token"])


@pytest.fixture
def admin(app: todo_wsgi.TodoApp) -> dict[str, Any]:
    return add_account(app, "admin", ADMIN_PASSWORD, admin=True)


@pytest.fixture
def user(app: todo_wsgi.TodoApp) -> dict[str, Any]:
    return add_account(app, "alice", USER_PASSWORD)


@pytest.fixture
def admin_headers(client: TestApp, admin: dict[str, Any]) -> dict[str, str]:
    return {"x-access-token": login(client, "admin", ADMIN_PASSWORD)}


@pytest.fixture
def user_headers(client: TestApp, user: dict[str, Any]) -> dict[str, str]:
    return {"x-access-token": login(client, "alice", USER_PASSWORD)}


@dataclass(frozen=True)
class CommandResult:
    """What an operator sees of one ``python -m todo_wsgi`` command."""

    returncode: int
    stdout: str
    stderr: str


RunCommand = Callable[..., CommandResult]


@pytest.fixture
def run_command(monkeypatch: pytest.MonkeyPatch) -> RunCommand:
    """Run ``python -m todo_wsgi ARGS`` in this process, as a child process would see it.

    The environment holds TODO_DATABASE and a low iteration count and no other
    TODO_ setting (plus ``environ``); standard input is ``stdin``, a pipe rather
    than a terminal; SystemExit becomes the exit status as the interpreter
    makes it. In-process, so the commands count towards coverage and cost no
    interpreter start-up; tests/test_cli.py still runs real child processes.
    """

    def run(database: str, *args: str, stdin: str = "", environ: dict[str, str] | None = None) -> CommandResult:
        out, err = io.StringIO(), io.StringIO()
        with monkeypatch.context() as patch:
            for name in [name for name in os.environ if name.startswith("TODO_")]:
                patch.delenv(name)
            patch.setenv("TODO_DATABASE", database)
            patch.setenv("TODO_PBKDF2_ITERATIONS", str(ITERATIONS))
            for name, value in (environ or {}).items():
                patch.setenv(name, value)
            patch.setattr(sys, "stdin", io.StringIO(stdin))
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    status = todo_wsgi_cli.main(list(args))
                except SystemExit as exited:
                    if isinstance(exited.code, str):
                        print(exited.code, file=sys.stderr)
                    status = 1 if isinstance(exited.code, str) else (exited.code or 0)
        return CommandResult(status, out.getvalue(), err.getvalue())

    return run


# The longest tests, started first: under pytest-xdist the other workers fill in
# around them instead of waiting for one of them at the end.
LONGEST_FIRST = ("test_schemathesis.py", "test_fuzz.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the longest tests at the front of the run."""
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)
