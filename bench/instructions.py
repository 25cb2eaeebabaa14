"""Instructions per request of git revisions of todo-wsgi, counted by valgrind's callgrind: a cost
that a shared, noisy machine cannot blur.

Each revision is exported and seeded as ``compare_revisions.py`` does (``revserve``), then
served under ``valgrind --tool=callgrind`` (``--serve``: the same ``waitress-serve`` line for
all, or each revision's own ``python -m todo_wsgi serve``, as ``make run``), and sent ``--few``
and then, on a fresh server, ``--many`` requests of a scenario one after another over one
connection. The difference of the two runs' totals divided by the difference of their counts
is what one request costs in user space, every thread of the server counted (waitress, the
app, SQLite, logging), start-up and shut-down cancelled out. Not counted: the kernel, and what
the CPU makes of the instructions (caches, branch prediction): compare it with the req/s of
``compare_revisions.py``, which sees both.

    .venv/bin/python bench/instructions.py BEFORE_REV AFTER_REV [MORE_REV ...]
        [--serve waitress-serve|make-run] [--few 300] [--many 1300]

Needs valgrind (Debian/Ubuntu: apt-get install valgrind); exits 2 with that hint if missing.
Imports nothing of todo_wsgi itself. About half a minute per revision and scenario.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
import revserve

SCENARIOS = ("list", "get")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="instructions per request of git revisions, by callgrind")
    parser.add_argument("revisions", nargs="+", metavar="REV", help="git revisions (the first is the baseline)")
    parser.add_argument("--serve", choices=revserve.SERVE_WAYS, default="waitress-serve")
    parser.add_argument("--few", type=int, default=300, help="requests of the shorter run")
    parser.add_argument("--many", type=int, default=1300, help="requests of the longer run")
    parser.add_argument("--threads", type=int, default=4, help="waitress threads")
    args = parser.parse_args(argv)
    if not 0 < args.few < args.many:
        parser.error("--few must be at least 1 and less than --many")
    return args


def callgrind_total(path: str) -> int:
    """The instructions a callgrind output file counts in all (its ``totals:`` or ``summary:`` line)."""
    with open(path) as file:
        for line in file:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise ValueError(f"{path}: no totals line (did the server exit cleanly?)")


def per_request(few: tuple[int, int], many: tuple[int, int]) -> float:
    """Instructions per request from two runs of (requests, instructions)."""
    return (many[1] - few[1]) / (many[0] - few[0])


def counted_run(rev: revserve.Revision, env: dict[str, str], path: str, token: str, n: int, args, work: str) -> int:
    """Serve ``rev`` under callgrind, send ``n`` GETs of ``path``, stop it; return its instruction total."""
    out = os.path.join(work, f"callgrind.{os.getpid()}.{n}")
    wrapper = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}")
    log = os.path.join(work, "server.log")
    with revserve.Server(rev, env, args.threads, log, serve=args.serve, wrapper=wrapper, start_seconds=300) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        for _ in range(n):
            conn.request("GET", path, headers={"x-access-token": token})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{rev.label}: GET {path} answered {response.status}")
        conn.close()
    total = callgrind_total(out)
    os.remove(out)
    return total


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("valgrind") is None:
        print("bench/instructions.py needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 2
    revserve.stop_on_signals()
    with tempfile.TemporaryDirectory(prefix="todo-instructions-") as tmp:
        revisions = [revserve.export(rev, i, tmp) for i, rev in enumerate(args.revisions)]
        names = revserve.labels(revisions)
        print(
            f"instructions.py, {common.machine()}; {args.serve}, callgrind; "
            f"({args.many} requests - {args.few} requests) / {args.many - args.few}"
        )
        counts: dict[tuple[str, int], float] = {}
        for i, rev in enumerate(revisions):
            work = os.path.join(tmp, f"work{i}")
            os.makedirs(work)
            database = os.path.join(work, "todo.db")
            env = revserve.environment(rev, revserve.settings(database, 1000))
            revserve.create_admin(rev, env, database)
            with revserve.Server(rev, env, args.threads, os.path.join(work, "seed.log"), serve=args.serve) as server:
                seeded = revserve.seed(server.port)
            paths = {"list": "/todo", "get": f"/todo/{seeded.todo_ids[1]}"}
            for scenario in SCENARIOS:
                runs = [
                    (n, counted_run(rev, env, paths[scenario], seeded.reader_token, n, args, work))
                    for n in (args.few, args.many)
                ]
                counts[scenario, i] = per_request(runs[0], runs[1])
                print(f"  {names[i]} {scenario}: {counts[scenario, i]:,.0f}", file=sys.stderr, flush=True)
        print(f"\n| scenario | revision | instructions per request | vs {names[0]} |")
        print("|---|---|---:|---:|")
        for scenario in SCENARIOS:
            for i, name in enumerate(names):
                ratio = counts[scenario, i] / counts[scenario, 0]
                print(f"| {scenario} | {name} | {counts[scenario, i]:,.0f} | {ratio:.3f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
