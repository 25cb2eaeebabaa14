"""serve --one-cpu: the whole server kept on one CPU (todo_wsgi.pin_process), Linux."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")


def _status_cpus(pid, task):
    with open(f"/proc/{pid}/task/{task}/status") as status:
        line = next(line for line in status if line.startswith("Cpus_allowed_list:"))
    cpus = set()
    for part in line.split()[1].split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def test_pin_process_keeps_every_thread_already_started_and_to_come_on_one_cpu():
    code = (
        "import os, threading, time, todo_wsgi\n"
        "before = threading.Thread(target=time.sleep, args=(5,), daemon=True); before.start()\n"
        "cpu = todo_wsgi.pin_process()\n"
        "after = threading.Thread(target=time.sleep, args=(5,), daemon=True); after.start()\n"
        "print(cpu, sorted({tuple(sorted(os.sched_getaffinity(int(t)))) for t in os.listdir('/proc/self/task')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    last = max(os.sched_getaffinity(0))
    assert (int(out[0]), out[1].strip()) == (last, f"[({last},)]")


def test_serve_one_cpu_keeps_the_whole_server_on_the_last_cpu(tmp_path):
    env = {**os.environ, "TODO_DATABASE": str(tmp_path / "pinned.db")}
    command = [sys.executable, "-m", "todo_wsgi", "serve", "--listen", "127.0.0.1:0", "--one-cpu"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(30, process.kill)
    watchdog.start()
    try:
        said = []
        for line in process.stderr:
            said.append(line)
            if "Serving on" in line:
                break
        last = max(os.sched_getaffinity(0))
        assert any(f"serving on CPU {last} only" in line for line in said), said
        tasks = os.listdir(f"/proc/{process.pid}/task")
        assert len(tasks) > 4  # the main loop, waitress's 4 threads, the log threads
        assert all(_status_cpus(process.pid, task) == {last} for task in tasks)
    finally:
        watchdog.cancel()
        process.kill()
        process.wait(timeout=10)


def test_serve_one_cpu_without_linux_affinity_says_so_and_exits_1(run_command, monkeypatch, tmp_path):
    monkeypatch.delattr("os.sched_setaffinity")
    result = run_command(str(tmp_path / "pinned.db"), "serve", "--listen", "127.0.0.1:0", "--one-cpu")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: --one-cpu needs Linux (os.sched_setaffinity)"
