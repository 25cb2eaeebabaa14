"""HTTP benchmark: todo-wsgi on SQLite against todo-wsgi on PostgreSQL, and two servers on one PostgreSQL.

Part 1, side by side: todo-wsgi under waitress on a fresh temporary SQLite
database and todo-wsgi under the same waitress on a fresh PostgreSQL database
(a throwaway cluster started here, or the server ``TODO_TEST_POSTGRES_URL``
names), each seeded alike (an admin, a reader with 3 to-dos, a writer), with a
connection pool as large as the server's threads. wrk drives both with the
same threads, connections and requests per scenario; every round runs each
scenario against both, alternating which goes first. Reported: medians over
the rounds of requests/s, p50 and p99, and PostgreSQL's requests/s as a
fraction of SQLite's (median of the per-round ratios).

Part 2, several servers: a second todo-wsgi server on the same PostgreSQL
database. Per scenario and round, one server alone takes all the connections,
then both servers at once take half each (two wrk processes started together);
reported: the total requests/s of the pair against the one server alone, and
its ratio. On a machine with few cores the servers, PostgreSQL and wrk share
them: the ratio says what a second process buys here, not on separate hosts.

The private cluster runs with fsync and synchronous_commit off (it is thrown
away); SQLite runs as deployed (WAL, synchronous NORMAL: no fsync per commit
either). Log in is left out: its cost is PBKDF2, the same on both.

    .venv/bin/python bench/pg_bench.py [--rounds 3] [--seconds 3] [--threads 4]
                                       [--connections 8] [--wrk-threads 1]
    environment: BENCH_ROUNDS, BENCH_SECONDS, BENCH_THREADS, BENCH_CONNECTIONS,
    BENCH_WRK_THREADS, BENCH_LOGIN_ITERATIONS (600000), BENCH_SCENARIOS,
    TODO_TEST_POSTGRES_URL (a server to use instead of a private cluster)

Needs wrk (apt-get install wrk), PostgreSQL's initdb/pg_ctl (apt-get install
postgresql) unless TODO_TEST_POSTGRES_URL is set, and psycopg (the
``postgres`` extra); exits 2 saying what to install when one is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root, for tests.pg

import common

from tests import pg

BACKENDS = ("sqlite", "postgresql")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return common.bench_arguments(
        "todo-wsgi on SQLite vs PostgreSQL, and two servers on one PostgreSQL", rounds=3
    ).parse_args(argv)


def missing() -> str | None:
    """What to install before this benchmark can run, or None."""
    if shutil.which("wrk") is None:
        return common.WRK_MISSING
    if os.environ.get(pg.ENV_URL):
        return None
    if pg.find_bindir() is None:
        return (
            "PostgreSQL's initdb and pg_ctl are not installed; on Debian or Ubuntu: sudo apt-get install postgresql "
            f"(or set {pg.ENV_URL}=postgresql://USER:PASSWORD@HOST/DB, a role allowed to CREATE DATABASE)"
        )
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg is not installed: .venv/bin/pip install -e '.[postgres]'"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.server_cpu != "none":
        # Two servers and PostgreSQL share the machine here: pinning one CPU would measure that choice, not them.
        print("pg_bench does not pin servers (--server-cpu)", file=sys.stderr)
        return 2
    reason = missing()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    if args.connections < 2 * args.wrk_threads:
        print("--connections must be at least twice --wrk-threads (it is split between two servers)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="todo-pg-bench-") as tmp:
        url, stop = pg.start_cluster()
        try:
            seeded = {
                "sqlite": common.seed(os.path.join(tmp, "bench.db"), args.iterations),
                "postgresql": common.seed(url, args.iterations),
            }
            envs = {
                name: {**common.todo_env(s, args.iterations), "TODO_POOL_SIZE": str(args.threads)}
                for name, s in seeded.items()
            }
            servers = {
                "sqlite": common.Server("todo", args.threads, tmp, envs["sqlite"]),
                "postgresql": common.Server("todo", args.threads, tmp, envs["postgresql"]),
                "postgresql B": common.Server("todo", args.threads, tmp, envs["postgresql"]),
            }
            with servers["sqlite"], servers["postgresql"], servers["postgresql B"]:
                return run(args, seeded, tmp, servers)
        finally:
            stop()


def both_at_once(urls: list[str], script: str, args: argparse.Namespace) -> list[common.WrkResult]:
    """One wrk per URL, started together, the connections split between them."""
    share = args.connections // len(urls)
    barrier = threading.Barrier(len(urls))
    results: list[common.WrkResult | BaseException | None] = [None] * len(urls)

    def drive(i: int) -> None:
        try:
            barrier.wait()
            results[i] = common.run_wrk(urls[i], script, args.wrk_threads, share, args.seconds)
        except BaseException as exc:  # re-raised below, in the caller's thread
            results[i] = exc

    workers = [threading.Thread(target=drive, args=(i,)) for i in range(len(urls))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if isinstance(r, common.WrkResult)]


def run(args: argparse.Namespace, seeded: dict[str, common.Seeded], tmp: str, servers: dict[str, common.Server]) -> int:
    chosen: dict[str, dict[str, common.Scenario]] = {
        backend: {
            s.name: s
            for s in common.scenarios(seeded[backend])
            if s.name != "login" and (not args.scenarios or s.name in args.scenarios.split(","))
        }
        for backend in BACKENDS
    }
    names = list(chosen["sqlite"])
    scripts = {
        (backend, name): common.wrk_script(chosen[backend][name], os.path.join(tmp, f"{backend}-{name}.lua"))
        for backend in BACKENDS
        for name in names
    }
    wrk = (args.wrk_threads, args.connections, args.seconds)
    print(
        f"PostgreSQL vs SQLite, {common.machine()}; waitress {args.threads} threads, pool {args.threads}; "
        f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.seconds:g}s; "
        f"median of {args.rounds} alternated rounds; access log on (stderr, a file)"
    )
    side: dict[tuple[str, str], list[common.WrkResult]] = {}
    side_ratio: dict[str, list[float]] = {}
    alone: dict[str, list[float]] = {}
    pair: dict[str, list[float]] = {}
    pair_ratio: dict[str, list[float]] = {}
    pair_p99: dict[str, list[float]] = {}
    pg_urls = [servers["postgresql"].url, servers["postgresql B"].url]
    for round_no in range(args.rounds):
        for name in names:
            # Part 1: the same scenario on each backend, each going first in turn.
            order = BACKENDS if round_no % 2 == 0 else BACKENDS[::-1]
            got = {}
            for backend in order:
                got[backend] = common.run_wrk(servers[backend].url, scripts[backend, name], *wrk)
                side.setdefault((name, backend), []).append(got[backend])
            side_ratio.setdefault(name, []).append(got["postgresql"].rps / got["sqlite"].rps)
            # Part 2: one server alone, then two at once on the same database (in turn first).
            script = scripts["postgresql", name]
            steps = ["alone", "pair"] if round_no % 2 == 0 else ["pair", "alone"]
            for step in steps:
                if step == "alone":
                    one = common.run_wrk(pg_urls[0], script, *wrk)
                    alone.setdefault(name, []).append(one.rps)
                else:
                    two = both_at_once(pg_urls, script, args)
                    pair.setdefault(name, []).append(sum(r.rps for r in two))
                    pair_p99.setdefault(name, []).append(max(r.p99_ms for r in two))
            pair_ratio.setdefault(name, []).append(pair[name][-1] / alone[name][-1])
        print(f"  round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    columns = ("SQLite", "PostgreSQL", "PG/SQLite")
    print(common.comparison_header(10, *columns))
    for name in names:
        lite, post = side[name, "sqlite"], side[name, "postgresql"]
        print(common.comparison_row(name, 10, columns, lite, post, common.median(side_ratio[name])))
    half = args.connections // 2
    print(
        f"\nTwo servers on one PostgreSQL database ({args.threads} threads and a pool of {args.threads} each): "
        f"one server with -c{args.connections} against two at once with -c{half} each (two wrk started together)"
    )
    print(f"{'scenario':<10}{'one server req/s':>17}{'two servers req/s':>19}{'p99 ms (worse)':>16}{'two/one':>9}")
    for name in names:
        print(
            f"{name:<10}{common.median(alone[name]):>17.0f}{common.median(pair[name]):>19.0f}"
            f"{common.median(pair_p99[name]):>16.2f}{common.median(pair_ratio[name]):>8.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
