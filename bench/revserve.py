"""Serve git revisions of todo-wsgi for benchmarks: export, seed, serve, stop.

Shared by ``compare_revisions.py`` and ``login_flood.py``. Imports nothing of
todo_wsgi: each revision is exported with ``git archive`` into a temporary
directory and run by this worktree's venv Python with ``PYTHONPATH`` and the
working directory set to that export, so ``import todo_wsgi`` loads the
revision's own code (``module_file`` checks it). The special revision
``worktree`` is this working tree as it is, uncommitted edits included.

What a revision is asked to do goes through interfaces that outlive the
app's internals: ``waitress-serve --call todo_wsgi:create_app`` with its
settings in ``TODO_*`` variables, ``python -m todo_wsgi --database DB
create-user admin --admin`` (password on stdin) for the first admin, and HTTP
(``POST /login``, ``POST /user``, ``POST /todo``) for everything else.
Inherited ``TODO_*`` variables are dropped: every setting a server gets is
set here.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKTREE = "worktree"
PASSWORD = common.PASSWORD


@dataclass
class Revision:
    """One revision as served: its name as given, its commit, the directory its code is in."""

    label: str
    commit: str
    path: str


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True, check=True).stdout.strip()


def export(rev: str, index: int, tmp: str) -> Revision:
    """Export ``rev`` (any git revision, or ``worktree``) into ``tmp``; exit 2 on an unknown one."""
    if rev == WORKTREE:
        return Revision(WORKTREE, "working tree", REPO)
    try:
        commit = git("rev-parse", "--verify", "--quiet", rev + "^{commit}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"error: {rev!r} is not a revision of {REPO}") from None
    dest = os.path.join(tmp, f"rev{index}-{commit[:10]}")
    os.makedirs(dest)
    archive = dest + ".tar"
    git("archive", "--format=tar", "-o", archive, commit)
    subprocess.run(["tar", "-xf", archive, "-C", dest], check=True)
    os.remove(archive)
    return Revision(rev, commit[:10], dest)


def labels(revisions: list[Revision]) -> list[str]:
    """Names for the report: the revision as given and its commit, numbered when one is given twice."""
    names = [f"{r.label} ({r.commit})" if r.label != r.commit else r.label for r in revisions]
    return [f"{n} #{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def environment(rev: Revision, settings: dict[str, str]) -> dict[str, str]:
    """The environment a revision's processes get: no inherited TODO_*, its code first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TODO_")}
    env["PYTHONPATH"] = rev.path
    env.update(settings)
    return env


def settings(database: str, iterations: int, **more: str) -> dict[str, str]:
    """The TODO_* settings of a bench server."""
    return {
        "TODO_DATABASE": database,
        "TODO_SECRET_KEY": common.SECRET_KEY,
        "TODO_PBKDF2_ITERATIONS": str(iterations),
        **more,
    }


def module_file(rev: Revision, env: dict[str, str]) -> str:
    """The todo_wsgi.py the revision's processes import; raise if it is not the revision's own."""
    out = subprocess.run(
        [sys.executable, "-c", "import todo_wsgi; print(todo_wsgi.__file__)"],
        cwd=rev.path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not os.path.realpath(out).startswith(os.path.realpath(rev.path) + os.sep):
        raise RuntimeError(f"{rev.label}: todo_wsgi loads from {out}, not from {rev.path}")
    return out


def create_admin(rev: Revision, env: dict[str, str], database: str) -> None:
    """The first admin, through the revision's own command line (password on stdin)."""
    done = subprocess.run(
        [sys.executable, "-m", "todo_wsgi", "--database", database, "create-user", "admin", "--admin"],
        cwd=rev.path,
        env=env,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{rev.label}: create-user failed ({done.returncode}): {done.stderr[-2000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def waitress_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "waitress-serve")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "waitress"]


# How a revision is served: the same waitress-serve line for every revision, or each
# revision's own ``python -m todo_wsgi serve`` (what its ``make run`` runs, with the
# logging set-up that revision ships for it).
SERVE_WAYS = ("waitress-serve", "make-run")


class Server:
    """One revision served until the block is left: ``waitress-serve --call todo_wsgi:create_app``,
    or with ``serve="make-run"`` the revision's own ``python -m todo_wsgi serve``.

    Its standard output and error (waitress's and the app's logging, the
    access log among them) go to ``log_path``. With ``cpus`` it runs under
    ``taskset -c`` (as ``make run`` pins it).
    """

    def __init__(
        self,
        rev: Revision,
        env: dict[str, str],
        threads: int,
        log_path: str,
        cpus: set[int] | None = None,
        serve: str = "waitress-serve",
        wrapper: tuple[str, ...] = (),
        start_seconds: float = 60,
    ) -> None:
        if serve not in SERVE_WAYS:
            raise ValueError(f"serve must be one of {SERVE_WAYS}, not {serve!r}")
        self.rev, self.env, self.threads, self.log_path, self.cpus = rev, env, threads, log_path, cpus
        self.serve = serve
        self.wrapper, self.start_seconds = wrapper, start_seconds  # e.g. valgrind, which starts slowly
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> Server:
        for attempt in range(3):  # the port is chosen before waitress binds it: another may take it first
            self.port = free_port()
            listen = [f"--listen=127.0.0.1:{self.port}", f"--threads={self.threads}"]
            if self.serve == "make-run":
                command = [sys.executable, "-m", "todo_wsgi", "serve", *listen]
            else:
                command = [*waitress_command(), *listen, "--call", "todo_wsgi:create_app"]
            command = [*self.wrapper, *command]
            if self.cpus is not None:
                command = ["taskset", "-c", ",".join(map(str, sorted(self.cpus))), *command]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(command, cwd=self.rev.path, env=self.env, stdout=log, stderr=log)
            try:
                wait_for_port(self.port, self.proc, self.start_seconds)
                return self
            except RuntimeError:
                self.stop()
                if attempt == 2:
                    raise RuntimeError(f"{self.rev.label} did not start: {self.log_tail()}") from None
        raise AssertionError("unreachable")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def restart(self) -> None:
        """Stop the process and start a new one on the same database (and a new port), with
        a memory layout and hash seed of its own."""
        self.stop()
        self.__enter__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self) -> str:
        with open(self.log_path, "rb") as file:
            return file.read()[-2000:].decode("utf-8", "replace")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Return once 127.0.0.1:port accepts a connection; raise if the process ends or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s")


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the run as Ctrl-C does: the servers stop and the exports go."""

    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGHUP, leave)


def need_wrk() -> int | None:
    """2 with the hint when wrk is missing, else None."""
    if shutil.which("wrk") is None:
        print(common.WRK_MISSING, file=sys.stderr)
        return 2
    return None


# -- HTTP ---------------------------------------------------------------------------------


def request(
    port: int,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    authorization: str | None = None,
    timeout: float = 60,
) -> tuple[int, Any]:
    """One request on a new connection; return (status, the decoded JSON body or None)."""
    headers = {}
    data = None
    if token is not None:
        headers["x-access-token"] = token
    if authorization is not None:
        headers["Authorization"] = authorization
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, json.loads(raw) if raw else None


def expect(got: tuple[int, Any], status: int, what: str) -> Any:
    if got[0] != status:
        raise RuntimeError(f"{what}: expected {status}, got {got[0]} {got[1]}")
    return got[1]


def login(port: int, name: str, password: str = PASSWORD) -> str:
    body = expect(request(port, "POST", "/login", authorization=common.basic(name, password)), 200, f"login {name}")
    return str(body["token"])


@dataclass
class Seeded:
    reader_token: str
    todo_ids: list[int]


def seed(port: int) -> Seeded:
    """Through HTTP, as a client would: the reader account (by the admin) and its three to-dos."""
    admin = login(port, "admin")
    expect(request(port, "POST", "/user", admin, {"name": "reader", "password": PASSWORD}), 201, "create reader")
    reader = login(port, "reader")
    ids = []
    for text in common.TEXTS:
        body = expect(request(port, "POST", "/todo", reader, {"text": text}), 201, "create to-do")
        ids.append(int(body["todo"]["id"]))
    todos = expect(request(port, "GET", "/todo", reader), 200, "list")["todos"]
    if len(todos) != len(common.TEXTS):
        raise RuntimeError(f"the reader has {len(todos)} to-dos, not {len(common.TEXTS)}")
    return Seeded(reader, ids)
