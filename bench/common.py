"""What every benchmark shares: a seeded database, the scenarios, WSGI environs, medians.

Owns the fixed workload: an admin, a reader with exactly three to-dos (the
"list" and "get" scenarios), and a writer whose to-dos the write scenarios
create and complete, so the reader's list keeps its size all run long. Tokens
are issued through the app itself; passwords are hashed once and the hash is
reused, so seeding stays fast at 600,000 iterations.

Imports todo_wsgi only through its public functions, and only inside the
functions that build or seed an app (make_app, seed): the wrk and report
helpers import nothing of it, so scripts that serve other revisions of the
app (compare_revisions.py, login_flood.py) can use them. Never edits its state.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import todo_wsgi

SECRET_KEY = "bench-secret-key-" + "x" * 32  # a fixed key: the server subprocess must verify the tokens
PASSWORD = "bench-password-1"
TEXTS = ("buy milk", "write the benchmark", "read the profile")
LOGIN_ITERATIONS = 600_000  # API.md's default; the login scenario reports it


@dataclass
class Seeded:
    """Names, tokens and ids of the seeded accounts and to-dos."""

    database: str
    admin_token: str
    reader_token: str
    writer_token: str
    reader_todo_ids: list[int]
    writer_todo_id: int
    list_body: bytes  # the reader's GET /todo answer: the ceiling's body size
    reader_public_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def env_int(name: str, default: int) -> int:
    """An integer setting of the benchmarks, from the environment."""
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def bench_arguments(description: str, rounds: int) -> argparse.ArgumentParser:
    """The options every wrk benchmark takes, each defaulting to its BENCH_* variable."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=env_int("BENCH_ROUNDS", rounds))
    parser.add_argument("--seconds", type=float, default=env_float("BENCH_SECONDS", 3))
    parser.add_argument("--threads", type=int, default=env_int("BENCH_THREADS", 4), help="waitress threads")
    parser.add_argument("--connections", type=int, default=env_int("BENCH_CONNECTIONS", 8))
    parser.add_argument("--wrk-threads", type=int, default=env_int("BENCH_WRK_THREADS", 1))
    parser.add_argument("--iterations", type=int, default=env_int("BENCH_LOGIN_ITERATIONS", LOGIN_ITERATIONS))
    parser.add_argument("--scenarios", default=os.environ.get("BENCH_SCENARIOS", ""), help="comma-separated subset")
    add_server_cpu(parser)
    return parser


def add_server_cpu(parser: argparse.ArgumentParser) -> None:
    """The ``--server-cpu`` option: none (default), a CPU number, or "last" (as ``serve --one-cpu`` picks)."""
    parser.add_argument(
        "--server-cpu",
        default=os.environ.get("BENCH_SERVER_CPU", "none"),
        help='keep every server on this CPU ("last": the last this process may use) and wrk on the others',
    )


def pinning(server_cpu: str) -> tuple[tuple[str, ...], set[int] | None]:
    """For ``--server-cpu``: the servers' extra arguments and wrk's CPUs (None: no pinning)."""
    if server_cpu == "none":
        return (), None
    cpus = os.sched_getaffinity(0)
    cpu = max(cpus) if server_cpu == "last" else int(server_cpu)
    if not cpus - {cpu}:
        raise SystemExit(f"--server-cpu {server_cpu} leaves wrk no CPU")
    return ("--cpu", str(cpu)), cpus - {cpu}


def make_app(database: str, iterations: int = LOGIN_ITERATIONS, **settings: Any) -> todo_wsgi.TodoApp:
    """The app as the server builds it, on ``database``, with the bench's key."""
    import todo_wsgi

    return todo_wsgi.create_app(database=database, secret_key=SECRET_KEY, pbkdf2_iterations=iterations, **settings)


def add_account(app: todo_wsgi.TodoApp, name: str, password_hash: str, admin: bool = False) -> dict[str, Any]:
    with app.db.connection() as conn:
        return app.store.create_user(conn, None, str(uuid.uuid4()), name, password_hash, admin)  # type: ignore[no-any-return]


def environ(
    method: str,
    path: str,
    token: str | None = None,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: str = "",
) -> dict[str, Any]:
    """A PEP 3333 environ as waitress builds it (wsgi.input filled per call)."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8080",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input": io.BytesIO(body),
    }
    if body:
        env["CONTENT_TYPE"] = "application/json"
        env["CONTENT_LENGTH"] = str(len(body))
    if token is not None:
        env["HTTP_X_ACCESS_TOKEN"] = token
    for name, value in (headers or {}).items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def call(app: Callable[..., Any], env: dict[str, Any]) -> tuple[str, bytes]:
    """Call a WSGI app once; return (status line, body)."""
    got: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        got.append(status)

    body = b"".join(app(env, start_response))
    return got[0], body


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def login(app: todo_wsgi.TodoApp, name: str, password: str = PASSWORD) -> str:
    status, body = call(app, environ("POST", "/login", headers={"Authorization": basic(name, password)}))
    assert status.startswith("200"), (status, body)
    return str(json.loads(body)["token"])


def seed(database: str, iterations: int = LOGIN_ITERATIONS) -> Seeded:
    """Create the bench accounts and to-dos on a fresh database file."""
    import todo_wsgi

    app = make_app(database, iterations)
    try:
        password_hash = todo_wsgi.hash_password(PASSWORD, iterations)
        add_account(app, "admin", password_hash, admin=True)
        reader = add_account(app, "reader", password_hash)
        add_account(app, "writer", password_hash)
        # Tokens through /login, as a client gets them (three hashes at full cost).
        tokens = {name: login(app, name) for name in ("admin", "reader", "writer")}
        reader_ids = []
        for text in TEXTS:
            status, body = call(app, environ("POST", "/todo", tokens["reader"], json.dumps({"text": text}).encode()))
            assert status.startswith("201"), (status, body)
            reader_ids.append(json.loads(body)["todo"]["id"])
        status, body = call(app, environ("POST", "/todo", tokens["writer"], b'{"text": "to be completed"}'))
        writer_id = json.loads(body)["todo"]["id"]
        status, list_body = call(app, environ("GET", "/todo", tokens["reader"]))
        assert status.startswith("200") and len(json.loads(list_body)["todos"]) == 3, list_body
    finally:
        app.close()
    return Seeded(
        database=database,
        admin_token=tokens["admin"],
        reader_token=tokens["reader"],
        writer_token=tokens["writer"],
        reader_todo_ids=reader_ids,
        writer_todo_id=writer_id,
        list_body=list_body,
        reader_public_id=reader["public_id"],
    )


@dataclass(frozen=True)
class Scenario:
    """One kind of request, as the HTTP and in-process benchmarks send it."""

    name: str
    method: str
    path: str
    token: str | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    expect: int = 200


def scenarios(seeded: Seeded) -> list[Scenario]:
    """The issue's scenarios; "login" last, reported apart (hashing is its cost)."""
    return [
        Scenario("list", "GET", "/todo", seeded.reader_token),
        Scenario("get", "GET", f"/todo/{seeded.reader_todo_ids[1]}", seeded.reader_token),
        Scenario("create", "POST", "/todo", seeded.writer_token, b'{"text": "a new to-do"}', expect=201),
        Scenario("complete", "PUT", f"/todo/{seeded.writer_todo_id}", seeded.writer_token),
        Scenario("users", "GET", "/user", seeded.admin_token),
        Scenario("login", "POST", "/login", headers={"Authorization": basic("reader", PASSWORD)}),
    ]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    """One line naming the machine, for the report."""
    import datetime
    import platform

    return (
        f"{datetime.date.today().isoformat()}, nproc {len(os.sched_getaffinity(0))}, {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


# -- servers and wrk ------------------------------------------------------------

HERE = os.path.dirname(os.path.abspath(__file__))
WRK_MISSING = "wrk is not installed; on Debian or Ubuntu: sudo apt-get install wrk"


class Server:
    """``bench/serve.py`` in a subprocess on 127.0.0.1, stopped on leaving the block."""

    def __init__(
        self, app: str, threads: int, workdir: str, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.name = f"{app}-{threads}t-{len(os.listdir(workdir))}"
        self.stderr_path = os.path.join(workdir, self.name + ".stderr")
        self.command = [sys.executable, os.path.join(HERE, "serve.py"), app, "--threads", str(threads), *args]
        self.env = {**os.environ, **(env or {})}
        self.proc: Any = None
        self.port = 0

    def __enter__(self) -> Server:
        import selectors
        import subprocess

        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=stderr, env=self.env, text=True)
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.proc.stdout, selectors.EVENT_READ)
                line = self.proc.stdout.readline() if selector.select(timeout=60) else ""
            if not line.startswith("PORT "):
                raise RuntimeError(f"{self.name} did not start: {self.stderr_tail()}")
            self.port = int(line.split()[1])
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def stderr_tail(self) -> str:
        with open(self.stderr_path, "rb") as file:
            return file.read()[-2000:].decode("utf-8", "replace")


def todo_env(seeded: Seeded, iterations: int) -> dict[str, str]:
    """The todo server's settings: the seeded database, the bench's key and cost."""
    return {
        "TODO_DATABASE": seeded.database,
        "TODO_SECRET_KEY": SECRET_KEY,
        "TODO_PBKDF2_ITERATIONS": str(iterations),
        # Many wrk connections log in at once from one address: the throttle
        # counts each attempt before its hash, so raise it out of the way.
        "TODO_LOGIN_MAX_FAILURES": "1000000",
    }


def lua_string(text: str | bytes) -> str:
    """A Lua long-bracket-free literal: every byte as a decimal escape."""
    data = text.encode() if isinstance(text, str) else text
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def wrk_script(scenario: Scenario, path: str) -> str:
    """Write the wrk Lua script that sends ``scenario`` and reports as JSON; return its path."""
    lines = [f"wrk.method = {lua_string(scenario.method)}", f"wrk.path = {lua_string(scenario.path)}"]
    if scenario.token is not None:
        lines.append(f'wrk.headers["x-access-token"] = {lua_string(scenario.token)}')
    for name, value in scenario.headers.items():
        lines.append(f"wrk.headers[{lua_string(name)}] = {lua_string(value)}")
    if scenario.body:
        lines.append('wrk.headers["Content-Type"] = "application/json"')
        lines.append(f"wrk.body = {lua_string(scenario.body)}")
    lines += [
        "local statuses = {}",
        "response = function(status, headers, body) end",
        "done = function(summary, latency, requests)",
        "  local e = summary.errors",
        '  io.write(string.format("BENCH {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d,'
        ' \\"p99_us\\": %d, \\"errors\\": %d, \\"status_errors\\": %d}\\n",',
        "    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),",
        "    e.connect + e.read + e.write + e.timeout, e.status))",
        "end",
    ]
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")
    return path


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def run_wrk(
    url: str,
    script: str,
    threads: int,
    connections: int,
    seconds: float,
    timeout: int = 5,
    cpus: set[int] | None = None,
) -> WrkResult:
    """One wrk run (on ``cpus`` if given); raise if any request failed, timed out or answered 4xx/5xx."""
    import subprocess

    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", f"--timeout={timeout}s", "--latency"]
    out = subprocess.run(
        [*command, "-s", script, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + timeout + 60,
        preexec_fn=None if cpus is None else (lambda: os.sched_setaffinity(0, cpus)),
    ).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{out}")
    data = json.loads(line[len("BENCH ") :])
    errors = data["errors"] + data["status_errors"]
    if errors:
        raise RuntimeError(f"{errors} of {data['requests']} requests failed on {url} ({script}):\n{out}")
    return WrkResult(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        errors=errors,
    )


def comparison_header(label_width: int, left: str, right: str, ratio: str) -> str:
    """The header of a side-by-side table: two servers' req/s, p50 and p99, and a ratio."""
    columns = f"{left + ' req/s':>{len(left) + 8}}{'p50 ms':>8}{'p99 ms':>8}"
    columns += f"{right + ' req/s':>{len(right) + 8}}{'p50 ms':>8}{'p99 ms':>8}"
    return f"{'scenario':<{label_width}}{columns}{ratio:>{len(ratio) + 2}}"


def comparison_row(
    label: str,
    label_width: int,
    names: tuple[str, str, str],
    left: list[WrkResult],
    right: list[WrkResult],
    ratio: float,
) -> str:
    """One row under ``comparison_header(label_width, *names)``: medians of each side's runs."""

    def med(results: list[WrkResult], field: str) -> float:
        return median([getattr(r, field) for r in results])

    left_name, right_name, ratio_name = names
    row = f"{label:<{label_width}}"
    for name, results in ((left_name, left), (right_name, right)):
        row += f"{med(results, 'rps'):>{len(name) + 8}.0f}{med(results, 'p50_ms'):>8.2f}{med(results, 'p99_ms'):>8.2f}"
    return row + f"{ratio:>{len(ratio_name) + 1}.2f}x"


def rss_kb(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS, kB)."""
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass(frozen=True)
class ProcessCost:
    """A server process's CPU time and context switches so far (Linux /proc)."""

    user_s: float
    system_s: float
    voluntary_switches: int

    @classmethod
    def of(cls, pid: int) -> ProcessCost | None:
        """Read them for ``pid`` and all its threads; None where /proc has no such files."""
        try:
            with open(f"/proc/{pid}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
            switches = 0
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/status") as file:
                    for line in file:
                        if line.startswith("voluntary_ctxt_switches:"):
                            switches += int(line.split()[1])
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return cls(int(fields[11]) / ticks, int(fields[12]) / ticks, switches)


@dataclass(frozen=True)
class PerRequest:
    """What one request cost a server, on average over a wrk run."""

    cpu_us: float
    system_us: float
    switches: float


def per_request(before: ProcessCost | None, after: ProcessCost | None, requests: int) -> PerRequest | None:
    """The cost per request between two readings, or None without them."""
    if before is None or after is None or requests == 0:
        return None
    user, system = after.user_s - before.user_s, after.system_s - before.system_s
    return PerRequest(
        cpu_us=(user + system) * 1e6 / requests,
        system_us=system * 1e6 / requests,
        switches=(after.voluntary_switches - before.voluntary_switches) / requests,
    )
