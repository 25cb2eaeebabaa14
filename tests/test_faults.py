"""Faults are classified by cause (issue 13, point 5; API.md "Everything else").

A fault a client can wait out (the database locked past its wait, a full disk,
a read-only file, a statement past its time limit) answers ``503`` with
``Retry-After``, loses no acknowledged write, leaves the reads it does not
touch working, and goes away by itself when its cause does. Anything else (a
broken schema, a constraint the code did not expect) is the bare ``500`` with
its traceback in the log, never a 503 a client would retry forever.

Waits are kept short by lowering the stores' constants before the app is made
(each is read when a connection opens). The full disk and the read-only file
run in a child process: a file-size limit or dropped privileges must not reach
pytest itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

import pytest
from webtest import TestApp

import store
from tests.conftest import ITERATIONS, USER_PASSWORD, add_account, basic, login, stored_rows

ROOT = Path(__file__).resolve().parent.parent
UNAVAILABLE = {"message": "Database unavailable"}
INTERNAL = {"message": "Internal server error"}
# A lowered wait (ms) and how long an answer may take with it: well under the default 5 s.
SHORT_WAIT_MS = 200
BOUND = 2.0


def is_postgres(database: str) -> bool:
    return database.startswith("postgresql://")


def run_sql(database: str, *statements: str) -> None:
    """Run statements on a connection of their own, as an operator (or a bug) would."""
    if is_postgres(database):
        import psycopg

        with psycopg.connect(database, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
    else:
        with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as conn:
            for statement in statements:
                conn.execute(statement)


@contextlib.contextmanager
def lock_held_elsewhere(database: str, name: str) -> Iterator[None]:
    """Another connection holds what a write of account ``name`` needs until the block ends.

    SQLite: the database's write lock (BEGIN IMMEDIATE). PostgreSQL: the
    account's row, FOR UPDATE (every write of the account locks it).
    Neither stops a plain read.
    """
    if is_postgres(database):
        import psycopg

        with psycopg.connect(database) as conn:
            conn.execute("SELECT id FROM users WHERE name = %s FOR UPDATE", (name,))
            try:
                yield
            finally:
                conn.rollback()
    else:
        with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                conn.execute("ROLLBACK")


@pytest.fixture
def altered_schema(database: str) -> Iterator[None]:
    """For a test that changes the schema by hand: a PostgreSQL test database is
    emptied and lent to the next test, unless its schema version changed
    (tests/pg.py), so the version is changed here to have it dropped instead."""
    yield
    if is_postgres(database):
        run_sql(database, "UPDATE schema_version SET version = -1")


def assert_unavailable(response: Any) -> None:
    assert response.status_int == 503
    assert response.json == UNAVAILABLE
    assert int(response.headers["Retry-After"]) > 0


def assert_internal(response: Any) -> None:
    assert response.status_int == 500
    assert response.json == INTERNAL
    assert "Retry-After" not in response.headers


@pytest.fixture
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lock waits of SHORT_WAIT_MS on both backends (set before the app opens a connection)."""
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", SHORT_WAIT_MS)
    with contextlib.suppress(ImportError):
        import store_pg

        monkeypatch.setattr(store_pg, "LOCK_TIMEOUT_MS", SHORT_WAIT_MS)


def alices_client(app: Any) -> tuple[TestApp, dict[str, str]]:
    """A client of ``app`` and the token of alice, an account made for the test."""
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    return client, {"x-access-token": login(client, "alice", USER_PASSWORD)}


# -- a lock held by another connection ------------------------------------------------


def test_a_write_meeting_a_lock_held_past_the_wait_answers_503_with_retry_after(short_waits, make_app, database):
    client, headers = alices_client(make_app())
    with lock_held_elsewhere(database, "alice"):
        started = time.monotonic()
        response = client.post_json("/todo", {"text": "blocked"}, headers=headers, status=503)
        assert time.monotonic() - started < BOUND
    assert_unavailable(response)
    assert client.get("/todo", headers=headers, status=200).json == {"todos": []}


def test_reads_keep_working_while_another_connection_holds_the_write_lock(short_waits, make_app, database):
    client, headers = alices_client(make_app())
    client.post_json("/todo", {"text": "written before"}, headers=headers, status=201)
    with lock_held_elsewhere(database, "alice"):
        started = time.monotonic()
        listed = client.get("/todo", headers=headers, status=200)
        client.get("/me", headers=headers, status=200)
        assert time.monotonic() - started < SHORT_WAIT_MS / 1000  # not even waited for
    assert [t["text"] for t in listed.json["todos"]] == ["written before"]


def test_writes_recover_by_themselves_once_the_lock_is_released(short_waits, make_app, database):
    client, headers = alices_client(make_app())
    with lock_held_elsewhere(database, "alice"):
        client.post_json("/todo", {"text": "blocked"}, headers=headers, status=503)
    client.post_json("/todo", {"text": "after"}, headers=headers, status=201)
    assert [t["text"] for t in client.get("/todo", headers=headers, status=200).json["todos"]] == ["after"]


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_a_statement_running_past_statement_timeout_answers_503_then_the_next_succeeds(make_app, database, monkeypatch):
    import store_pg

    monkeypatch.setattr(store_pg, "STATEMENT_TIMEOUT_MS", 300)
    app = make_app(pool_size=1)  # the next request gets the same connection back
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    headers = {"x-access-token": login(client, "alice", USER_PASSWORD)}
    real = store_pg.session_account_with_todos

    def slow(conn: Any, *args: Any, **kwargs: Any) -> Any:
        conn.execute("SELECT pg_sleep(2)")
        return real(conn, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(store_pg, "session_account_with_todos", slow)
        started = time.monotonic()
        response = client.get("/todo", headers=headers, status=503)
        assert time.monotonic() - started < 1.5
    assert_unavailable(response)
    assert client.get("/todo", headers=headers, status=200).json == {"todos": []}


# -- a full disk (SQLite) -------------------------------------------------------------

# Both children below: post 500-character to-dos until one is refused, then read once.
FILL_UNTIL_REFUSED = """
acknowledged, refused = [], None
for n in range(100000):
    response = client.post_json("/todo", {"text": f"{n:05d} " + "x" * 494}, headers=headers, expect_errors=True)
    if response.status_int != 201:
        refused = {"status": response.status_int, "headers": dict(response.headers), "body": response.json}
        break
    acknowledged.append(response.json["todo"])
listed = client.get("/todo", headers=headers, params={"limit": 1000}, expect_errors=True).status_int
"""

# Runs in a child process: fill the database under RLIMIT_FSIZE (SIGXFSZ ignored,
# so a write past it fails with EFBIG instead of killing the process) until a
# POST is refused, then lift the limit and write once more.
FILL_THE_DISK = (
    """
import json, os, resource, signal, sys, uuid
from wsgiref.validate import validator
from webtest import TestApp
import todo_wsgi
from tests.conftest import add_account, login

path, iterations, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
app = todo_wsgi.create_app(database=path, pbkdf2_iterations=iterations)
add_account(app, "alice", password)
client = TestApp(validator(app))
headers = {"x-access-token": login(client, "alice", password)}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
largest = max(os.path.getsize(path + suffix) for suffix in ("", "-wal") if os.path.exists(path + suffix))
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 256 * 1024, hard))
"""
    + FILL_UNTIL_REFUSED
    + """resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
after = client.post_json("/todo", {"text": "room again"}, headers=headers, expect_errors=True)
app.close()
print(json.dumps({"acknowledged": acknowledged, "refused": refused, "read_meanwhile": listed,
                  "after": [after.status_int, after.json]}))
"""
)


def run_child(script: str, *args: str, drop_root_file_rights: bool = False) -> dict[str, Any]:
    """Run ``script`` in a child Python (the checkout on its path) and return the JSON it prints last."""
    code = (DROP_FILE_RIGHTS if drop_root_file_rights else "") + script
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_full_disk_answers_503_with_retry_after_loses_no_acknowledged_write_and_recovers(tmp_path):
    path = tmp_path / "todo.db"
    result = run_child(FILL_THE_DISK, str(path), str(ITERATIONS), USER_PASSWORD)
    refused = result["refused"]
    assert refused is not None, "the file-size limit was never reached"
    assert refused["status"] == 503
    assert refused["body"] == UNAVAILABLE
    assert int(refused["headers"]["Retry-After"]) > 0
    assert result["read_meanwhile"] == 200
    assert result["after"][0] == 201
    acknowledged = result["acknowledged"]
    assert len(acknowledged) >= 5
    # Reopened without the limit: every acknowledged to-do is there, the refused one is not.
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = conn.execute("SELECT id, text FROM todos ORDER BY id").fetchall()
    expected = [(t["id"], t["text"]) for t in acknowledged] + [(result["after"][1]["todo"]["id"], "room again")]
    assert stored == expected


# The same on a real full file system: a small tmpfs, mounted in a user and mount
# namespace of the child's own (unshare), where the machine allows it. A filler
# file takes part of it; once a write is refused, removing the filler makes room.
FILL_A_TMPFS = (
    """
import json, os, sqlite3, sys
from wsgiref.validate import validator
from webtest import TestApp
import todo_wsgi
from tests.conftest import add_account, login

path, iterations, password, filler = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(filler, "wb") as file:
    file.write(b"\\0" * 256 * 1024)
app = todo_wsgi.create_app(database=path, pbkdf2_iterations=iterations)
add_account(app, "alice", password)
client = TestApp(validator(app))
headers = {"x-access-token": login(client, "alice", password)}
"""
    + FILL_UNTIL_REFUSED
    + """os.remove(filler)
after = client.post_json("/todo", {"text": "room again"}, headers=headers, expect_errors=True)
app.close()
with sqlite3.connect(path) as conn:
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    stored = conn.execute("SELECT id, text FROM todos ORDER BY id").fetchall()
print(json.dumps({"acknowledged": acknowledged, "refused": refused, "read_meanwhile": listed,
                  "after": [after.status_int, after.json], "integrity": integrity, "stored": stored}))
"""
)


def can_mount_a_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-Urm", "mount", "-t", "tmpfs", "tmpfs", "/mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not can_mount_a_tmpfs(), reason="no tmpfs can be mounted here; the RLIMIT_FSIZE test stands in")
def test_a_full_file_system_answers_503_loses_no_acknowledged_write_and_recovers(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f'mount -t tmpfs -o size=1m tmpfs {disk} && exec "$0" "$@"'
    code = FILL_A_TMPFS
    args = [str(disk / "todo.db"), str(ITERATIONS), USER_PASSWORD, str(disk / "filler")]
    done = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", script, sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    refused = result["refused"]
    assert refused is not None, "the file system never filled"
    assert (refused["status"], refused["body"]) == (503, UNAVAILABLE)
    assert int(refused["headers"]["Retry-After"]) > 0
    assert result["read_meanwhile"] == 200
    assert result["after"][0] == 201
    assert result["integrity"] == "ok"
    expected = [[t["id"], t["text"]] for t in result["acknowledged"]] + [
        [result["after"][1]["todo"]["id"], "room again"]
    ]
    assert result["stored"] == expected


# -- a broken schema: a bug, not a fault to wait out --------------------------------------


def test_a_broken_schema_answers_500_without_retry_after_and_logs_the_traceback(
    make_app, database, altered_schema, caplog
):
    client, headers = alices_client(make_app())
    run_sql(database, "ALTER TABLE todos RENAME COLUMN text TO body")
    with caplog.at_level(logging.ERROR, logger="todo_wsgi"):
        listed = client.get("/todo", headers=headers, status=500)
        created = client.post_json("/todo", {"text": "lost"}, headers=headers, status=500)
    assert_internal(listed)
    assert_internal(created)
    assert "text" not in listed.text and "column" not in listed.text
    logged = [r for r in caplog.records if r.name == "todo_wsgi" and r.exc_info]
    assert len(logged) == 2
    assert all("unhandled error" in r.getMessage() for r in logged)
    assert "Traceback" in caplog.text and "text" in caplog.text


# -- a COMMIT that fails --------------------------------------------------------------

# A deferred foreign key, broken by a trigger on to-dos called "poison": the
# INSERT succeeds and the violation is found only at COMMIT.
POISON = {
    "sqlite": [
        "CREATE TABLE poison_parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE poison (parent INTEGER REFERENCES poison_parent (id) DEFERRABLE INITIALLY DEFERRED)",
        "CREATE TRIGGER todo_poison AFTER INSERT ON todos WHEN NEW.text = 'poison'"
        " BEGIN INSERT INTO poison VALUES (42); END",
    ],
    "postgres": [
        "CREATE TABLE poison_parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE poison (parent INTEGER REFERENCES poison_parent (id) DEFERRABLE INITIALLY DEFERRED)",
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN IF NEW.text = 'poison' THEN INSERT INTO poison VALUES (42); END IF; RETURN NEW; END $$",
        "CREATE TRIGGER todo_poison AFTER INSERT ON todos FOR EACH ROW EXECUTE FUNCTION poison()",
    ],
}


def test_a_commit_that_fails_answers_500_writes_nothing_and_leaves_the_connection_usable(
    make_app, database, altered_schema, caplog
):
    app = make_app(pool_size=1)  # SQLite: one connection per thread; PostgreSQL: one in the pool
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    headers = {"x-access-token": login(client, "alice", USER_PASSWORD)}
    run_sql(database, *POISON["postgres" if is_postgres(database) else "sqlite"])
    with caplog.at_level(logging.ERROR, logger="todo_wsgi"):
        assert_internal(client.post_json("/todo", {"text": "poison"}, headers=headers, status=500))
    assert "FOREIGN KEY" in caplog.text.upper()
    # The same connection answers the next write: it was not left inside the failed transaction.
    client.post_json("/todo", {"text": "next"}, headers=headers, status=201)
    assert [t["text"] for t in client.get("/todo", headers=headers, status=200).json["todos"]] == ["next"]


# A login's pruning of old audit events that fails (in life: a lock held past its wait, a
# full disk), made certain by a trigger called "keep_events" refusing every such delete.
KEEP_EVENTS = {
    "sqlite": ["CREATE TRIGGER keep_events BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'kept'); END"],
    "postgres": [
        "CREATE FUNCTION keep_events() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'kept'; END $$",
        "CREATE TRIGGER keep_events BEFORE DELETE ON audit_events FOR EACH ROW EXECUTE FUNCTION keep_events()",
    ],
}


def test_a_login_whose_pruning_fails_answers_500_and_starts_no_session(make_app, database, clock, altered_schema):
    app = make_app()
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    login(client, "alice", USER_PASSWORD)
    clock.advance(app.settings.audit_retention_days * 86400 + 1)  # its events are now past retention
    run_sql(database, *KEEP_EVENTS["postgres" if is_postgres(database) else "sqlite"])
    before = stored_rows(app)
    assert_internal(client.post("/login", headers=basic("alice", USER_PASSWORD), status=500))
    after = stored_rows(app)
    # Nothing changed but the attempt's count (kept, as for any login refused once counted
    # before its hashing): no session, no login.succeeded, no failures forgiven.
    throttle = ("login_failures", "address_failures")
    assert {t: rows for t, rows in after.items() if t not in throttle} == {
        t: rows for t, rows in before.items() if t not in throttle
    }
    assert [(name, failures) for name, _, failures, _ in after["login_failures"]] == [("alice", 1)]


# -- a read-only database file (SQLite) -----------------------------------------------

# Prepended to a child's script: as root, give up the rights to override file
# modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a file's mode binds this
# process as it binds the service's own user. Linux capget/capset, version 3.
DROP_FILE_RIGHTS = """
import ctypes, os
if os.geteuid() == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()  # (effective, permitted, inheritable) x 2
    assert libc.capget(header, data) == 0, ctypes.get_errno()
    for i in range(3):
        data[i] &= ~((1 << 1) | (1 << 2))
    assert libc.capset(header, data) == 0, ctypes.get_errno()
"""

# The file turns read-only under a running app. A request on a thread that
# opens its connection meanwhile is answered; then the file is writable again.
READ_ONLY_FILE = """
import json, os, sys, threading
from wsgiref.validate import validator
from webtest import TestApp
import todo_wsgi
from tests.conftest import add_account, login

path, iterations, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
app = todo_wsgi.create_app(database=path, pbkdf2_iterations=iterations)
add_account(app, "alice", password)
client = TestApp(validator(app))
headers = {"x-access-token": login(client, "alice", password)}
client.post_json("/todo", {"text": "before"}, headers=headers, status=201)
answers, writes_after = {}, []

def on_a_new_thread():
    answers["write"] = client.post_json("/todo", {"text": "refused"}, headers=headers, expect_errors=True)
    answers["read"] = client.get("/todo", headers=headers, expect_errors=True)
    os.chmod(path, 0o600)
    # A connection opened while the file was read-only (for the read above)
    # learns it at its first write: a client retrying as Retry-After says
    # gets through at the latest on its second try.
    while len(writes_after) < 3 and 201 not in writes_after:
        answer = client.post_json("/todo", {"text": "after"}, headers=headers, expect_errors=True)
        writes_after.append(answer.status_int)
    answers["listed_after"] = client.get("/todo", headers=headers, expect_errors=True)

os.chmod(path, 0o400)
thread = threading.Thread(target=on_a_new_thread)
thread.start()
thread.join()
try:
    os.chmod(path, 0o400)
    todo_wsgi.create_app(database=path, pbkdf2_iterations=iterations)
    start = "started"
except Exception as error:
    start = f"{type(error).__name__}: {error}"
app.close()
print(json.dumps({
    **{name: [r.status_int, r.headers.get("Retry-After"), r.json] for name, r in answers.items()},
    "writes_after": writes_after,
    "start": start,
}))
"""


@pytest.fixture(scope="module")
def read_only_file(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the child saw (READ_ONLY_FILE), run once for the tests below; its database path as "path"."""
    if sys.platform != "linux":
        pytest.skip("drops root's file rights with Linux capabilities")
    path = tmp_path_factory.mktemp("read-only") / "todo.db"
    result = run_child(READ_ONLY_FILE, str(path), str(ITERATIONS), USER_PASSWORD, drop_root_file_rights=True)
    return {**result, "path": str(path)}


def test_a_write_to_a_read_only_database_file_answers_503_with_retry_after(read_only_file):
    status, retry_after, body = read_only_file["write"]
    assert (status, body) == (503, UNAVAILABLE)
    assert int(retry_after) > 0


def test_reads_keep_working_while_the_database_file_is_read_only(read_only_file):
    status, _, body = read_only_file["read"]
    assert status == 200
    assert [t["text"] for t in body["todos"]] == ["before"]


def test_writes_recover_by_themselves_once_the_database_file_is_writable_again(read_only_file):
    assert read_only_file["writes_after"][-1] == 201
    assert len(read_only_file["writes_after"]) <= 2
    status, _, body = read_only_file["listed_after"]
    assert status == 200
    assert [t["text"] for t in body["todos"]] == ["before", "after"]


def test_create_app_on_a_read_only_database_file_refuses_to_start_naming_the_file(read_only_file):
    assert read_only_file["start"] == f"PermissionError: [Errno 13] Permission denied: '{read_only_file['path']}'"


# -- an unwritable database directory (SQLite) ------------------------------------------

# The file is writable, its directory is not: SQLite cannot create the -wal beside it.
UNWRITABLE_DIRECTORY = """
import json, os, sqlite3, sys
import todo_wsgi

path, iterations = sys.argv[1], int(sys.argv[2])
todo_wsgi.create_app(database=path, pbkdf2_iterations=iterations).close()
left = sorted(os.listdir(os.path.dirname(path)))
os.chmod(os.path.dirname(path), 0o500)
try:
    todo_wsgi.create_app(database=path, pbkdf2_iterations=iterations)
    start, code = "started", None
except sqlite3.Error as error:
    start, code = f"{type(error).__name__}: {error}", error.sqlite_errorcode
finally:
    os.chmod(os.path.dirname(path), 0o700)
print(json.dumps({"left": left, "start": start, "code": code}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="drops root's file rights with Linux capabilities")
def test_create_app_in_an_unwritable_directory_refuses_to_start_with_sqlites_read_only_error(tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    result = run_child(UNWRITABLE_DIRECTORY, str(directory / "todo.db"), str(ITERATIONS), drop_root_file_rights=True)
    assert result["left"] == ["todo.db"]  # the journal files went with the last connection
    assert result["start"] == "OperationalError: attempt to write a readonly database"
    assert result["code"] & 0xFF == 8  # SQLITE_READONLY (SQLITE_READONLY_DIRECTORY), a transient code
