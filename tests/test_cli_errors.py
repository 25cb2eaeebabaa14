"""Operator commands fail in one line: ``error: ...`` on standard error, naming the
cause and the file or address, and a non-zero exit (argparse's usage line may
come first for a mistyped command line). One test per way a command fails."""

from __future__ import annotations

import getpass
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

import todo_wsgi_cli
from tests.conftest import ITERATIONS, RunCommand

PASSWORD = "a-long-enough-password"


def error_line(stderr: str) -> str:
    """The one error line, after argparse's usage lines if any; no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert lines, "nothing on standard error"
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), stderr
    return errors[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env(**settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("TODO_")}
    env.update(TODO_PBKDF2_ITERATIONS=str(ITERATIONS), **settings)
    return env


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A real child process: what an operator sees, to the byte.
        result = subprocess.run(
            [sys.executable, "-m", "todo_wsgi", "serve", "--listen", f"127.0.0.1:{port}"],
            env=child_env(TODO_DATABASE=str(tmp_path / "todo.db")),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert (
        result.stderr == f"error: cannot listen on 127.0.0.1:{port}: the address is already in use"
        " (is another server running there?)\n"
    )


def test_serve_on_an_address_not_of_this_machine_says_so(run_command: RunCommand, tmp_path: Path) -> None:
    result = run_command(str(tmp_path / "todo.db"), "serve", "--listen", "192.0.2.1:8080")  # RFC 5737 TEST-NET-1
    assert result.returncode == 1
    assert (
        error_line(result.stderr) == "error: cannot listen on 192.0.2.1:8080: the address is not one of this machine's"
    )


@pytest.mark.parametrize(
    ("listen", "says"),
    [
        ("18081", "'18081' is not HOST:PORT; for example 127.0.0.1:18081"),
        (":18081", "':18081' names no host; for example 127.0.0.1:18081"),
        ("127.0.0.1:99999", "'127.0.0.1:99999': the port must be a number from 0 to 65535"),
        ("127.0.0.1:http", "'127.0.0.1:http': the port must be a number from 0 to 65535"),
    ],
)
def test_serve_with_a_bad_listen_address_says_so_before_serving(
    run_command: RunCommand, tmp_path: Path, listen: str, says: str
) -> None:
    result = run_command(str(tmp_path / "todo.db"), "serve", "--listen", listen)
    assert result.returncode == 2
    assert error_line(result.stderr).startswith(f"error: argument --listen: {says}")
    assert not (tmp_path / "todo.db").exists()


@pytest.fixture
def unwritable_directory() -> Iterator[tuple[Path, list[str]]]:
    """A directory this test's commands cannot write, and the prefix of a child command that cannot.

    Root writes anywhere, so as root the child runs as nobody (65534) through setpriv."""
    directory = Path(tempfile.mkdtemp(prefix="todo-unwritable-"))
    directory.chmod(0o755)
    try:
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv: no way to be a user who cannot write")
            yield directory, [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        else:
            directory.chmod(0o555)
            yield directory, []
    finally:
        directory.chmod(0o755)
        shutil.rmtree(directory)


def test_create_user_in_an_unwritable_directory_says_the_directory_cannot_be_written(
    unwritable_directory: tuple[Path, list[str]],
) -> None:
    directory, as_other = unwritable_directory
    database = directory / "todo.db"
    result = subprocess.run(
        [*as_other, sys.executable, "-m", "todo_wsgi", "--database", str(database), "create-user", "admin", "--admin"],
        env=child_env(),
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert line.startswith(f"error: cannot create the database {database}: its directory {directory} is not writable")
    assert "readonly" not in line
    assert not database.exists()


def test_a_command_on_a_database_in_an_unwritable_directory_says_so(
    unwritable_directory: tuple[Path, list[str]], run_command: RunCommand
) -> None:
    directory, as_other = unwritable_directory
    database = directory / "todo.db"
    directory.chmod(0o755)
    assert run_command(str(database), "create-user", "admin", stdin=PASSWORD + "\n").returncode == 0
    for name in os.listdir(directory):
        (directory / name).chmod(0o644)
    if not as_other:
        directory.chmod(0o555)
    result = subprocess.run(
        [*as_other, sys.executable, "-m", "todo_wsgi", "--database", str(database), "list-users"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert result.returncode == 1
    assert error_line(result.stderr).startswith(
        f"error: cannot use the database {database}: its directory {directory} is not writable"
    )


@pytest.mark.parametrize("content", [b"this is not a database\n" * 100, b""])
def test_check_on_a_corrupt_database_says_so_in_one_line(
    run_command: RunCommand, tmp_path: Path, content: bytes
) -> None:
    database = tmp_path / "todo.db"
    database.write_bytes(content or b"SQLite format 3\x00" + b"\xff" * 4000)
    result = run_command(str(database), "check")
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert line.startswith(f"error: cannot open the database {database}: ")
    assert "not a SQLite database, or damaged" in line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, EOFError])
def test_ctrl_c_or_end_of_input_at_the_password_prompt_ends_in_one_line_and_creates_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    interruption: type[BaseException],
) -> None:
    def prompt(text: str) -> str:
        raise interruption

    monkeypatch.setattr(getpass, "getpass", prompt)
    monkeypatch.setattr(sys, "stdin", Terminal())
    database = tmp_path / "todo.db"
    assert todo_wsgi_cli.main(["--database", str(database), "create-user", "admin", "--admin"]) == 1
    assert error_line(capsys.readouterr().err) == (
        "error: no password given (the prompt was interrupted); nothing was changed"
    )
    assert not database.exists()


def test_end_of_piped_input_before_a_password_ends_in_one_line(run_command: RunCommand, tmp_path: Path) -> None:
    result = run_command(str(tmp_path / "todo.db"), "create-user", "admin", stdin="")
    assert result.returncode == 1
    assert error_line(result.stderr).startswith("error: no password: standard input ended")
    assert not (tmp_path / "todo.db").exists()


def test_ctrl_c_during_a_command_ends_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(todo_wsgi_cli, "run", interrupted)
    assert todo_wsgi_cli.main(["--database", str(tmp_path / "todo.db"), "list-users"]) == 130
    assert error_line(capsys.readouterr().err) == "error: interrupted"


def test_a_postgresql_server_that_cannot_be_reached_is_named_in_one_line(run_command: RunCommand) -> None:
    pytest.importorskip("psycopg")
    port = free_port()
    url = f"postgresql://todo:secret-password@127.0.0.1:{port}/todo?connect_timeout=2"
    result = run_command(url, "list-users")
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert line.startswith("error: cannot use the PostgreSQL database: ")
    assert f"port {port}" in line and "127.0.0.1" in line
    assert "secret-password" not in result.stderr


def test_a_mistyped_command_line_gives_usage_then_one_error_line(run_command: RunCommand, tmp_path: Path) -> None:
    result = run_command(str(tmp_path / "todo.db"), "serve", "--threads", "many")
    assert result.returncode == 2
    assert error_line(result.stderr).startswith("error: argument --threads: invalid int value")


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        todo_wsgi_cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"todo-wsgi {metadata.version('todo-wsgi')}\n"


def test_version_without_an_installed_package_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert todo_wsgi_cli.version() == "unknown (not installed)"


def test_a_database_path_that_is_a_directory_is_named(run_command: RunCommand, tmp_path: Path) -> None:
    result = run_command(str(tmp_path), "create-user", "admin", stdin=PASSWORD + "\n")
    assert result.returncode == 1
    assert error_line(result.stderr) == f"error: the database {tmp_path} is not a file"


def test_a_database_in_a_directory_that_does_not_exist_is_named(run_command: RunCommand, tmp_path: Path) -> None:
    database = tmp_path / "no-such-directory" / "todo.db"
    result = run_command(str(database), "create-user", "admin", stdin=PASSWORD + "\n")
    assert result.returncode == 1
    assert error_line(result.stderr) == (
        f"error: cannot create the database {database}: there is no directory {database.parent}"
    )


def test_permissions_are_checked_before_sqlite_opens_anything(
    run_command: RunCommand, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "todo.db"
    assert run_command(str(database), "create-user", "admin", stdin=PASSWORD + "\n").returncode == 0
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != database and real_access(path, mode))
    result = run_command(str(database), "list-users")
    assert result.returncode == 1
    assert error_line(result.stderr) == (
        f"error: cannot use the database {database}: the file is not readable and writable by this user"
    )
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    result = run_command(str(database), "list-users")
    assert error_line(result.stderr).startswith(f"error: cannot use the database {database}: its directory")


def test_create_user_with_a_bad_name_asks_for_no_password(run_command: RunCommand, tmp_path: Path) -> None:
    result = run_command(str(tmp_path / "todo.db"), "create-user", "a" * 51, stdin="")
    assert result.returncode == 1
    assert error_line(result.stderr) == "error: 'name' must be 1 to 50 characters"
    assert not (tmp_path / "todo.db").exists()


def test_serve_on_a_host_name_that_does_not_resolve_says_so(run_command: RunCommand, tmp_path: Path) -> None:
    result = run_command(str(tmp_path / "todo.db"), "serve", "--listen", "no-such-host.invalid:8080")
    assert result.returncode == 1
    assert error_line(result.stderr).startswith("error: cannot listen on no-such-host.invalid:8080: ")


@pytest.mark.sqlite_only
def test_check_on_a_database_damaged_inside_says_so_in_one_line(run_command: RunCommand, database: str) -> None:
    import sqlite3

    assert run_command(database, "create-user", "admin", stdin=PASSWORD + "\n").returncode == 0
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    raw = bytearray(Path(database).read_bytes())
    page = len(raw) // pages
    raw[page : 2 * page] = b"\xff" * page  # the page after the header: the schema's tables
    Path(database).write_bytes(bytes(raw))
    result = run_command(database, "check")
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert str(Path(database)) in line and ("damaged" in line or "malformed" in line), line


def test_a_postgresql_server_that_refuses_the_schema_is_named_in_one_line(
    run_command: RunCommand, monkeypatch: pytest.MonkeyPatch
) -> None:
    class InsufficientPrivilege(Exception):
        """As psycopg raises it when the role may not create the schema."""

    def refuse(database: str | None = None) -> object:
        raise InsufficientPrivilege("permission denied for schema public\nLINE 2: CREATE TABLE users")

    monkeypatch.setattr(todo_wsgi_cli, "create_app", refuse)
    result = run_command("postgresql://todo:secret@127.0.0.1:5432/todo", "list-users")
    assert result.returncode == 1
    assert error_line(result.stderr) == (
        "error: cannot use the PostgreSQL database postgresql://todo:***@127.0.0.1:5432/todo:"
        " permission denied for schema public LINE 2: CREATE TABLE users"
    )


def test_an_unexpected_failure_opening_sqlite_is_not_hidden(
    run_command: RunCommand, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(database: str | None = None) -> object:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(todo_wsgi_cli, "create_app", broken)
    with pytest.raises(ZeroDivisionError):
        run_command(str(tmp_path / "todo.db"), "create-user", "admin", stdin=PASSWORD + "\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="about root working on another user's database directory")
def test_root_on_a_database_directory_of_another_user_is_told_to_run_as_that_user(
    run_command: RunCommand, tmp_path: Path
) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    os.chown(directory, 65534, 65534)
    result = run_command(str(directory / "todo.db"), "create-user", "admin", "--admin", stdin=PASSWORD + "\n")
    assert result.returncode == 1
    import pwd

    name = pwd.getpwuid(65534).pw_name
    assert error_line(result.stderr) == (
        f"error: the database directory {directory} belongs to {name}: run this as that user "
        f"(sudo -u {name} ...), so the files SQLite writes there stay {name}'s"
    )
    assert not (directory / "todo.db").exists()


def test_a_user_id_without_a_name_is_named_by_its_number() -> None:
    assert todo_wsgi_cli._user_name(2**31 - 7) == str(2**31 - 7)
