"""Schemathesis (v4) holds the live service to openapi.json: every operation, positive and negative data.

A waitress server on a loopback port serves an app on this test's database;
``st run`` drives it through all four phases (examples, coverage, fuzzing,
stateful) with every default check of v4, which is every built-in check: no
5xx, status codes, content types, headers and bodies as documented, invalid
data refused, valid data accepted, 405 with Allow on undocumented methods,
auth enforced, deleted resources gone and created ones there.

How the fuzzer keeps its admin, see tests/schemathesis_hooks.py. The login
throttle is lifted for this server only: schemathesis probes /login with the
same invalid credentials again and again and expects 401 each time, while
the contract answers 429 after five failures (tests/test_beyond.py holds that).

Bounded by --max-examples and one worker: 7 to 10 seconds per backend on two
cores, so that the whole of ``make test`` stays well under a minute.
To explore further by hand, run the same ``st run`` with a larger
--max-examples and another --seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import todo_wsgi
from tests.conftest import add_account
from tests.live import LiveServer

ROOT = Path(__file__).resolve().parent.parent
# --max-examples per operation. What reaches a backend's own limits is mostly
# the coverage phase's boundary values (empty, huge, NUL, wrong types); the
# PostgreSQL run exercises the same HTTP code as the SQLite one, so it fuzzes less.
MAX_EXAMPLES = {"sqlite": 25, "postgres": 10}
SEED = 1
ADMIN_PASSWORD = "fuzzing-admin-password"


@pytest.fixture
def served_app(make_app: Callable[..., todo_wsgi.TodoApp]) -> todo_wsgi.TodoApp:
    """The app under fuzzing: this test's database, the real clock, no login throttle."""
    return make_app(clock=time.time, login_max_failures=10**9)


@pytest.fixture
def live_url(served_app: todo_wsgi.TodoApp) -> Iterator[str]:
    """A waitress server for it on 127.0.0.1 and an ephemeral port; stopped at the end."""
    server = LiveServer(served_app, threads=4)
    try:
        yield server.url
    finally:
        server.close()


def test_schemathesis_finds_no_failure_in_any_operation(
    live_url: str, served_app: todo_wsgi.TodoApp, tmp_path: Path, database: str
) -> None:
    admin_name = f"fuzz-admin-{uuid.uuid4().hex[:8]}"  # a name the fuzzer will not stumble on
    admin = add_account(served_app, admin_name, ADMIN_PASSWORD, admin=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # for the hooks module; st runs in tmp_path, where it keeps its caches
        "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
        "TODO_ST_URL": live_url,
        "TODO_ST_ADMIN_NAME": admin_name,
        "TODO_ST_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "TODO_ST_ADMIN_PUBLIC_ID": admin["public_id"],
    }
    command = [
        str(Path(sys.executable).parent / "st"),
        f"--config-file={ROOT / 'tests' / 'schemathesis.toml'}",
        "run",
        str(todo_wsgi.OPENAPI_PATH),
        f"--url={live_url}",
        "--mode=all",  # positive and negative data
        f"--max-examples={MAX_EXAMPLES['postgres' if database.startswith('postgresql') else 'sqlite']}",
        f"--seed={SEED}",
        "--workers=1",
        "--generation-database=none",
        "--no-color",
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    web = (todo_wsgi.web_file, todo_wsgi.web_redirect)  # the browser client's files: not in the document
    operations = len([route for route in todo_wsgi.ROUTES if route[2] not in web])
    assert f"{operations} selected / {operations} total" in result.stdout
    assert "No issues found" in result.stdout
