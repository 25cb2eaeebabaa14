"""The operator's everyday commands: list-users, set-password, backup, check, and --help on each.

Each command runs through ``todo_wsgi_cli.main`` with the environment, standard
input and output a child process would have (the ``run_command`` fixture),
on this test's database; tests/test_cli.py runs real child processes.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from wsgiref.validate import validator

import pytest
from webtest import TestApp

import todo_wsgi
import todo_wsgi_cli
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, RunCommand, add_account, basic, login

NEW_PASSWORD = "a-brand-new-password"


@pytest.mark.parametrize("command", sorted(todo_wsgi_cli.COMMANDS))
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        todo_wsgi_cli.main([command, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m todo_wsgi {command} ")


def test_list_users_prints_every_account_one_tab_separated_line_each(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp
) -> None:
    admin = add_account(app, "admin", ADMIN_PASSWORD, admin=True)
    alice = add_account(app, "Alice Smith", USER_PASSWORD)
    result = run_command(database, "list-users")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{admin['public_id']}\tadmin\tadmin",
        f"{alice['public_id']}\tuser\tAlice Smith",
    ]


def test_set_password_reads_stdin_and_ends_the_accounts_tokens(
    run_command: RunCommand, database: str, make_app: Callable[..., todo_wsgi.TodoApp]
) -> None:
    app = make_app(clock=time.time)  # the command stamps the change with the real clock
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    old_token = login(client, "alice", USER_PASSWORD)
    result = run_command(database, "set-password", "alice", stdin=NEW_PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert NEW_PASSWORD not in result.stdout + result.stderr
    response = client.get("/me", headers={"x-access-token": old_token}, status=401)
    assert response.json == {"message": "Token is invalid!"}
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=401)
    new_token = login(client, "alice", NEW_PASSWORD)
    assert client.get("/me", headers={"x-access-token": new_token}, status=200).json["user"]["name"] == "alice"


def test_set_password_of_an_unknown_name_exits_1_with_a_clear_message(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp
) -> None:
    result = run_command(database, "set-password", "nobody", stdin=NEW_PASSWORD + "\n")
    assert result.returncode == 1
    assert "no account is named 'nobody'" in result.stderr
    assert "Traceback" not in result.stderr


def test_set_password_with_a_short_password_exits_1_and_changes_nothing(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp, client: TestApp
) -> None:
    add_account(app, "alice", USER_PASSWORD)
    result = run_command(database, "set-password", "alice", stdin="short\n")
    assert result.returncode == 1
    assert "8 to 1024" in result.stderr
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=200)


@pytest.mark.sqlite_only
def test_backup_while_the_app_writes_gives_a_consistent_copy_holding_the_data(
    run_command: RunCommand,
    database: str,
    app: todo_wsgi.TodoApp,
    tmp_path: Path,
    make_app: Callable[..., todo_wsgi.TodoApp],
) -> None:
    import sqlite3

    add_account(app, "admin", ADMIN_PASSWORD, admin=True)
    writer = TestApp(validator(app))
    headers = {"x-access-token": login(writer, "admin", ADMIN_PASSWORD)}
    started, stop = threading.Event(), threading.Event()
    written: list[int] = []

    def write() -> None:
        while not stop.is_set():
            todo = writer.post_json("/todo", {"text": f"todo {len(written)}"}, headers=headers, status=201)
            written.append(todo.json["todo"]["id"])
            started.set()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert started.wait(timeout=30)
        before = len(written)
        result = run_command(database, "backup", str(tmp_path / "backup.db"))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert f"to {tmp_path / 'backup.db'}" in result.stdout
    assert not (tmp_path / "backup.db.partial").exists()
    with sqlite3.connect(tmp_path / "backup.db") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        ids = [row[0] for row in copy.execute("SELECT id FROM todos ORDER BY id")]
    # One snapshot: the to-dos written before it began, and a gapless run of what came next.
    assert before <= len(ids) <= len(written)
    assert ids == written[: len(ids)]
    restored = TestApp(validator(make_app(database=str(tmp_path / "backup.db"))))
    token = login(restored, "admin", ADMIN_PASSWORD)
    last = restored.get(f"/todo/{ids[-1]}", headers={"x-access-token": token}, status=200).json["todo"]
    assert last["text"] == f"todo {len(ids) - 1}"


def test_backup_to_a_missing_directory_exits_1_with_a_clear_message(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp, tmp_path: Path
) -> None:
    if database.startswith("postgresql"):
        pytest.skip("SQLite's backup; PostgreSQL's answer is tested below")
    result = run_command(database, "backup", str(tmp_path / "missing" / "backup.db"))
    assert result.returncode == 1
    assert f"cannot write {tmp_path / 'missing' / 'backup.db'}" in result.stderr
    assert "Traceback" not in result.stderr


def test_backup_on_postgresql_says_to_use_pg_dump(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp, tmp_path: Path
) -> None:
    if not database.startswith("postgresql"):
        pytest.skip("PostgreSQL only; SQLite's backup is tested above")
    result = run_command(database, "backup", str(tmp_path / "backup.db"))
    assert result.returncode == 1
    assert "pg_dump" in result.stderr
    assert not (tmp_path / "backup.db").exists()


def test_check_reports_the_schema_version_and_integrity_ok(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp
) -> None:
    result = run_command(database, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    version = app.store.SCHEMA_VERSION
    assert result.stdout.splitlines() == [
        f"database: {todo_wsgi_cli.describe(database)}",
        f"schema version: {version} (this code: {version})",
        "integrity: ok",
    ]


@pytest.mark.sqlite_only
def test_check_exits_1_on_a_to_do_whose_owner_is_gone(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp
) -> None:
    import sqlite3

    with sqlite3.connect(database) as conn:  # foreign keys are off by default in a bare connection
        conn.execute("INSERT INTO todos (owner_id, text) VALUES (4242, 'orphan')")
    result = run_command(database, "check")
    assert result.returncode == 1
    assert "problem: todos row 1 refers to a missing users row" in result.stdout
    assert "integrity: 1 problem(s)" in result.stdout


@pytest.mark.sqlite_only
def test_check_exits_1_on_a_database_newer_than_this_code(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp
) -> None:
    import sqlite3

    with sqlite3.connect(database) as conn:
        conn.execute(f"PRAGMA user_version = {app.store.SCHEMA_VERSION + 1}")
    result = run_command(database, "check")
    assert result.returncode == 1
    assert "newer than this code" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["list-users", "set-password alice", "backup copy.db", "check"])
def test_commands_on_a_missing_database_exit_1_without_creating_it(
    run_command: RunCommand, command: str, tmp_path: Path
) -> None:
    missing = tmp_path / "mistyped.db"
    result = run_command(str(missing), *command.split(), stdin=NEW_PASSWORD + "\n")
    assert result.returncode == 1
    assert f"no database at {missing}" in result.stderr
    assert not missing.exists()


def failures(app: todo_wsgi.TodoApp, *pairs: tuple[str, str]) -> None:
    """Count one failed login for each (name, address)."""
    with app.db.connection() as conn:
        for name, address in pairs:
            app.store.count_login_attempt(conn, name, address, time.time(), 900)


def throttled(app: todo_wsgi.TodoApp) -> set[tuple[str, str]]:
    """The (name, address) pairs with a count, read as the next failed login sees them."""
    with app.db.connection() as conn:
        names = [("alice", "10.0.0.1"), ("alice", "10.0.0.2"), ("bob", "10.0.0.1"), ("bob", "10.0.0.2")]
        return {
            (name, address)
            for name, address in names
            if app.store.count_login_attempt(conn, name, address, time.time(), 900)[0] > 1
        }


@pytest.mark.parametrize(
    ("args", "left", "cleared"),
    [
        (["alice"], {("bob", "10.0.0.1"), ("bob", "10.0.0.2")}, 2),
        (["alice", "--address", "10.0.0.1"], {("alice", "10.0.0.2"), ("bob", "10.0.0.1"), ("bob", "10.0.0.2")}, 1),
        (["--address", "10.0.0.1"], {("alice", "10.0.0.2"), ("bob", "10.0.0.2")}, 2),
    ],
)
def test_unlock_clears_the_login_throttle_of_a_name_an_address_or_both(
    run_command: RunCommand,
    database: str,
    app: todo_wsgi.TodoApp,
    args: list[str],
    left: set[tuple[str, str]],
    cleared: int,
) -> None:
    failures(app, ("alice", "10.0.0.1"), ("alice", "10.0.0.2"), ("bob", "10.0.0.1"), ("bob", "10.0.0.2"))
    result = run_command(database, "unlock", *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(f": {cleared} throttle record(s) cleared\n")
    assert throttled(app) == left


def test_unlock_clears_a_name_however_it_is_spelled(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp
) -> None:
    # Login counts a name by its NFC form; unlock given another spelling clears that count,
    # and the audit trail names the account it unlocked.
    account = add_account(app, "ren\u00e9e", USER_PASSWORD)
    failures(app, ("ren\u00e9e", "10.0.0.1"))
    result = run_command(database, "unlock", unicodedata.normalize("NFD", "ren\u00e9e"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(": 1 throttle record(s) cleared\n")
    with app.db.connection() as conn:
        events = app.store.list_events(conn, action="account.unlocked")
    assert [event["target"] for event in events] == [account["public_id"]]


def test_unlock_lets_a_locked_out_account_log_in_again(
    run_command: RunCommand, database: str, make_app: Callable[..., todo_wsgi.TodoApp]
) -> None:
    app = make_app(login_max_failures=2)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    for _ in range(2):
        client.post("/login", headers=basic("alice", "wrong-password"), status=401)
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=429)
    result = run_command(database, "unlock", "alice")
    assert result.returncode == 0, result.stderr
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=200)


def test_unlock_without_a_name_or_address_exits_1(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp
) -> None:
    result = run_command(database, "unlock")
    assert result.returncode == 1
    assert result.stderr == "error: unlock needs a NAME, --address ADDR, or both\n"


def test_delete_user_deletes_the_account_and_its_to_dos_and_ends_its_tokens(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp, client: TestApp
) -> None:
    add_account(app, "admin", ADMIN_PASSWORD, admin=True)
    alice = add_account(app, "alice", USER_PASSWORD)
    token = login(client, "alice", USER_PASSWORD)
    client.post_json("/todo", {"text": "buy milk"}, headers={"x-access-token": token}, status=201)
    result = run_command(database, "delete-user", "alice")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"deleted alice ({alice['public_id']}) and its to-dos; its sessions have ended\n"
    client.get("/me", headers={"x-access-token": token}, status=401)
    with app.db.connection() as conn:
        assert app.store.get_user_by_name(conn, "alice") is None


@pytest.mark.parametrize("command", ["delete-user", "demote"])
def test_delete_user_and_demote_refuse_the_last_admin(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp, command: str
) -> None:
    add_account(app, "admin", ADMIN_PASSWORD, admin=True)
    result = run_command(database, command, "admin")
    assert result.returncode == 1
    assert result.stderr == "error: 'admin' is the last admin; promote another account first\n"
    with app.db.connection() as conn:
        assert app.store.get_user_by_name(conn, "admin")["admin"] is True


def test_promote_then_demote_changes_admin_rights_at_once(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp, client: TestApp
) -> None:
    add_account(app, "admin", ADMIN_PASSWORD, admin=True)
    alice = add_account(app, "alice", USER_PASSWORD)
    headers = {"x-access-token": login(client, "alice", USER_PASSWORD)}
    client.get("/user", headers=headers, status=403)
    result = run_command(database, "promote", "alice")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"alice ({alice['public_id']}) is an admin\n"
    client.get("/user", headers=headers, status=200)
    assert run_command(database, "demote", "admin").returncode == 0  # alice is an admin now: not the last
    result = run_command(database, "demote", "alice")
    assert result.returncode == 1 and "last admin" in result.stderr
    run_command(database, "promote", "admin")
    assert run_command(database, "demote", "alice").stdout == f"alice ({alice['public_id']}) is no longer an admin\n"
    client.get("/user", headers=headers, status=403)


@pytest.mark.parametrize("command", ["delete-user", "promote", "demote"])
def test_account_commands_on_an_unknown_name_exit_1_naming_the_database(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp, command: str
) -> None:
    result = run_command(database, command, "nobody")
    assert result.returncode == 1
    assert result.stderr.startswith("error: no account is named 'nobody' in ")


def test_rotate_key_stores_a_new_key_that_ends_old_tokens_at_the_next_start_as_revoked(database, make_app, run_command):
    from wsgiref.validate import validator

    from webtest import TestApp

    from tests.conftest import USER_PASSWORD, add_account, challenge, login

    app = make_app()
    add_account(app, "alice", USER_PASSWORD)
    client = TestApp(validator(app))
    pair = client.post(
        "/login",
        headers={
            "Authorization": "Basic " + __import__("base64").b64encode(b"alice:" + USER_PASSWORD.encode()).decode()
        },
    ).json
    result = run_command(database, "rotate-key")
    assert result.returncode == 0 and "restart" in result.stdout
    client.get("/me", headers={"x-access-token": pair["token"]}, status=200)  # this server keeps its key
    restarted = TestApp(validator(make_app()))
    response = restarted.get("/me", headers={"x-access-token": pair["token"]}, status=401)
    assert response.headers["WWW-Authenticate"] == challenge("revoked")
    fresh = restarted.post_json("/refresh", {"refresh_token": pair["refresh_token"]}, status=200).json
    restarted.get("/me", headers={"x-access-token": fresh["token"]}, status=200)  # the session lives on
    assert login(restarted, "alice", USER_PASSWORD)


def test_rotate_key_refuses_when_the_key_comes_from_todo_secret_key(database, app, run_command):
    result = run_command(database, "rotate-key", environ={"TODO_SECRET_KEY": "k" * 40})
    assert result.returncode == 1
    assert result.stderr.startswith("error: TODO_SECRET_KEY is set")


def test_audit_prints_one_event_a_line_oldest_first_and_since_a_time(database, app, run_command):
    from tests.conftest import USER_PASSWORD, add_account

    add_account(app, "alice", USER_PASSWORD)
    assert run_command(database, "promote", "alice").returncode == 0
    lines = run_command(database, "audit").stdout.splitlines()
    assert [line.split("\t")[1] for line in lines] == ["account.created", "account.promoted"]
    assert all(line.split("\t")[2] == "cli" for line in lines)
    assert run_command(database, "audit", "--since", "2999-01-01T00:00:00Z").stdout == ""
    bad = run_command(database, "audit", "--since", "yesterday")
    assert bad.returncode == 1 and bad.stderr.startswith("error: --since")


def test_rotate_key_and_unlock_are_recorded_in_the_audit_trail_as_the_operators(database, app, run_command):
    from tests.conftest import USER_PASSWORD, add_account

    alice = add_account(app, "alice", USER_PASSWORD)
    assert run_command(database, "rotate-key").returncode == 0
    assert run_command(database, "unlock", "alice").returncode == 0
    events = [line.split("\t") for line in run_command(database, "audit").stdout.splitlines()]
    assert [event[1:4] for event in events[-2:]] == [
        ["key.rotated", "cli", "-"],
        ["account.unlocked", "cli", alice["public_id"]],
    ]


def test_backup_on_postgresql_suggests_a_pg_dump_line_that_writes_to_the_path_given_as_typed(
    run_command: RunCommand, database: str, app: todo_wsgi.TodoApp, tmp_path: Path
) -> None:
    # A path with a space or a quote in it: the suggested line, pasted into a shell, must
    # still write to exactly that path (not to its first word, nor to PATH.partial).
    if not database.startswith("postgresql"):
        pytest.skip("PostgreSQL only; SQLite's backup is tested above")
    import shlex

    target = tmp_path / "my backups" / "it's; here.db"
    target.parent.mkdir()
    result = run_command(database, "backup", str(target))
    assert result.returncode == 1
    suggested = result.stderr[result.stderr.index("pg_dump ") : result.stderr.index(" (restore with")]
    assert shlex.split(suggested) == ["pg_dump", "--format=custom", f"--file={target}", "$TODO_DATABASE"]
    assert not target.exists()
