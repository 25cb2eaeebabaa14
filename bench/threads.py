"""The thread-count trade-off: throughput against a slow login blocking others.

For each waitress thread count (1, 2, 4, 8 by default), starts todo-wsgi and
the ceiling with that many threads and, in alternated rounds, measures with wrk:
the authenticated list alone (requests/s, p99, ratio to the ceiling), and the
same list while two clients log in over and over, one request at a time each
(PBKDF2 at 600,000 iterations, about a fifth of a second of one core each):
how much logins delay the requests that share the server with them.

    .venv/bin/python bench/threads.py [--threads 1,2,4,8] [--rounds 3] [--seconds 3]
                                      [--login-clients 2] [--server-cpu N|last]
    environment: BENCH_THREAD_COUNTS, BENCH_ROUNDS, BENCH_SECONDS, BENCH_CONNECTIONS,
    BENCH_WRK_THREADS, BENCH_LOGIN_ITERATIONS, BENCH_LOGIN_CLIENTS, BENCH_SERVER_CPU
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common


class LoginLoop:
    """One client logging in again and again, one request at a time, until stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoginLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": common.basic("reader", common.PASSWORD), "Content-Length": "0"}
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                conn.request("POST", "/login", headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"login answered {response.status}")
                self.latencies.append(time.perf_counter() - started)
        finally:
            conn.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="waitress thread count: throughput vs a slow login")
    parser.add_argument("--threads", default=os.environ.get("BENCH_THREAD_COUNTS", "1,2,4,8"))
    parser.add_argument("--rounds", type=int, default=common.env_int("BENCH_ROUNDS", 3))
    parser.add_argument("--seconds", type=float, default=common.env_float("BENCH_SECONDS", 3))
    parser.add_argument("--connections", type=int, default=common.env_int("BENCH_CONNECTIONS", 8))
    parser.add_argument("--wrk-threads", type=int, default=common.env_int("BENCH_WRK_THREADS", 1))
    parser.add_argument("--login-clients", type=int, default=common.env_int("BENCH_LOGIN_CLIENTS", 2))
    parser.add_argument(
        "--iterations", type=int, default=common.env_int("BENCH_LOGIN_ITERATIONS", common.LOGIN_ITERATIONS)
    )
    common.add_server_cpu(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(common.WRK_MISSING, file=sys.stderr)
        return 2
    counts = [int(n) for n in args.threads.split(",")]
    pin, wrk_cpus = common.pinning(args.server_cpu)
    wrk = (args.wrk_threads, args.connections, args.seconds, 5, wrk_cpus)
    with tempfile.TemporaryDirectory(prefix="todo-bench-") as tmp:
        seeded = common.seed(os.path.join(tmp, "bench.db"), args.iterations)
        body_file = os.path.join(tmp, "ceiling-body.json")
        with open(body_file, "wb") as file:
            file.write(seeded.list_body)
        scenario = common.scenarios(seeded)[0]
        script = common.wrk_script(scenario, os.path.join(tmp, "list.lua"))
        print(
            f"threads, {common.machine()}; GET /todo (3 items); wrk -t{args.wrk_threads} -c{args.connections} "
            f"-d{args.seconds:g}s; median of {args.rounds} alternated rounds; "
            f"login loops: {args.login_clients} clients, {args.iterations} iterations"
            + ("" if wrk_cpus is None else f"; both servers on CPU {pin[1]}, wrk on CPU {sorted(wrk_cpus)}")
        )
        print(
            f"{'threads':>7}{'todo req/s':>11}{'ceiling':>9}{'ratio':>7}{'p99 ms':>8}"
            f"{'| with logins: req/s':>21}{'p50 ms':>8}{'p99 ms':>8}{'logins/s':>9}{'login p50 ms':>13}"
        )
        for count in counts:
            todo = common.Server("todo", count, tmp, common.todo_env(seeded, args.iterations), pin)
            ceiling = common.Server("ceiling", count, tmp, args=("--body-file", body_file, *pin))
            alone: list[common.WrkResult] = []
            ceil: list[common.WrkResult] = []
            loaded: list[common.WrkResult] = []
            ratios: list[float] = []
            login_rates: list[float] = []
            login_latencies: list[float] = []
            with todo, ceiling:
                for round_no in range(args.rounds):
                    order = ["todo", "ceiling", "loaded"]
                    if round_no % 2:
                        order.reverse()
                    for kind in order:
                        if kind == "todo":
                            alone.append(common.run_wrk(todo.url, script, *wrk))
                        elif kind == "ceiling":
                            ceil.append(common.run_wrk(ceiling.url, script, *wrk))
                        else:
                            with contextlib.ExitStack() as stack:
                                loops = [stack.enter_context(LoginLoop(todo.port)) for _ in range(args.login_clients)]
                                started = time.perf_counter()
                                loaded.append(common.run_wrk(todo.url, script, *wrk))
                                elapsed = time.perf_counter() - started
                            done = [latency for loop in loops for latency in loop.latencies]
                            login_rates.append(len(done) / elapsed)
                            login_latencies.extend(done)
                    ratios.append(alone[-1].rps / ceil[-1].rps)
            med = common.median
            print(
                f"{count:>7}{med([r.rps for r in alone]):>11.0f}{med([r.rps for r in ceil]):>9.0f}"
                f"{med(ratios):>6.2f}x{med([r.p99_ms for r in alone]):>8.2f}"
                f"{med([r.rps for r in loaded]):>21.0f}{med([r.p50_ms for r in loaded]):>8.2f}"
                f"{med([r.p99_ms for r in loaded]):>8.1f}{med(login_rates):>9.1f}"
                f"{med(login_latencies) * 1000:>13.0f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
