"""HTTP benchmark: todo-wsgi against its server's ceiling, side by side, driven by wrk.

Starts, each as its own subprocess on 127.0.0.1 (ephemeral ports), todo-wsgi
under waitress on a fresh temporary SQLite database (seeded: an admin, a
reader with 3 to-dos, a writer) and the ceiling (``bench/ceiling.py``, a bare
app answering a body as long as the reader's list) under the same waitress
with the same thread count. wrk, another process, drives both with the same
threads, connections and request (method, headers, body) per scenario; every
round runs each scenario against both, alternating which goes first, so drift
on a shared machine hits both alike. Reported: medians over the rounds of
requests/s, p50 and p99 latency, and todo-wsgi's requests/s as a fraction of
the ceiling's (median of the per-round ratios). Log in is reported apart:
its cost is PBKDF2 by design, at the iteration count shown.

    .venv/bin/python bench/http_bench.py [--rounds 5] [--seconds 3] [--threads 4]
                                         [--connections 8] [--wrk-threads 1]
    environment: BENCH_ROUNDS, BENCH_SECONDS, BENCH_THREADS, BENCH_CONNECTIONS,
    BENCH_WRK_THREADS, BENCH_LOGIN_ITERATIONS (600000), BENCH_ACCESS_LOG=1

Needs wrk (Debian/Ubuntu: apt-get install wrk); exits 2 with that hint if missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="todo-wsgi vs the ceiling, under waitress, driven by wrk")
    parser.add_argument("--rounds", type=int, default=common.env_int("BENCH_ROUNDS", 5))
    parser.add_argument("--seconds", type=float, default=common.env_float("BENCH_SECONDS", 3))
    parser.add_argument("--threads", type=int, default=common.env_int("BENCH_THREADS", 4), help="waitress threads")
    parser.add_argument("--connections", type=int, default=common.env_int("BENCH_CONNECTIONS", 8))
    parser.add_argument("--wrk-threads", type=int, default=common.env_int("BENCH_WRK_THREADS", 1))
    parser.add_argument(
        "--iterations", type=int, default=common.env_int("BENCH_LOGIN_ITERATIONS", common.LOGIN_ITERATIONS)
    )
    parser.add_argument("--scenarios", default=os.environ.get("BENCH_SCENARIOS", ""), help="comma-separated subset")
    parser.add_argument(
        "--access-log", action="store_true", default=bool(os.environ.get("BENCH_ACCESS_LOG")),
        help="todo-wsgi logs every request at INFO (to a file), as `make run` does to stderr",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(common.WRK_MISSING, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="todo-bench-") as tmp:
        seeded = common.seed(os.path.join(tmp, "bench.db"), args.iterations)
        body_file = os.path.join(tmp, "ceiling-body.json")
        with open(body_file, "wb") as file:
            file.write(seeded.list_body)
        todo_args = ("--access-log", os.path.join(tmp, "access.log")) if args.access_log else ()
        todo = common.Server("todo", args.threads, tmp, common.todo_env(seeded, args.iterations), todo_args)
        ceiling = common.Server("ceiling", args.threads, tmp, args=("--body-file", body_file))
        with todo, ceiling:
            return run(args, seeded, tmp, todo, ceiling)


def run(args: argparse.Namespace, seeded: common.Seeded, tmp: str, todo: common.Server, ceiling: common.Server) -> int:
    chosen = [s for s in common.scenarios(seeded) if not args.scenarios or s.name in args.scenarios.split(",")]
    scripts = {s.name: common.wrk_script(s, os.path.join(tmp, f"{s.name}.lua")) for s in chosen}
    wrk = (args.wrk_threads, args.connections, args.seconds)
    print(
        f"HTTP, {common.machine()}; waitress {args.threads} threads for both apps; "
        f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.seconds:g}s; "
        f"median of {args.rounds} alternated rounds; ceiling body {len(seeded.list_body)} bytes"
        + ("; todo-wsgi access log on" if args.access_log else "")
    )
    results: dict[str, dict[str, list[common.WrkResult]]] = {s.name: {"todo": [], "ceiling": []} for s in chosen}
    ratios: dict[str, list[float]] = {s.name: [] for s in chosen}
    for round_no in range(args.rounds):
        for scenario in chosen:
            script = scripts[scenario.name]
            if scenario.name == "login":
                results["login"]["todo"].append(common.run_wrk(todo.url, script, *wrk))
                continue
            pair = [("todo", todo), ("ceiling", ceiling)]
            if round_no % 2:
                pair.reverse()
            got = {name: common.run_wrk(server.url, script, *wrk) for name, server in pair}
            for name, result in got.items():
                results[scenario.name][name].append(result)
            ratios[scenario.name].append(got["todo"].rps / got["ceiling"].rps)
        print(f"  round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    def med(name: str, server: str, field: str) -> float:
        return common.median([getattr(r, field) for r in results[name][server]])

    header = (
        f"{'scenario':<10}{'todo req/s':>11}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'ceiling req/s':>15}{'p50 ms':>8}{'p99 ms':>8}{'ratio':>7}"
    )
    print(header)
    for scenario in chosen:
        name = scenario.name
        if name == "login":
            continue
        print(
            f"{name:<10}{med(name, 'todo', 'rps'):>11.0f}{med(name, 'todo', 'p50_ms'):>8.2f}"
            f"{med(name, 'todo', 'p99_ms'):>8.2f}{med(name, 'ceiling', 'rps'):>15.0f}"
            f"{med(name, 'ceiling', 'p50_ms'):>8.2f}{med(name, 'ceiling', 'p99_ms'):>8.2f}"
            f"{common.median(ratios[name]):>6.2f}x"
        )
    if "login" in results:
        print(
            f"\nlog in (PBKDF2-HMAC-SHA256, {args.iterations} iterations; its cost by design): "
            f"{med('login', 'todo', 'rps'):.1f} req/s, p50 {med('login', 'todo', 'p50_ms'):.0f} ms, "
            f"p99 {med('login', 'todo', 'p99_ms'):.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
