"""One source of settings: ``--env-file PATH`` on every command, read as systemd's
``EnvironmentFile=`` reads it, into the settings the server uses; ``create-user``
says which database it wrote to, and when it created it."""

from __future__ import annotations

from pathlib import Path

import pytest

import todo_wsgi_cli
from tests.conftest import RunCommand

PASSWORD = "a-long-enough-password"


def test_the_environment_file_is_read_as_systemd_reads_it(tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.write_text(
        "# a comment\n"
        "; another\n"
        "\n"
        "TODO_DATABASE=/var/lib/todo-wsgi/todo.db\n"
        "  TODO_TOKEN_TTL = 600  \n"
        "TODO_CORS_ORIGINS='https://a.example, https://b.example'\n"
        'TODO_SECRET_KEY="with \\"quotes\\" and \\\\ inside"\n'
        "TODO_EMPTY=\n"
        "TODO_URL=postgresql://todo:p=w@db/todo?sslmode=require\n"
    )
    assert todo_wsgi_cli.read_env_file(str(env)) == {
        "TODO_DATABASE": "/var/lib/todo-wsgi/todo.db",
        "TODO_TOKEN_TTL": "600",
        "TODO_CORS_ORIGINS": "https://a.example, https://b.example",
        "TODO_SECRET_KEY": 'with "quotes" and \\ inside',
        "TODO_EMPTY": "",
        "TODO_URL": "postgresql://todo:p=w@db/todo?sslmode=require",
    }


@pytest.mark.parametrize("line", ["export TODO_DATABASE=x.db", "TODO_DATABASE", "1X=2"])
def test_a_line_that_is_not_key_equals_value_is_named_with_its_number(
    run_command: RunCommand, tmp_path: Path, line: str
) -> None:
    env = tmp_path / "env"
    env.write_text(f"# settings\n{line}\n")
    result = run_command(str(tmp_path / "todo.db"), "--env-file", str(env), "list-users")
    assert result.returncode == 1
    assert result.stderr == f"error: {env} line 2: expected KEY=VALUE, got {line!r}\n"


def test_a_missing_environment_file_is_named(run_command: RunCommand, tmp_path: Path) -> None:
    result = run_command(str(tmp_path / "todo.db"), "list-users", "--env-file", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert (
        result.stderr == f"error: cannot read the environment file {tmp_path / 'missing'}: No such file or directory\n"
    )


@pytest.mark.sqlite_only
def test_create_user_writes_to_the_database_of_the_environment_file_and_says_so(
    run_command: RunCommand, tmp_path: Path, database: str
) -> None:
    served = tmp_path / "served" / "todo.db"
    served.parent.mkdir()
    env = tmp_path / "env"
    env.write_text(f"TODO_DATABASE={served}\nTODO_PBKDF2_ITERATIONS=1000\n")
    # The shell's TODO_DATABASE names another database: the file wins, as under systemd.
    result = run_command(database, "create-user", "admin", "--admin", "--env-file", str(env), stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("created admin admin (")
    assert result.stdout.endswith(f") in {served} (a new database, created now)\n")
    assert served.exists() and not Path(database).exists()
    result = run_command(database, "--env-file", str(env), "create-user", "alice", stdin=PASSWORD + "\n")
    assert result.stdout.endswith(f") in {served}\n")
    listed = run_command(database, "--env-file", str(env), "list-users")
    assert [line.split("\t")[2] for line in listed.stdout.splitlines()] == ["admin", "alice"]


def test_the_database_option_wins_over_the_environment_file(run_command: RunCommand, tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.write_text(f"TODO_DATABASE={tmp_path / 'from-file.db'}\n")
    result = run_command(
        str(tmp_path / "from-environment.db"),
        "--env-file",
        str(env),
        "create-user",
        "admin",
        "--database",
        str(tmp_path / "from-option.db"),
        stdin=PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.glob("*.db")] == ["from-option.db"]


def test_the_environment_file_is_put_back_after_the_command(
    run_command: RunCommand, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TODO_TOKEN_TTL", "77")
    with todo_wsgi_cli.environment({"TODO_TOKEN_TTL": "600", "TODO_NEW": "x"}):
        import os

        assert (os.environ["TODO_TOKEN_TTL"], os.environ["TODO_NEW"]) == ("600", "x")
    import os

    assert os.environ["TODO_TOKEN_TTL"] == "77" and "TODO_NEW" not in os.environ


def test_create_user_on_postgresql_names_the_server_without_its_password(
    run_command: RunCommand, database: str
) -> None:
    result = run_command(database, "create-user", "admin", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    where = todo_wsgi_cli.describe(database)
    assert result.stdout.rstrip("\n").endswith(f" in {where}") or result.stdout.rstrip().endswith("created now)")
    if database.startswith("postgresql"):
        assert "(a new database" not in result.stdout


def test_serve_takes_waitress_s_limits_and_the_trusted_proxy_from_the_environment_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import waitress

    captured: dict[str, object] = {}
    monkeypatch.setattr(
        waitress, "serve", lambda app, **kwargs: captured.update(kwargs, database=app.settings.database)
    )
    for name in [name for name in os.environ if name.startswith("TODO_")]:
        monkeypatch.delenv(name)
    env = tmp_path / "env"
    env.write_text(
        f"TODO_DATABASE={tmp_path / 'served.db'}\nTODO_MAX_BODY_BYTES=1000\n"
        "TODO_TRUSTED_PROXY=127.0.0.1\nTODO_TRUSTED_PROXY_HEADERS=x-forwarded-for\n"
    )
    assert todo_wsgi_cli.main(["serve", "--env-file", str(env), "--listen", "127.0.0.1:0"]) == 0
    assert captured["database"] == str(tmp_path / "served.db")
    assert captured["max_request_body_size"] == 1000 + 1024
    assert (captured["trusted_proxy"], captured["trusted_proxy_headers"]) == ("127.0.0.1", "x-forwarded-for")
    assert "TODO_TRUSTED_PROXY" not in os.environ  # put back after the command


def test_a_setting_of_the_wrong_kind_in_the_environment_file_is_named_in_one_line(
    run_command: RunCommand, tmp_path: Path
) -> None:
    env = tmp_path / "env"
    env.write_text("TODO_TOKEN_TTL=half an hour\n")
    result = run_command(str(tmp_path / "todo.db"), "--env-file", str(env), "list-users")
    assert result.returncode == 1
    assert result.stderr == (
        f"error: setting token_ttl (TODO_TOKEN_TTL) must be a positive integer, got 'half an hour' (from {env})\n"
    )
