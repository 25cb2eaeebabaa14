"""The operator's commands: create-user, and serving with waitress-serve.

The first test and the waitress-serve one run real child processes, as an
operator does; the rest call ``todo_wsgi_cli.main`` in-process with the same
environment and standard input (the ``run_command`` fixture), which is faster
and lets coverage see them."""

import getpass
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from wsgiref.validate import validator

import pytest
from webtest import TestApp

import todo_wsgi_cli
from tests.conftest import ITERATIONS, basic

PASSWORD = "cli-password-1"


@pytest.fixture
def env(database):
    """The environment of a child process: this test's database, a low cost, no inherited settings."""
    child = {name: value for name, value in os.environ.items() if not name.startswith("TODO_")}
    child.update(TODO_DATABASE=database, TODO_PBKDF2_ITERATIONS=str(ITERATIONS))
    return child


def test_create_user_reads_the_password_from_piped_stdin_and_the_account_logs_in(env, client):
    result = subprocess.run(
        [sys.executable, "-m", "todo_wsgi", "create-user", "carol"],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "carol" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    token = client.post("/login", headers=basic("carol", PASSWORD), status=200).json["token"]
    client.get("/user", headers={"x-access-token": token}, status=403)


def test_create_user_reads_one_line_of_stdin_as_the_password(run_command, database, client):
    result = run_command(database, "create-user", "carol", stdin=PASSWORD + "\r\nsecond line\n")
    assert result.returncode == 0, result.stderr
    client.post("/login", headers=basic("carol", PASSWORD), status=200)
    client.post("/login", headers=basic("carol", PASSWORD + "\nsecond line"), status=401)


def test_create_user_admin_flag_makes_an_admin(run_command, database, client):
    result = run_command(database, "create-user", "root", "--admin", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    token = client.post("/login", headers=basic("root", PASSWORD), status=200).json["token"]
    users = client.get("/user", headers={"x-access-token": token}, status=200).json["users"]
    assert [(u["name"], u["admin"]) for u in users] == [("root", True)]


def test_create_user_with_a_taken_name_exits_1_with_a_clear_message(run_command, database, client):
    assert run_command(database, "create-user", "carol", stdin=PASSWORD + "\n").returncode == 0
    result = run_command(database, "create-user", "carol", stdin="another-password\n")
    assert result.returncode == 1
    assert "already taken" in result.stderr
    client.post("/login", headers=basic("carol", PASSWORD), status=200)


def test_create_user_with_a_short_password_exits_1_with_a_clear_message(run_command, database, client):
    result = run_command(database, "create-user", "carol", stdin="short\n")
    assert result.returncode == 1
    assert "password" in result.stderr and "8 to 1024" in result.stderr
    client.post("/login", headers=basic("carol", "short"), status=401)


class Terminal(io.StringIO):
    """Standard input that is a terminal: the password must be prompted for."""

    def isatty(self):
        return True


def test_create_user_on_a_terminal_asks_twice_and_creates_the_account(run_command, database, client, monkeypatch):
    answers = iter([PASSWORD, PASSWORD])
    prompts = []
    monkeypatch.setattr(getpass, "getpass", lambda prompt: prompts.append(prompt) or next(answers))
    monkeypatch.setattr(sys, "stdin", Terminal())
    assert todo_wsgi_cli.main(["--database", database, "create-user", "carol"]) == 0
    assert prompts == ["Password: ", "Password (again): "]
    client.post("/login", headers=basic("carol", PASSWORD), status=200)


def test_create_user_on_a_terminal_with_passwords_that_differ_exits_1_and_creates_nothing(
    database, client, monkeypatch, capsys
):
    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt: next(answers))
    monkeypatch.setattr(sys, "stdin", Terminal())
    assert todo_wsgi_cli.main(["--database", database, "create-user", "carol"]) == 1
    assert "error: the passwords do not match" in capsys.readouterr().err
    client.post("/login", headers=basic("carol", PASSWORD), status=401)


def test_create_user_database_option_wins_over_the_environment(run_command, database, tmp_path, make_app):
    other = str(tmp_path / "option.db")
    result = run_command(database, "--database", other, "create-user", "carol", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    TestApp(validator(make_app(database=other))).post("/login", headers=basic("carol", PASSWORD), status=200)
    TestApp(validator(make_app())).post("/login", headers=basic("carol", PASSWORD), status=401)


def test_short_secret_key_in_the_environment_exits_1_with_a_clear_message(run_command, database):
    result = run_command(
        database, "create-user", "carol", stdin=PASSWORD + "\n", environ={"TODO_SECRET_KEY": "too-short"}
    )
    assert result.returncode == 1
    assert "TODO_SECRET_KEY must be at least 32 bytes" in result.stderr


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url):
    """(status, body) of a GET, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None


@pytest.mark.sqlite_only  # looks for the SQLite file TODO_DATABASE names
def test_waitress_serve_call_create_app_serves_with_the_environment(env, tmp_path, database):
    workdir = tmp_path / "workdir"  # where a default todo.db would appear
    workdir.mkdir()
    port = free_port()
    waitress_serve = Path(sys.executable).parent / "waitress-serve"
    server = subprocess.Popen(
        [str(waitress_serve), f"--listen=127.0.0.1:{port}", "--call", "todo_wsgi:create_app"],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        answer = None
        deadline = time.monotonic() + 10
        while answer is None and server.poll() is None and time.monotonic() < deadline:
            answer = get_json(f"http://127.0.0.1:{port}/healthz")
            if answer is None:
                time.sleep(0.05)
        assert answer == (200, {"status": "ok"}), server.stderr.read().decode() if server.poll() is not None else ""
        assert Path(database).exists()  # TODO_DATABASE was read
        assert not (workdir / "todo.db").exists()
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stderr.close()
