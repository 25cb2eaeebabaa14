"""In-process benchmark: the WSGI callable called directly, no network, no server.

Reports microseconds per request for each scenario (median of repeated timed
batches, the harness's own cost measured on a null app and subtracted), then a
cProfile run of each scenario broken down into where the time goes: routing,
token decode (PyJWT), the account check (one indexed read; for a list or a
get, one statement that also reads the data: "account+data"), the handler's
store call, JSON encoding, the access log, and the rest of the edge.

    .venv/bin/python bench/inprocess.py            # BENCH_BATCH, BENCH_REPEAT tune it

Owns nothing outside bench/; reads the app only through its WSGI interface.
"""

from __future__ import annotations

import cProfile
import io
import logging
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common

import todo_wsgi
import todo_wsgi_cli

# (label, predicate on a profiled function (file, line, name)); first match wins.
CATEGORIES: list[tuple[str, Callable[[tuple[str, int, str]], bool]]] = [
    ("routing", lambda f: f[0].endswith("router.py")),
    ("token decode", lambda f: f[2] in ("decode_token", "read_token", "verify_token")),
    # A list or a get reads the account check and its data in one statement.
    ("account+data", lambda f: f[0].endswith("store.py") and f[2].startswith("session_account_with")),
    ("account check", lambda f: f[0].endswith("store.py") and f[2] == "session_account"),
    ("store", lambda f: f[0].endswith("store.py")),
    ("json encode", lambda f: f[2] in ("encode", "iterencode")),
    ("body parse", lambda f: f[2] == "parse_json"),
    ("password hash", lambda f: f[2] in ("hash", "verify", "_run")),
    (
        "access log",
        lambda f: (
            os.sep + "logging" + os.sep in f[0]
            or (f[0].endswith("todo_wsgi.py") and f[2] in ("emit", "flush", "write", "_hand_over"))
        ),
    ),
]


def null_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]


def runner(app: Callable[..., Any], scenario: common.Scenario) -> Callable[[int], None]:
    """A loop calling ``app`` n times with fresh environs for ``scenario``."""
    base = common.environ(scenario.method, scenario.path, scenario.token, scenario.body, scenario.headers)
    body, BytesIO = scenario.body, io.BytesIO

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        pass

    def run(n: int) -> None:
        for _ in range(n):
            env = base.copy()
            env["wsgi.input"] = BytesIO(body)
            for _chunk in app(env, start_response):
                pass

    return run


def time_per_call(run: Callable[[int], None], batch: int, repeat: int) -> float:
    """Median over ``repeat`` batches of the seconds per call."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run(batch)
        samples.append((time.perf_counter() - started) / batch)
    return common.median(samples)


def breakdown(run: Callable[[int], None], calls: int) -> tuple[float, dict[str, float]]:
    """Profile ``calls`` requests; return (total s, seconds by category)."""
    profiler = cProfile.Profile()
    profiler.runcall(run, calls)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in stats.values())
    spent = dict.fromkeys([label for label, _ in CATEGORIES], 0.0)

    def category(func: tuple[str, int, str]) -> str | None:
        return next((label for label, test in CATEGORIES if test(func)), None)

    for func, (_, _, _, _, callers) in stats.items():
        label = category(func)
        if label is None:
            continue
        # Time entering this category from the app's own code (or the
        # bench's hand-over of queued log lines): no double counting of
        # calls made inside it (contextlib, nested helpers).
        for caller, (_, _, _, cumulative) in callers.items():
            from_app = caller[0].endswith("todo_wsgi.py") or caller[2] == "run_and_hand_over"
            if from_app and category(caller) != label:
                spent[label] += cumulative
    return total, spent


def main() -> int:
    batch = common.env_int("BENCH_BATCH", 1000)
    repeat = common.env_int("BENCH_REPEAT", 15)
    with tempfile.TemporaryDirectory(prefix="todo-bench-") as tmp:
        database = os.path.join(tmp, "bench.db")
        iterations = common.env_int("BENCH_LOGIN_ITERATIONS", common.LOGIN_ITERATIONS)
        seeded = common.seed(database, iterations)
        app = common.make_app(database, iterations)
        try:
            return report(app, seeded, batch, repeat, iterations)
        finally:
            app.close()


class AccessLogToFile:
    """While inside: ``app`` logs to a file as ``python -m todo_wsgi serve`` logs to
    standard error (``todo_wsgi_cli.configure_logging``), a line per request."""

    def __init__(self, path: str, app: todo_wsgi.TodoApp) -> None:
        self.path = path
        self.app = app
        self.handler: Any = None

    def __enter__(self) -> AccessLogToFile:
        self.stream = open(self.path, "a")
        self.handler = todo_wsgi_cli.configure_logging(self.stream, app=self.app)
        return self

    def timed(self, run: Callable[[int], None]) -> Callable[[int], None]:
        """``run``, logging as served."""
        return run

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()
        self.app.write_access_line = self.app.log_access_line
        self.stream.close()


def report(app: Any, seeded: common.Seeded, batch: int, repeat: int, iterations: int) -> int:
    print(f"in-process, {common.machine()}; median of {repeat} alternated batches of {batch} calls")
    for scenario in common.scenarios(seeded):
        status, body = common.call(
            app, common.environ(scenario.method, scenario.path, scenario.token, scenario.body, scenario.headers)
        )
        if not status.startswith(str(scenario.expect)):
            print(f"{scenario.name}: unexpected {status} {body[:200]!r}", file=sys.stderr)
            return 1
    null_run = runner(null_app, common.scenarios(seeded)[0])
    null_run(50)
    harness = time_per_call(null_run, batch, repeat)
    log_file = os.path.join(os.path.dirname(seeded.database), "access.log")
    print(
        f"harness (environ copy + call of a null app): {harness * 1e6:.2f} us, subtracted below\n"
        "no log: logging not configured (embedded, as in tests); access log: one line per request\n"
        "to a file as python -m todo_wsgi serve and make run log (todo_wsgi_cli.configure_logging)\n"
    )
    print(f"{'scenario':<10}{'us, no log':>12}{'us, access log':>16}")
    rows = []
    for scenario in common.scenarios(seeded):
        run = runner(app, scenario)
        n, reps = (3, 3) if scenario.name == "login" else (batch, repeat)  # hashing is its cost by design
        run(min(n, 50))
        plain: list[float] = []
        logged: list[float] = []
        for _ in range(reps):  # alternated, so drift hits both columns alike
            plain.append(time_per_call(run, n, 1) - harness)
            with AccessLogToFile(log_file, app) as to_file:
                logged.append(time_per_call(to_file.timed(run), n, 1) - harness)
        label = f"login ({iterations} iterations)" if scenario.name == "login" else scenario.name
        print(f"{label:<10}{common.median(plain) * 1e6:>12.1f}{common.median(logged) * 1e6:>16.1f}")
        rows.append((scenario, run, n))
    print("\nwhere the time goes, access log on (cProfile, % of profiled time; the profiler inflates small calls;)")
    labels = [label for label, _ in CATEGORIES]
    print(f"{'scenario':<10}" + "".join(f"{label:>15}" for label in labels) + f"{'rest':>8}")
    with AccessLogToFile(log_file, app) as to_file:
        for scenario, run, n in rows:
            total, spent = breakdown(to_file.timed(run), min(n, 2000))
            rest = total - sum(spent.values())
            print(
                f"{scenario.name:<10}"
                + "".join(f"{100 * spent[label] / total:>14.0f}%" for label in labels)
                + f"{100 * rest / total:>7.0f}%"
            )
    if os.environ.get("BENCH_PROFILE"):
        scenario = next(s for s in common.scenarios(seeded) if s.name == os.environ["BENCH_PROFILE"])
        profiler = cProfile.Profile()
        profiler.runcall(runner(app, scenario), batch)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
