"""A real server in a child process, as an operator starts it: ``python -m todo_wsgi serve``
or ``waitress-serve --call todo_wsgi:create_app`` on 127.0.0.1 and a port of its own.

Standard error is collected line by line while it runs (the access log is there);
``stop()`` sends SIGTERM, as systemd does, and waits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import ITERATIONS

WAITRESS_SERVE = str(Path(sys.executable).parent / "waitress-serve")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env(**settings: str) -> dict[str, str]:
    """This process's environment without any TODO_ setting, a low PBKDF2 cost, plus ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TODO_")}
    env["TODO_PBKDF2_ITERATIONS"] = str(ITERATIONS)
    env.update(settings)
    return env


def get(url: str, timeout: float = 2) -> tuple[int, Any] | None:
    """(status, JSON body) of a GET, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None


class Served:
    """A server child process; ``url`` once it answers /healthz."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path | str, port: int | None = None) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline and self.process.poll() is None:
            found = [re.search(r"Serving on http://127\.0\.0\.1:([0-9]+)", line) for line in self.lines]
            port = next((int(match[1]) for match in found if match), None)
            time.sleep(0.02)
        assert port is not None, self.stderr()
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        while get(self.url + "/healthz") is None:
            assert self.process.poll() is None and time.monotonic() < deadline, self.stderr()
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def stderr(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self.reader.join(timeout=5)
        return status

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(cwd: Path | str, *args: str, env: dict[str, str] | None = None) -> Served:
    """``python -m todo_wsgi serve --listen 127.0.0.1:0 ARGS`` in ``cwd``."""
    command = [sys.executable, "-m", "todo_wsgi", "serve", "--listen", "127.0.0.1:0", *args]
    return Served(command, env if env is not None else child_env(), cwd)


def waitress_serve(cwd: Path | str, env: dict[str, str] | None = None) -> Served:
    """``waitress-serve --listen=127.0.0.1:PORT --call todo_wsgi:create_app`` in ``cwd``."""
    port = free_port()
    command = [WAITRESS_SERVE, f"--listen=127.0.0.1:{port}", "--call", "todo_wsgi:create_app"]
    return Served(command, env if env is not None else child_env(), cwd, port=port)
