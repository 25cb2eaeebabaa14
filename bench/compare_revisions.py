"""Two (or more) git revisions of todo-wsgi served side by side: list and get, driven by wrk.

Each revision is exported with ``git archive`` into a temporary directory
(removed at exit; ``worktree`` means this working tree as it is) and served by
``waitress-serve --threads=N --call todo_wsgi:create_app`` from this
worktree's venv, with ``PYTHONPATH`` and the working directory set to the
export, so each server runs its revision's own code (the todo_wsgi.py each
imports is printed). Each gets its own fresh SQLite file, seeded identically:
the admin by ``python -m todo_wsgi --database DB create-user admin --admin``
(password on stdin), then, over HTTP, a reader with three to-dos. Scenarios:
"list" (GET /todo, the reader's three to-dos) and "get" (GET /todo/ID), each
request answered 200 or the run fails. Every round runs each scenario
against every server in turn, a different server first each round, so drift
on a shared machine hits all alike; after a warm-up run per server and
scenario, unreported. ``--restart`` starts every server afresh (a new process on its
database, warmed up again) before each round: a Python process's speed depends on its
address-space layout and hash seed, which is why pyperf spreads a benchmark over many
processes, and a run that keeps its servers measures one launch of each revision as often
as it has rounds. Reported as a markdown table: medians over the rounds
of requests/s, p50 and p99 latency (wrk's), and each revision's requests/s
as a fraction of the first revision's (median of the per-round ratios).

Servers log as ``waitress-serve`` makes them (``logging.basicConfig()``: the
access log on standard error), here to a file each. ``--serve make-run``
serves each revision instead by its own ``python -m todo_wsgi serve`` (what
its ``make run`` runs), with the logging set-up that revision ships for it,
so the run compares the revisions as an operator serves them. ``--pin last`` starts
every server under ``taskset -c <last CPU>`` and runs wrk on the other CPUs;
``--pin both`` measures unpinned, then pinned (fresh servers and databases
each time). ``--inprocess`` also times the WSGI callable of each revision
called directly in a subprocess (bench/revision_inprocess.py), µs per request
(each run the best of 5 batches), median of ``--rounds`` runs alternating the revisions' order, and the ratio
to the first revision (median of the per-run ratios; above 1 is slower).

    .venv/bin/python bench/compare_revisions.py BEFORE_REV AFTER_REV [MORE_REV ...]
        [--rounds 7] [--seconds 3] [--threads 4] [--connections 8] [--wrk-threads 1]
        [--pin none|last|both] [--serve waitress-serve|make-run] [--restart] [--inprocess] [--no-http]
        [--iterations 600000]

    e.g. .venv/bin/python bench/compare_revisions.py HEAD~3 HEAD --pin both --inprocess
         .venv/bin/python bench/compare_revisions.py HEAD worktree     # uncommitted edits against HEAD
         .venv/bin/python bench/compare_revisions.py 43409c0 HEAD --pin last --serve make-run

Needs wrk (Debian/Ubuntu: apt-get install wrk) unless --no-http; exits 2 with
that hint if missing. Imports nothing of todo_wsgi itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
import revserve

SCENARIOS = ("list", "get")
SERVED_BY = {"waitress-serve": "waitress-serve", "make-run": "each revision's python -m todo_wsgi serve"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="git revisions of todo-wsgi side by side: list and get, with wrk")
    parser.add_argument("revisions", nargs="+", metavar="REV", help="git revisions (the first is the baseline)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=4, help="waitress threads")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--pin", choices=("none", "last", "both"), default="none")
    parser.add_argument(
        "--serve",
        choices=revserve.SERVE_WAYS,
        default="waitress-serve",
        help="one waitress-serve line for all, or each revision's own python -m todo_wsgi serve (as make run)",
    )
    parser.add_argument("--restart", action="store_true", help="a fresh server process per revision each round")
    parser.add_argument("--inprocess", action="store_true", help="also time the WSGI callable in-process")
    parser.add_argument("--no-http", action="store_true", help="no wrk runs (with --inprocess)")
    parser.add_argument("--iterations", type=int, default=common.LOGIN_ITERATIONS, help="TODO_PBKDF2_ITERATIONS")
    parser.add_argument("--batch", type=int, default=2000, help="in-process calls per timed batch")
    args = parser.parse_args(argv)
    if len(args.revisions) < 2:
        parser.error("give at least two revisions (the same one twice measures the noise)")
    if args.no_http and not args.inprocess:
        parser.error("--no-http leaves nothing to measure without --inprocess")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_http and revserve.need_wrk():
        return 2
    revserve.stop_on_signals()
    modes = [] if args.no_http else {"none": ["none"], "last": ["last"], "both": ["none", "last"]}[args.pin]
    with tempfile.TemporaryDirectory(prefix="todo-compare-") as tmp:
        revisions = [revserve.export(rev, i, tmp) for i, rev in enumerate(args.revisions)]
        names = revserve.labels(revisions)
        wrk = "no HTTP runs" if args.no_http else f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.seconds:g}s"
        print(
            f"compare_revisions, {common.machine()}; {SERVED_BY[args.serve]} --threads={args.threads}; "
            f"{wrk}; {args.rounds} alternated rounds" + (", each on freshly started servers" if args.restart else "")
        )
        for name, rev in zip(names, revisions, strict=True):
            env = revserve.environment(rev, {})
            print(f"- {name}: todo_wsgi from {revserve.module_file(rev, env)}")
        for number, mode in enumerate(modes or ["none"]):
            with contextlib.ExitStack() as stack:
                servers, seeded = start(args, revisions, names, mode, os.path.join(tmp, f"mode{number}"), stack)
                if modes:
                    http_rounds(args, names, servers, seeded, mode, tmp)
                if args.inprocess and number == 0:
                    inprocess(args, revisions, names, servers, seeded)
    return 0


def start(
    args: argparse.Namespace,
    revisions: list[revserve.Revision],
    names: list[str],
    mode: str,
    workdir: str,
    stack: contextlib.ExitStack,
) -> tuple[list[revserve.Server], list[revserve.Seeded]]:
    """A fresh database and server per revision, each seeded the same way."""
    os.makedirs(workdir)
    server_cpus = {max(os.sched_getaffinity(0))} if mode == "last" else None
    servers, seeded = [], []
    for i, rev in enumerate(revisions):
        database = os.path.join(workdir, f"rev{i}.db")
        env = revserve.environment(rev, revserve.settings(database, args.iterations))
        revserve.create_admin(rev, env, database)
        server = stack.enter_context(
            revserve.Server(rev, env, args.threads, os.path.join(workdir, f"rev{i}.log"), server_cpus, args.serve)
        )
        servers.append(server)
        seeded.append(revserve.seed(server.port))
        if seeded[-1].todo_ids != seeded[0].todo_ids:
            raise RuntimeError(f"{names[i]} seeded ids {seeded[-1].todo_ids}, not {seeded[0].todo_ids}")
    return servers, seeded


def http_rounds(
    args: argparse.Namespace,
    names: list[str],
    servers: list[revserve.Server],
    seeded: list[revserve.Seeded],
    mode: str,
    tmp: str,
) -> None:
    cpus = os.sched_getaffinity(0)
    wrk_cpus = cpus - {max(cpus)} if mode == "last" else None
    if wrk_cpus is not None and not wrk_cpus:
        raise SystemExit("--pin last needs two CPUs: one for the servers, the others for wrk")
    scripts: dict[tuple[str, int], str] = {}
    for i, seed in enumerate(seeded):
        for case in (
            common.Scenario("list", "GET", "/todo", seed.reader_token),
            common.Scenario("get", "GET", f"/todo/{seed.todo_ids[1]}", seed.reader_token),
        ):
            scripts[case.name, i] = common.wrk_script(case, os.path.join(tmp, f"{case.name}-{i}.lua"))

    def wrk(i: int, scenario: str, seconds: float) -> common.WrkResult:
        return common.run_wrk(
            servers[i].url, scripts[scenario, i], args.wrk_threads, args.connections, seconds, 5, wrk_cpus
        )

    def warm_up() -> None:  # unreported
        for scenario in SCENARIOS:
            for i in range(len(servers)):
                wrk(i, scenario, min(1.0, args.seconds))

    warm_up()
    results: dict[tuple[str, int], list[common.WrkResult]] = {}
    ratios: dict[tuple[str, int], list[float]] = {}
    order = list(range(len(servers)))
    for round_no in range(args.rounds):
        shift = round_no % len(order)
        if args.restart and round_no > 0:
            for server in servers:
                server.restart()
            warm_up()
        for scenario in SCENARIOS:
            got = {i: wrk(i, scenario, args.seconds) for i in order[shift:] + order[:shift]}
            for i in order:
                results.setdefault((scenario, i), []).append(got[i])
                ratios.setdefault((scenario, i), []).append(got[i].rps / got[0].rps)
        this_round = "; ".join(
            f"{scenario} " + " ".join(f"{ratios[scenario, i][-1]:.2f}" for i in order[1:]) for scenario in SCENARIOS
        )
        print(f"  {mode}: round {round_no + 1}/{args.rounds} done ({this_round})", file=sys.stderr, flush=True)

    if mode == "last":
        where = f"pinned: servers on CPU {max(cpus)} (taskset), wrk on CPU {','.join(map(str, sorted(wrk_cpus or ())))}"
    else:
        where = "unpinned"
    print(f"\n### HTTP, {where}\n")
    print(f"| scenario | revision | req/s | p50 ms | p99 ms | req/s vs {names[0]} |")
    print("|---|---|---:|---:|---:|---:|")
    for scenario in SCENARIOS:
        for i, name in enumerate(names):
            runs = results[scenario, i]
            rps = common.median([r.rps for r in runs])
            p50 = common.median([r.p50_ms for r in runs])
            p99 = common.median([r.p99_ms for r in runs])
            ratio = common.median(ratios[scenario, i])
            print(f"| {scenario} | {name} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {ratio:.2f}x |")
    sys.stdout.flush()


def inprocess(
    args: argparse.Namespace,
    revisions: list[revserve.Revision],
    names: list[str],
    servers: list[revserve.Server],
    seeded: list[revserve.Seeded],
) -> None:
    """Each revision's WSGI callable timed in its own subprocess, on the database its server seeded (idle)."""
    per_run: dict[tuple[str, int], list[float]] = {}
    ratios: dict[tuple[str, int], list[float]] = {}
    order = list(range(len(revisions)))
    for run in range(args.rounds):
        shift = run % len(order)
        got: dict[int, dict[str, float]] = {}
        for i in order[shift:] + order[:shift]:
            rev, seed = revisions[i], seeded[i]
            out = subprocess.run(
                [
                    sys.executable,
                    os.path.join(revserve.HERE, "revision_inprocess.py"),
                    seed.reader_token,
                    str(seed.todo_ids[1]),
                    "--batch",
                    str(args.batch),
                ],
                cwd=rev.path,
                env=servers[i].env,  # the server's own settings and path
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise RuntimeError(f"{names[i]}: in-process run failed: {out.stderr[-2000:]}")
            got[i] = json.loads(out.stdout.strip().splitlines()[-1])
        for i in order:
            for scenario in SCENARIOS:
                per_run.setdefault((scenario, i), []).append(got[i][scenario])
                ratios.setdefault((scenario, i), []).append(got[i][scenario] / got[0][scenario])
        print(f"  in-process: run {run + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(
        f"\n### In-process (WSGI callable called directly, access log formatted to /dev/null; "
        f"median of {args.rounds} runs, each the best of 5 batches of {args.batch})\n"
    )
    print(f"| scenario | revision | µs/request | time vs {names[0]} |")
    print("|---|---|---:|---:|")
    for scenario in SCENARIOS:
        for i, name in enumerate(names):
            us = common.median(per_run[scenario, i])
            print(f"| {scenario} | {name} | {us:.1f} | {common.median(ratios[scenario, i]):.2f}x |")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
