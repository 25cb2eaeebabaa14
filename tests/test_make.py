"""``make run`` installs what serving needs and nothing else, serves on ``LISTEN``, and keeps
the server on one CPU where taskset exists; ``make test`` installs the test tools."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.served import child_env, free_port, get

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(*args: str) -> list[str]:
    """The commands ``make ARGS`` would run, every target taken as out of date."""
    result = subprocess.run(["make", "-n", "-B", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def test_make_run_installs_the_runtime_dependencies_only() -> None:
    installs = [line for line in dry_run("run") if "pip install" in line]
    assert installs == [".venv/bin/python -m pip install --quiet -e ."]


def test_make_test_installs_the_test_extra() -> None:
    installs = [line for line in dry_run("test") if "pip install" in line]
    assert installs == [".venv/bin/python -m pip install --quiet -e '.[test]'"]


def test_make_run_takes_the_address_as_a_variable() -> None:
    (serve,) = [line for line in dry_run("run", "LISTEN=127.0.0.1:9000") if "todo_wsgi serve" in line]
    assert serve.endswith(".venv/bin/python -m todo_wsgi serve --listen 127.0.0.1:9000")
    if shutil.which("taskset"):
        assert re.match(rf"taskset -c {os.cpu_count() - 1} ", serve)  # type: ignore[operator]


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="make run serves from .venv")
def test_make_run_serves_on_the_listen_address_on_one_cpu(tmp_path: Path) -> None:
    port = free_port()
    # -o: take the run stamp as made (the test tools are a superset of what serving needs).
    make = subprocess.Popen(
        ["make", "-o", ".venv/.installed-run", "run", f"LISTEN=127.0.0.1:{port}"],
        cwd=ROOT,
        env=child_env(TODO_DATABASE=str(tmp_path / "todo.db")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while get(f"http://127.0.0.1:{port}/healthz") is None:
            assert make.poll() is None and time.monotonic() < deadline, make.stderr.read().decode()  # type: ignore[union-attr]
            time.sleep(0.05)
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})
        if shutil.which("taskset"):
            (server,) = [
                int(pid)
                for pid in os.listdir("/proc")
                if pid.isdigit()
                and f"127.0.0.1:{port}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
                and b"todo_wsgi" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
            assert os.sched_getaffinity(server) == {max(os.sched_getaffinity(0) | {os.cpu_count() - 1})}  # type: ignore[operator]
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=15)
        make.stderr.close()  # type: ignore[union-attr]
