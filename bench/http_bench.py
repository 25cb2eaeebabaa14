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
its cost is PBKDF2 by design, at the iteration count shown. todo-wsgi logs
as deployed (one access-log line per request to standard error, here a file).
List and get also run against more servers: todo-wsgi with the access log
off; the floor (``bench/ceiling.py``), the ceiling plus the very SQLite read
todo-wsgi makes for them, through store.py, and no other code; the floor
again with the access-log line API.md requires, written by todo-wsgi's own
code (the least any app keeping both rules does); and the issue's "first
cut" (PyJWT decode, two reads, json.dumps), which the issue measured at about
0.42x on its machine: its ratio here says how this machine compares. For
every server the table also gives what a request cost its process (CPU time
and voluntary context switches per request, from /proc): where the time goes
between the ceiling and todo-wsgi. With ``--server-cpu N`` every server is
kept on CPU N (``last``: the CPU ``serve --one-cpu`` picks, as ``make run``
serves) and wrk on the other CPUs.

    .venv/bin/python bench/http_bench.py [--rounds 5] [--seconds 3] [--threads 4]
                                         [--connections 8] [--wrk-threads 1] [--server-cpu N|last]
    environment: BENCH_ROUNDS, BENCH_SECONDS, BENCH_THREADS, BENCH_CONNECTIONS,
    BENCH_WRK_THREADS, BENCH_LOGIN_ITERATIONS (600000), BENCH_SCENARIOS, BENCH_SERVER_CPU

Needs wrk (Debian/Ubuntu: apt-get install wrk); exits 2 with that hint if missing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return common.bench_arguments("todo-wsgi vs the ceiling, under waitress, driven by wrk", rounds=5).parse_args(argv)


# Scenarios also run against a todo-wsgi with its access log off (what the line
# costs), the floor (what the database read alone costs, and with the line)
# and the first cut.
WITHOUT_LOG = ("list", "get")
SERVERS = {  # row label suffix of each server beside todo-wsgi's own row
    "todo, no access log": ", no access log",
    "floor": ", floor (the read only)",
    "floor, access log": ", floor + access log",
    "first cut": ", issue's first cut",
}


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
        env = common.todo_env(seeded, args.iterations)
        pin, _ = common.pinning(args.server_cpu)
        floor = ("--body-file", body_file, "--public-id", seeded.reader_public_id)
        servers = {
            "todo": common.Server("todo", args.threads, tmp, env, pin),
            "todo, no access log": common.Server("todo", args.threads, tmp, env, ("--no-access-log", *pin)),
            "ceiling": common.Server("ceiling", args.threads, tmp, args=("--body-file", body_file, *pin)),
            "floor": common.Server("floor", args.threads, tmp, env, (*floor, *pin)),
            "floor, access log": common.Server("floor", args.threads, tmp, env, (*floor, "--access-log", *pin)),
            "first cut": common.Server("first-cut", args.threads, tmp, env, pin),
        }
        with contextlib.ExitStack() as stack:
            for server in servers.values():
                stack.enter_context(server)
            return run(args, seeded, tmp, servers)


def run(args: argparse.Namespace, seeded: common.Seeded, tmp: str, servers: dict[str, common.Server]) -> int:
    chosen = [s for s in common.scenarios(seeded) if not args.scenarios or s.name in args.scenarios.split(",")]
    scripts = {s.name: common.wrk_script(s, os.path.join(tmp, f"{s.name}.lua")) for s in chosen}
    _, wrk_cpus = common.pinning(args.server_cpu)
    wrk = (args.wrk_threads, args.connections, args.seconds, 5, wrk_cpus)
    pin, _ = common.pinning(args.server_cpu)
    where = "" if wrk_cpus is None else f", every server on CPU {pin[1]} and wrk on CPU {sorted(wrk_cpus)}"
    print(
        f"HTTP, {common.machine()}; waitress {args.threads} threads for every app{where}; "
        f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.seconds:g}s; "
        f"median of {args.rounds} alternated rounds; ceiling body {len(seeded.list_body)} bytes; "
        "todo-wsgi logs each request to stderr (a file) unless said"
    )
    # (scenario, server name) -> one result (and one cost) per round
    results: dict[tuple[str, str], list[common.WrkResult]] = {}
    costs: dict[tuple[str, str], list[common.PerRequest]] = {}
    ratios: dict[str, list[float]] = {}
    for round_no in range(args.rounds):
        for scenario in chosen:
            script = scripts[scenario.name]
            if scenario.name == "login":
                # One connection per thread, each login a few tenths of a second of one core.
                login_wrk = (args.wrk_threads, min(args.threads, args.connections), args.seconds, 30, wrk_cpus)
                results.setdefault(("login", "todo"), []).append(
                    common.run_wrk(servers["todo"].url, script, *login_wrk)
                )
                continue
            names = ["todo", "ceiling"] + (list(SERVERS) if scenario.name in WITHOUT_LOG else [])
            shift = round_no % len(names)  # each goes first in turn: drift hits all alike
            got = {}
            for name in names[shift:] + names[:shift]:
                before = common.ProcessCost.of(servers[name].pid)
                got[name] = common.run_wrk(servers[name].url, script, *wrk)
                cost = common.per_request(before, common.ProcessCost.of(servers[name].pid), got[name].requests)
                results.setdefault((scenario.name, name), []).append(got[name])
                if cost is not None:
                    costs.setdefault((scenario.name, name), []).append(cost)
            for name in names:
                if name != "ceiling":
                    ratios.setdefault(label_of(scenario.name, name), []).append(got[name].rps / got["ceiling"].rps)
        print(f"  round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    def med(key: tuple[str, str], field: str) -> float:
        return common.median([getattr(r, field) for r in results[key]])

    columns = ("todo", "ceiling", "ratio")
    print(common.comparison_header(28, *columns))
    for scenario in chosen:
        if scenario.name == "login":
            continue
        for name in ("todo", *SERVERS):
            if (scenario.name, name) not in results:
                continue
            label = label_of(scenario.name, name)
            todo, ceiling = results[scenario.name, name], results[scenario.name, "ceiling"]
            print(common.comparison_row(label, 28, columns, todo, ceiling, common.median(ratios[label])))
    if costs:
        print(
            "\nWhat a request cost each server's process (medians; CPU = user + system time of all its threads;"
            "\nswitches = voluntary context switches, mostly threads handing over the GIL):"
        )
        print(f"{'scenario':<12}{'server':<22}{'CPU us':>8}{'system us':>11}{'switches':>10}")
        for (scenario_name, name), per in costs.items():
            print(
                f"{scenario_name:<12}{name:<22}{common.median([c.cpu_us for c in per]):>8.0f}"
                f"{common.median([c.system_us for c in per]):>11.0f}{common.median([c.switches for c in per]):>10.1f}"
            )
    if ("login", "todo") in results:
        key = ("login", "todo")
        print(
            f"\nlog in (PBKDF2-HMAC-SHA256, {args.iterations} iterations, its cost by design; "
            f"{min(args.threads, args.connections)} connections): {med(key, 'rps'):.1f} req/s, "
            f"p50 {med(key, 'p50_ms'):.0f} ms, p99 {med(key, 'p99_ms'):.0f} ms"
        )
    return 0


def label_of(scenario: str, server: str) -> str:
    """The table's row label of one scenario on one server."""
    return scenario + SERVERS.get(server, "")


if __name__ == "__main__":
    sys.exit(main())
