"""The walk-through (docs/walkthrough.sh) runs top to bottom against a fresh server,
as a newcomer runs it: ``python -m todo_wsgi serve`` in a child process, the script
with nothing but BASE pointing at it, the operator's command from the same directory."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.served import child_env, serve

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "docs" / "walkthrough.sh"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the walk-through needs curl")


def run_walkthrough(url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = child_env(BASE=url, PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_walkthrough_runs_top_to_bottom_against_a_fresh_server_and_again(tmp_path: Path) -> None:
    with serve(tmp_path) as server:  # ./todo.db in tmp_path, as make run in the checkout
        first = run_walkthrough(server.url, tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "created admin admin" in first.stdout  # it made the first admin itself
        again = run_walkthrough(server.url, tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "created admin" not in again.stdout
    assert first.stdout.rstrip().endswith("walkthrough: every step answered as expected")


def test_the_walkthrough_shows_every_request_and_its_answer(tmp_path: Path) -> None:
    with serve(tmp_path) as server:
        result = run_walkthrough(server.url, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = re.findall(r"^\$ ([A-Z]+) (\S+)\n([0-9]{3}) ", result.stdout, flags=re.MULTILINE)
    assert len(shown) == result.stdout.count("\n$ ")
    assert ("PATCH", f"/user/{shown[-1][1].rsplit('/', 1)[1]}", "200") in shown
    # The last-admin rule, shown on the operator's own account while it is the only admin.
    last_admin = [(method, status) for method, path, status in shown if status == "409"]
    assert last_admin == [("PATCH", "409"), ("DELETE", "409")]
    assert '{"message":"Cannot remove the last admin!"}' in result.stdout


def test_the_walkthrough_runs_again_after_a_run_stopped_half_way(tmp_path: Path) -> None:
    with serve(tmp_path) as server:
        # A run stopped after alice was made and renamed leaves "alicia" behind.
        stopped = subprocess.run(
            ["bash", "-c", f"sed '/# 12\\./,$d' {SCRIPT} | bash"],
            cwd=tmp_path,
            env=child_env(BASE=server.url, PYTHON=sys.executable),
            capture_output=True,
            text=True,
        )
        assert stopped.returncode == 0 and "alicia" in stopped.stdout, stopped.stderr
        assert "every step answered as expected" not in stopped.stdout
        result = run_walkthrough(server.url, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_walkthrough_stops_at_the_first_answer_that_differs(tmp_path: Path) -> None:
    with serve(tmp_path) as server:
        # The admin password is not the account's: the login answers 401, and the command
        # line refuses to make a second admin, in one line.
        assert run_walkthrough(server.url, tmp_path).returncode == 0
        env = child_env(BASE=server.url, PYTHON=sys.executable, ADMIN_PASSWORD="not-the-password")
        result = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert result.returncode == 1
        assert result.stderr == f"error: the name 'admin' is already taken in {tmp_path / 'todo.db'}\n"
        # A server that answers otherwise than the script expects: it says so and stops.
        env = child_env(BASE=server.url + "/nowhere", PYTHON=sys.executable)
        result = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.endswith("walkthrough: expected 200, got 404\n")


def test_the_walkthrough_run_from_another_directory_than_the_server_s_says_so(tmp_path: Path) -> None:
    served, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    served.mkdir()
    elsewhere.mkdir()
    with serve(served) as server:
        result = run_walkthrough(server.url, elsewhere)
        assert result.returncode == 1
        assert "(a new database, created now)" in result.stdout  # create-user said where it wrote
        assert result.stderr.endswith("run this from the directory the server runs in (make run: the checkout)\n")
        env = child_env(BASE=server.url)  # PYTHON defaults to .venv/bin/python, absent here
        result = subprocess.run(["bash", str(SCRIPT)], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("walkthrough: no .venv/bin/python here: run this from the checkout")
