"""The operator's everyday commands: list-users, set-password, backup, check, and --help on each.

Each command runs through ``todo_wsgi_cli.main`` with the environment, standard
input and output a child process would have (the ``run_command`` fixture),
on this test's database; tests/test_cli.py runs real child processes.
"""

from __future__ import annotations

import threading
import time
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
    assert result.stdout.splitlines() == [f"schema version: {version} (this code: {version})", "integrity: ok"]


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
