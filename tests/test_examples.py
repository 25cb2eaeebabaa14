"""Every example of the README and docs/ runs, so none can rot.

The convention (docs/testing.md): each fenced block of README.md and docs/*.md says what
it is in its info string.

- ``sh``: commands a reader runs from the checkout with ``make run``'s server up. All
  the ``sh`` blocks of one page run in order, in one bash (``set -euo pipefail``), in a
  fresh directory holding the checkout's ``.venv`` and ``docs/``, against a fresh
  ``python -m todo_wsgi serve``; the only change is the server's port.
- ``python``: a program; each is run below by a test of its own.
- ``text``: output, a file's lines, a diagram: nothing to run.
- ``console``: commands that need root, systemd, a DNS name or minutes, or that keep
  running. Each is listed in CONSOLE with the test that runs what of it can run here,
  or why nothing can.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.served import child_env, free_port, get, serve

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<kind>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.MULTILINE | re.DOTALL
)
KINDS = {"sh", "python", "text", "console"}

# Every console block, by page and first line: the test that runs it here, or why none can.
CONSOLE = {
    ("README.md", "make run    #"): "tests/test_make.py::test_make_run_serves_on_the_listen_address_on_one_cpu",
    ("README.md", "TODO_DATABASE=todo.db .venv/bin/waitress-serve"): (
        "tests/test_examples.py::test_the_readme_s_waitress_serve_line_serves"
    ),
    ("deployment.md", "apt-get install"): "not run: installs packages and adds a system user (root)",
    ("deployment.md", "git clone"): "not run: clones from the network and installs into /opt (root)",
    (
        "deployment.md",
        "install -d -o root",
    ): "tests/test_deploy.py::test_the_unit_s_serve_command_serves_the_database_of_the_environment_file",
    ("deployment.md", "cd /var/lib/todo-wsgi"): (
        "tests/test_deploy.py::test_the_first_admin_step_of_the_deployment_guide_writes_to_the_served_database"
    ),
    (
        "deployment.md",
        "cp /opt/todo-wsgi/src/deploy",
    ): "tests/test_deploy.py::test_systemd_analyze_verify_passes_on_the_units",
    ("deployment.md", "systemctl status"): "not run: needs the running service and a DNS name",
    ("operations.md", "sudo -u todo"): "tests/test_deploy.py::test_the_backup_unit_backs_up_checks_the_copy_and_prunes",
    ("operations.md", "systemctl stop todo-wsgi"): "not run: systemd (the check step is run by test_deploy)",
    ("operations.md", "/opt/todo-wsgi/venv/bin/python -m todo_wsgi --version"): (
        "tests/test_examples.py::test_the_upgrade_procedure_migrates_and_changes_the_version"
    ),
    ("performance.md", "apt-get install wrk"): "not run: installs packages; make bench takes about 20 minutes",
    ("testing.md", ".venv/bin/python -m pytest -k sqlite"): "not run: the test suite itself (make test runs it)",
}


def blocks(page: Path) -> list[tuple[str, str]]:
    """(kind, body) of each fenced block of ``page``, bodies dedented."""
    return [(m["kind"].strip(), textwrap.dedent(m["body"])) for m in FENCE.finditer(page.read_text())]


def test_every_block_says_what_it_is() -> None:
    for page in PAGES:
        for kind, body in blocks(page):
            assert kind in KINDS, f"{page.name}: a ```{kind} block: {body[:60]!r}"


def test_every_console_block_is_run_by_a_named_test_or_says_why_not() -> None:
    found = set()
    for page in PAGES:
        for kind, body in blocks(page):
            if kind == "console":
                key = next(((p, s) for p, s in CONSOLE if p == page.name and body.startswith(s)), None)
                assert key, f"{page.name}: a console block no test accounts for: {body.splitlines()[0]!r}"
                found.add(key)
    assert found == set(CONSOLE), "CONSOLE names blocks that are gone"
    for reason in CONSOLE.values():
        if reason.startswith("not run: "):
            continue
        module, name = re.fullmatch(r"tests/(test_\w+)\.py::(test_\w+)", reason).groups()  # type: ignore[union-attr]
        assert re.search(rf"^def {name}\(", (ROOT / "tests" / f"{module}.py").read_text(), re.MULTILINE), reason


def sandbox(tmp_path: Path) -> Path:
    """A directory as a reader's checkout looks after make: .venv and docs/ (links to the real ones)."""
    venv = Path(sys.prefix)  # the virtual environment these tests run in: the checkout's .venv under make
    (tmp_path / ".venv").symlink_to(venv, target_is_directory=True)
    (tmp_path / "docs").symlink_to(ROOT / "docs", target_is_directory=True)
    return tmp_path


SH_PAGES = [page for page in PAGES if any(kind == "sh" for kind, _ in blocks(page))]


@pytest.mark.skipif(shutil.which("curl") is None, reason="the examples use curl")
@pytest.mark.parametrize("page", SH_PAGES, ids=lambda p: p.name)
def test_the_sh_examples_of_each_page_run_in_order_against_a_fresh_server(page: Path, tmp_path: Path) -> None:
    home = sandbox(tmp_path)
    with serve(home) as server:
        script = "\n".join(body for kind, body in blocks(page) if kind == "sh").replace(
            "127.0.0.1:8080", f"127.0.0.1:{server.port}"
        )
        result = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script],
            cwd=home,
            env=child_env(BASE=server.url),
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    if page.name == "README.md":
        # The server made the database; create-user names it, and made no other.
        assert f") in {home / 'todo.db'}\n" in result.stdout and "a new database" not in result.stdout
        assert '"name":"admin","admin":true' in result.stdout
        assert "walkthrough: every step answered as expected" in result.stdout
        assert "integrity: ok" in result.stdout
        assert f"error: cannot listen on 127.0.0.1:{server.port}: the address is already in use" in result.stderr
    if page.name == "operations.md":
        assert result.stdout.count('{"message":"Could not verify"}') == 5
        assert '{"message":"Too many failed logins; try again later"}' in result.stdout
        assert "unlocked 'carol': 1 throttle record(s) cleared" in result.stdout
        assert result.stdout.count('{"token":"') == 1  # carol logs in once unlocked
        assert "error: 'admin' is the last admin" in result.stderr


def python_blocks(page: str) -> list[str]:
    return [body for kind, body in blocks(ROOT / page) if kind == "python"]


def test_every_python_example_is_run_by_a_test() -> None:
    counted = {page.name: len(python_blocks(str(page.relative_to(ROOT)))) for page in PAGES}
    assert {name: n for name, n in counted.items() if n} == {"README.md": 1}


@pytest.mark.skipif(shutil.which("curl") is None, reason="the example is checked with curl")
def test_the_readme_s_embedding_example_serves_the_api_below_its_prefix(tmp_path: Path) -> None:
    (program,) = python_blocks("README.md")
    home = sandbox(tmp_path)
    port = free_port()
    (home / "site.py").write_text(program.replace("8000", str(port)))
    env = child_env()
    site = subprocess.Popen(
        [str(home / ".venv" / "bin" / "python"), "site.py"], cwd=home, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while get(base + "/todo/healthz") is None:
            assert site.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert get(base + "/todo/healthz") == (200, {"status": "ok"})
        with urllib.request.urlopen(base + "/", timeout=5) as host:
            assert host.read().startswith(b"the host application")
        made = subprocess.run(
            [sys.executable, "-m", "todo_wsgi", "create-user", "admin", "--admin"],
            input="a-long-admin-password\n",
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
        )
        assert made.returncode == 0, made.stderr
        curl = ["curl", "-s", "-D", "-", "-u", "admin:a-long-admin-password", "-X", "POST", base + "/todo/login"]
        token = re.search(r'"token":"([^"]+)"', subprocess.run(curl, capture_output=True, text=True).stdout)[1]  # type: ignore[index]
        created = subprocess.run(
            [
                "curl",
                "-s",
                "-D",
                "-",
                "-H",
                f"Authorization: Bearer {token}",
                "-H",
                "Content-Type: application/json",
                "-d",
                '{"text": "buy milk"}',
                base + "/todo/todo",
            ],
            capture_output=True,
            text=True,
        ).stdout
        assert re.search(r"(?im)^location: /todo/todo/1\r?$", created), created
    finally:
        site.terminate()
        site.wait(timeout=10)
        site.stderr.close()  # type: ignore[union-attr]


def console_block(page: str, start: str) -> str:
    (body,) = [body for kind, body in blocks(ROOT / page) if kind == "console" and body.startswith(start)]
    return body


def test_the_readme_s_waitress_serve_line_serves(tmp_path: Path) -> None:
    (line,) = console_block("README.md", "TODO_DATABASE=todo.db .venv/bin/waitress-serve").splitlines()
    home = sandbox(tmp_path)
    port = free_port()
    line = line.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    server = subprocess.Popen(
        ["bash", "-c", line], cwd=home, env=child_env(), stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while (answer := get(f"http://127.0.0.1:{port}/healthz")) is None:
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert answer == (200, {"status": "ok"})
        assert (home / "todo.db").is_file()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)


@pytest.mark.sqlite_only
def test_the_upgrade_procedure_migrates_and_changes_the_version(tmp_path: Path) -> None:
    """The steps of docs/operations.md "Upgrading" that run without root: version, backup,
    check (which migrates), version; systemctl and the install are not run."""
    import sqlite3
    from importlib import metadata

    steps = console_block("docs/operations.md", "/opt/todo-wsgi/venv/bin/python -m todo_wsgi --version")
    commands = [line.split("#")[0].strip() for line in steps.splitlines() if "-m todo_wsgi" in line]
    assert [c.split()[-1].rsplit("/", 1)[-1] for c in commands] == [
        "--version",
        "before-upgrade.db",
        "check",
        "--version",
    ]
    env_file = tmp_path / "env"
    database = tmp_path / "todo.db"
    env_file.write_text(f"TODO_DATABASE={database}\n")
    (tmp_path / "backups").mkdir()
    # A database one migration behind this code, as the previous version left it.
    import store

    with sqlite3.connect(database) as conn:
        for step in store.MIGRATIONS[:-1]:
            step(conn) if callable(step) else conn.executescript(step)
        conn.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION - 1}")
    outputs = []
    for command in commands:
        command = (
            command.replace("sudo -u todo ", "")
            .replace("/opt/todo-wsgi/venv/bin/python", sys.executable)
            .replace("/etc/todo-wsgi/env", str(env_file))
            .replace("/var/backups/todo-wsgi", str(tmp_path / "backups"))
        )
        result = subprocess.run(command.split(), env=child_env(), capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, command + "\n" + result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[3] == f"todo-wsgi {metadata.version('todo-wsgi')}\n"
    assert (tmp_path / "backups" / "before-upgrade.db").is_file()
    assert f"schema version: {store.SCHEMA_VERSION} (this code: {store.SCHEMA_VERSION})" in outputs[2]
    assert "integrity: ok" in outputs[2]
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (store.SCHEMA_VERSION,)
