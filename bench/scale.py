"""Scale: what a request costs as the data grows, and whether the server's memory does.

1. In-process, two databases side by side: 100 to-dos in all (10 accounts)
   and 1,000,000 to-dos over 10,000 accounts, interleaved as they would arrive.
   In both, the reader has the same 3 to-dos. Get-one and list (the reader's 3)
   are timed in alternated batches; reported: microseconds on each and the
   ratio large/small (median of the per-pair ratios). Every lookup is an index
   seek, so the ratio should stay near 1 (the issue's bound: 1.2x).
2. A server's resident memory (VmRSS of the waitress subprocess, 4 threads)
   after 10,000 and after 100,000 requests of the mixed scenarios (list, get,
   create, complete, list users), driven by wrk. Bound: within 10%.

    .venv/bin/python bench/scale.py [--todos 1000000] [--accounts 10000] [--requests 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
import inprocess

import store
import todo_wsgi

ITERATIONS = 1000  # logins are not measured here: a cheap hash seeds faster


def seed_bulk(database: str, accounts: int, todos: int) -> common.Seeded:
    """Seed the bench accounts, then ``accounts`` in all owning ``todos`` in all.

    The reader keeps exactly 3 to-dos, spread through the table (at a third,
    two thirds and the end), as a long-lived account's would be.
    """
    seeded = common.seed(database, ITERATIONS)
    password_hash = todo_wsgi.hash_password(common.PASSWORD, ITERATIONS)
    conn = store.connect(database)
    try:
        with store.transaction(conn):
            reader_id, reader_todos = conn.execute(
                "SELECT u.id, count(t.id) FROM users u JOIN todos t ON t.owner_id = u.id WHERE u.name = 'reader'"
            ).fetchone()
            existing = conn.execute("SELECT count(*) FROM users").fetchone()[0]
            conn.executemany(
                "INSERT INTO users (public_id, name, password_hash) VALUES (?, ?, ?)",
                ((str(uuid.uuid4()), f"user{n}", password_hash) for n in range(accounts - existing)),
            )
            others = [row[0] for row in conn.execute("SELECT id FROM users WHERE id != ? ORDER BY id", (reader_id,))]
            # Move the reader's to-dos to the middle and the end of the table.
            conn.execute("DELETE FROM todos WHERE owner_id = ?", (reader_id,))
            extra = todos - conn.execute("SELECT count(*) FROM todos").fetchone()[0]
            marks = {extra // 3, 2 * extra // 3, extra - 1}

            def rows():  # type: ignore[no-untyped-def]
                for n in range(extra):
                    if n in marks:
                        yield reader_id, common.TEXTS[len([m for m in marks if m < n])]
                    else:
                        yield others[n % len(others)], f"to-do number {n}"

            conn.executemany("INSERT INTO todos (owner_id, text) VALUES (?, ?)", rows())
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("ANALYZE")
        ids = [row[0] for row in conn.execute("SELECT id FROM todos WHERE owner_id = ? ORDER BY id", (reader_id,))]
        count = conn.execute("SELECT count(*) FROM todos").fetchone()[0]
        users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
    finally:
        conn.close()
    assert len(ids) == 3 == reader_todos and count == todos and users == accounts, (ids, count, users)
    seeded.reader_todo_ids = ids
    seeded.extra = {"todos": count, "accounts": users}
    return seeded


def cost_ratio(args: argparse.Namespace, tmp: str) -> None:
    print(f"scale, {common.machine()}")
    started = time.perf_counter()
    small = seed_bulk(os.path.join(tmp, "small.db"), 10, 100)
    large = seed_bulk(os.path.join(tmp, "large.db"), args.accounts, args.todos)
    print(
        f"seeded {large.extra['todos']} to-dos over {large.extra['accounts']} accounts "
        f"({os.path.getsize(large.database) / 1e6:.0f} MB) in {time.perf_counter() - started:.0f} s; "
        f"small: {small.extra['todos']} to-dos over {small.extra['accounts']} accounts"
    )
    apps = {name: common.make_app(seeded.database, ITERATIONS) for name, seeded in (("small", small), ("large", large))}
    try:
        print(
            f"in-process, median of {args.repeat} alternated batches of {args.batch}\n"
            f"{'request':<10}{'us (100 to-dos)':>17}{'us (' + str(args.todos) + ' to-dos)':>22}{'ratio':>8}"
        )
        for index, label in ((0, "list"), (1, "get")):
            runs = {
                name: inprocess.runner(apps[name], common.scenarios(seeded)[index])
                for name, seeded in (("small", small), ("large", large))
            }
            for name, run in runs.items():
                status, body = common.call(apps[name], inprocess_env(small if name == "small" else large, index))
                assert status.startswith("200") and (index or body.count(b'"id"') == 3), (status, body)
                run(200)
            times: dict[str, list[float]] = {"small": [], "large": []}
            ratios = []
            for round_no in range(args.repeat):
                order = ["small", "large"] if round_no % 2 == 0 else ["large", "small"]
                for name in order:
                    begun = time.perf_counter()
                    runs[name](args.batch)
                    times[name].append((time.perf_counter() - begun) / args.batch)
                ratios.append(times["large"][-1] / times["small"][-1])
            print(
                f"{label:<10}{common.median(times['small']) * 1e6:>17.1f}"
                f"{common.median(times['large']) * 1e6:>22.1f}{common.median(ratios):>7.2f}x"
            )
    finally:
        for app in apps.values():
            app.close()


def inprocess_env(seeded: common.Seeded, index: int) -> dict[str, object]:
    scenario = common.scenarios(seeded)[index]
    return common.environ(scenario.method, scenario.path, scenario.token, scenario.body, scenario.headers)


def memory(args: argparse.Namespace, tmp: str) -> None:
    """RSS of a waitress subprocess after 10% of the requests and after all of them."""
    seeded = common.seed(os.path.join(tmp, "memory.db"), ITERATIONS)
    mix = [s for s in common.scenarios(seeded) if s.name != "login"]
    scripts = [common.wrk_script(s, os.path.join(tmp, f"mem-{s.name}.lua")) for s in mix]
    with common.Server("todo", 4, tmp, common.todo_env(seeded, ITERATIONS)) as server:
        done, marks, turn = 0, {}, 0
        for target in (args.requests // 10, args.requests):
            while done < target:
                result = common.run_wrk(server.url, scripts[turn % len(scripts)], 1, 8, 1)
                done += result.requests
                turn += 1
            marks[target] = (done, common.rss_kb(server.pid))
    (n1, rss1), (n2, rss2) = marks.values()
    print(
        f"\nserver memory (VmRSS of the waitress process, 4 threads, mixed requests):\n"
        f"  after {n1} requests: {rss1 / 1024:.1f} MiB; after {n2}: {rss2 / 1024:.1f} MiB "
        f"({(rss2 - rss1) / rss1 * 100:+.1f}%)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cost and memory as the data grows")
    parser.add_argument("--todos", type=int, default=common.env_int("BENCH_SCALE_TODOS", 1_000_000))
    parser.add_argument("--accounts", type=int, default=common.env_int("BENCH_SCALE_ACCOUNTS", 10_000))
    parser.add_argument("--requests", type=int, default=common.env_int("BENCH_SCALE_REQUESTS", 100_000))
    parser.add_argument("--batch", type=int, default=common.env_int("BENCH_BATCH", 2000))
    parser.add_argument("--repeat", type=int, default=common.env_int("BENCH_REPEAT", 9))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="todo-bench-") as tmp:
        cost_ratio(args, tmp)
        if shutil.which("wrk") is None:
            print(common.WRK_MISSING, file=sys.stderr)
            return 2
        memory(args, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
