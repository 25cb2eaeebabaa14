"""Deploy files that do what the docs say, run as far as they run without root and systemd.

The files in deploy/ are copied into this test's directory with their paths pointed at
it (the venv at this interpreter's, /etc/todo-wsgi/env, /var/lib/todo-wsgi and
/var/backups/todo-wsgi at directories of the test's own); then the units' own command
lines run, systemd-analyze verifies the units (where it exists), and the operator's
commands of docs/deployment.md run against the same settings file.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.served import Served, child_env, get, serve, waitress_serve

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PASSWORD = "a-long-admin-password"


@dataclass
class Install:
    """deploy/ as installed on a server, every path pointed into a test directory."""

    root: Path
    env: Path
    state: Path
    backups: Path

    def unit(self, name: str) -> str:
        return (self.root / name).read_text()


def rewrite(text: str, install: Install) -> str:
    return (
        text.replace("/opt/todo-wsgi/venv/bin/python", sys.executable)
        .replace("/etc/todo-wsgi/env", str(install.env))
        .replace("/var/lib/todo-wsgi", str(install.state))
        .replace("/var/backups/todo-wsgi", str(install.backups))
    )


@pytest.fixture
def install(tmp_path: Path) -> Install:
    installed = Install(tmp_path / "systemd", tmp_path / "env", tmp_path / "state", tmp_path / "backups")
    for directory in (installed.root, installed.state, installed.backups):
        directory.mkdir()
    # docs/deployment.md step 4: the example file is the settings file.
    installed.env.write_text(
        rewrite((DEPLOY / "todo-wsgi.env.example").read_text(), installed).replace(
            "TODO_PBKDF2_ITERATIONS=600000", "TODO_PBKDF2_ITERATIONS=1000"
        )
    )
    for unit in ("todo-wsgi.service", "todo-wsgi-backup.service", "todo-wsgi-backup.timer"):
        (installed.root / unit).write_text(rewrite((DEPLOY / unit).read_text(), installed))
    return installed


def exec_starts(unit: str) -> list[str]:
    """Each ExecStart= command line of a unit, continuation lines joined, % and $ unescaped."""
    joined = re.sub(r"\\\n\s*", " ", unit)
    lines = [line.removeprefix("ExecStart=") for line in joined.splitlines() if line.startswith("ExecStart=")]
    return [line.replace("%%", "%").replace("$$", "$") for line in lines]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_passes_on_the_units(install: Install) -> None:
    units = [
        str(install.root / name) for name in ("todo-wsgi.service", "todo-wsgi-backup.service", "todo-wsgi-backup.timer")
    ]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # no unknown key, no bad value, no missing program


def test_the_unit_runs_serve_with_the_environment_file_and_no_hand_copied_limits(install: Install) -> None:
    (command,) = exec_starts(install.unit("todo-wsgi.service"))
    args = shlex.split(command)
    assert args[:4] == [sys.executable, "-m", "todo_wsgi", "serve"]
    assert args[args.index("--env-file") + 1] == str(install.env)
    assert not [arg for arg in args if "max-request-body-size" in arg]
    assert "EnvironmentFile=" not in install.unit("todo-wsgi.service")  # one reader of the file: serve


def start_unit_command(install: Install) -> Served:
    """The service's ExecStart as systemd runs it: in the state directory, no TODO_ variable set."""
    (command,) = exec_starts(install.unit("todo-wsgi.service"))
    args = [arg.replace("127.0.0.1:8080", "127.0.0.1:0") for arg in shlex.split(command)]
    return Served(args, child_env(), cwd=install.state)


def test_the_unit_s_serve_command_serves_the_database_of_the_environment_file(install: Install) -> None:
    with start_unit_command(install) as server:
        assert get(server.url + "/healthz") == (200, {"status": "ok"})
    assert (install.state / "todo.db").is_file()


def raw_post(port: int, length: int) -> tuple[int, str]:
    """POST /todo declaring ``length`` bytes of body; the status and content type of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"POST /todo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        sock.sendall(head.encode() + b" " * length)
        answer = sock.makefile("rb")
        status = int(answer.readline().split()[1])
        headers = []
        while (line := answer.readline().decode("latin-1").strip()) != "":
            headers.append(line)
    content_type = [
        line.split(":", 1)[1].split(";")[0].strip() for line in headers if line.lower().startswith("content-type:")
    ]
    return status, content_type[0] if content_type else ""


def test_the_unit_s_serve_takes_its_body_limit_from_the_environment_file(install: Install) -> None:
    install.env.write_text(install.env.read_text().replace("TODO_MAX_BODY_BYTES=65536", "TODO_MAX_BODY_BYTES=1000"))
    with start_unit_command(install) as server:
        # Within waitress's limit (the app's + 1024): the app answers (in JSON: no token here).
        assert raw_post(server.port, 1500) == (401, "application/json")
        # Over waitress's: refused from the headers alone, never buffered.
        assert raw_post(server.port, 3000) == (413, "text/plain")


def test_the_first_admin_step_of_the_deployment_guide_writes_to_the_served_database(install: Install) -> None:
    guide = (ROOT / "docs" / "deployment.md").read_text()
    (step,) = [line.strip() for line in guide.splitlines() if "create-user admin --admin" in line]
    args = shlex.split(rewrite(step, install))
    assert args[:3] == ["sudo", "-u", "todo"]  # as the service's user: here, as this test's
    result = subprocess.run(
        args[3:], input=PASSWORD + "\n", env=child_env(), cwd=install.state, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(f" in {install.state / 'todo.db'} (a new database, created now)\n")
    with start_unit_command(install) as server:
        login = subprocess.run(
            ["curl", "-s", "-u", f"admin:{PASSWORD}", "-X", "POST", server.url + "/login"],
            capture_output=True,
            text=True,
        )
    assert '"token"' in login.stdout


def test_the_backup_unit_backs_up_checks_the_copy_and_prunes(install: Install) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "todo_wsgi", "--env-file", str(install.env), "create-user", "admin", "--admin"],
        input=PASSWORD + "\n",
        env=child_env(),
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    old = install.backups / "todo-2000-01-01.db"
    old.write_bytes(b"")
    subprocess.run(["touch", "-d", "2000-01-01", str(old)], check=True)
    backup, prune = exec_starts(install.unit("todo-wsgi-backup.service"))
    result = subprocess.run(shlex.split(backup), env=child_env(), cwd=install.state, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "integrity: ok" in result.stdout
    copies = sorted(p.name for p in install.backups.glob("todo-*.db"))
    assert len(copies) == 2 and re.fullmatch(r"todo-[0-9]{4}-[0-9]{2}-[0-9]{2}\.db", copies[1])
    result = subprocess.run(shlex.split(prune), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in install.backups.glob("todo-*.db")) == copies[1:]


def caddy_global_timeouts(caddyfile: str) -> dict[str, str]:
    """The ``servers { timeouts { ... } }`` of the Caddyfile's global options block."""
    global_block = re.match(r"\s*(?:#[^\n]*\n\s*)*\{(.*?)\n\}", caddyfile, flags=re.DOTALL)
    assert global_block, "the Caddyfile opens with no global options block"
    timeouts = re.search(r"servers\s*\{\s*timeouts\s*\{([^}]*)\}", global_block[1])
    assert timeouts, "no servers { timeouts { ... } } in the global options"
    return dict(line.split() for line in timeouts[1].strip().splitlines())


def test_the_caddyfile_sets_read_write_and_idle_timeouts() -> None:
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    timeouts = caddy_global_timeouts(caddyfile)
    assert set(timeouts) == {"read_header", "read_body", "write", "idle"}
    seconds = {"s": 1, "m": 60}
    as_seconds = {key: int(value[:-1]) * seconds[value[-1]] for key, value in timeouts.items()}
    # Slow headers and bodies are cut well before waitress's own 30 s channel timeout.
    assert as_seconds["read_header"] < 30 and as_seconds["read_body"] <= 30
    if shutil.which("caddy"):
        result = subprocess.run(
            ["caddy", "validate", "--adapter", "caddyfile", "--config", str(DEPLOY / "Caddyfile")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr


def test_the_docs_claim_no_proxy_protection_the_caddyfile_does_not_give() -> None:
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if "rate_limit" not in caddyfile:
        for page in pages:
            text = " ".join(page.read_text().split())
            for claim in re.finditer(r"[Rr]ate[- ]limit[^.]*\.", text):
                assert (
                    "does not rate-limit" in text[max(0, claim.start() - 200) : claim.end()] or "plugin" in claim[0]
                ), f"{page.name}: {claim[0]}"


ACCESS_LINE = re.compile(
    r"INFO:todo_wsgi\.access:[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
    r" (?P<rest>\S+ \S+ \S+ [0-9]{3}) [0-9]+\.[0-9]ms (?P<who>\S+)"
)


def access_lines(server: Served) -> list[str]:
    for path in ("/healthz", "/nowhere?secret=1", "/login"):
        get(server.url + path)
    server.stop()
    return [f"{found['rest']} {found['who']}" for line in server.lines if (found := ACCESS_LINE.fullmatch(line))]


def test_the_access_log_reads_the_same_under_serve_and_waitress_serve(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    under_serve = access_lines(serve(tmp_path / "a"))
    under_waitress_serve = access_lines(waitress_serve(tmp_path / "b"))
    expected = ["127.0.0.1 GET /healthz 200 -", "127.0.0.1 GET /nowhere 404 -", "127.0.0.1 GET /login 401 -"]
    # The health checks that waited for each server to start come first.
    assert under_serve[-3:] == expected
    assert under_waitress_serve[-3:] == expected
