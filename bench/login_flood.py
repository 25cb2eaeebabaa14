"""Another account's reads while one client floods logins: the cost of hashing to everyone else.

For each revision given (default: this working tree as it is, ``worktree``;
otherwise git revisions, each exported with ``git archive`` into a temporary
directory removed at exit), one at a time: a fresh SQLite file, the admin by
``python -m todo_wsgi --database DB create-user admin --admin`` (password on
stdin), ``waitress-serve --threads=N --call todo_wsgi:create_app`` from this
worktree's venv with ``PYTHONPATH`` set to the revision, and over HTTP a
reader with three to-dos. Then the victim, one keep-alive connection from
this process, reads GET /todo sequentially (``--requests`` times, each
answered 200 or the run fails):

1. with no flood;
2. while wrk floods POST /login from ``--connections`` connections for
   ``--seconds`` s, each login under a new name (so no per-name throttle ever
   applies) with a wrong password. The victim starts 1 s into the flood and
   stops after ``--requests`` reads or 0.5 s before the flood ends, whichever
   comes first (the count is reported).

The server hashes at ``--iterations`` PBKDF2 iterations (600,000, the
production default) and gets ``TODO_LOGIN_MAX_FAILURES_PER_ADDRESS`` raised
to 10^9 (older code ignores the setting), so the figures show what hashing
costs the others, not the per-address throttle. Reported per revision, as a
markdown table: the victim's median and p99 latency without and with the
flood and the ratio of each to the no-flood median; the flood's answers by
status (and wrk's socket errors and timeouts); and whether the median under
flood meets the target (under 50 ms or under 10x the no-flood median).

    .venv/bin/python bench/login_flood.py [REV ...] [--seconds 10] [--iterations 600000]
        [--requests 300] [--connections 8] [--threads 4]

    e.g. .venv/bin/python bench/login_flood.py                  # the working tree
         .venv/bin/python bench/login_flood.py HEAD~1 worktree  # before and after an edit

Needs wrk (Debian/Ubuntu: apt-get install wrk); exits 2 with that hint if
missing. Imports nothing of todo_wsgi itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
import revserve

TARGET_MS = 50.0
TARGET_RATIO = 10.0
STATUSES = ("200", "401", "429", "503")

# wrk's Lua: each request a new name ("<prefix>-<thread>-<n>"), Basic with a
# wrong password; statuses counted per thread and summed in done() as JSON.
FLOOD_LUA = r"""
local prefix = "%(prefix)s"
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local threads = {}

local function b64(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = data:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local s = {}
    for k = 3, 0, -1 do
      local v = math.floor(n / (64 ^ k)) %% 64
      s[#s + 1] = chars:sub(v + 1, v + 1)
    end
    if not b then s[3] = "=" end
    if not c then s[4] = "=" end
    out[#out + 1] = table.concat(s)
  end
  return table.concat(out)
end

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
  counter = 0
end

function request()
  counter = counter + 1
  local name = prefix .. "-" .. tid .. "-" .. counter
  local auth = "Basic " .. b64(name .. ":wrong-password-1")
  return wrk.format("POST", "/login", {["Authorization"] = auth}, "")
end

function response(status, headers, body)
  local key = tostring(status)
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local got = thread:get("counts")
    for key, n in pairs(got) do total[key] = (total[key] or 0) + n end
  end
  local parts = {}
  for key, n in pairs(total) do parts[#parts + 1] = string.format('"%%s": %%d', key, n) end
  local e = summary.errors
  io.write(string.format(
    'FLOOD {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, '
    .. '"p50_us": %%d, "statuses": {%%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), table.concat(parts, ", ")))
end
"""


@dataclass
class Outcome:
    label: str
    calm_ms: list[float]
    flood_ms: list[float]
    flood: dict[str, object] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="another account's reads while one client floods logins")
    parser.add_argument("revisions", nargs="*", metavar="REV", default=[revserve.WORKTREE])
    parser.add_argument("--seconds", type=float, default=10, help="length of the flood")
    parser.add_argument("--iterations", type=int, default=common.LOGIN_ITERATIONS, help="TODO_PBKDF2_ITERATIONS")
    parser.add_argument("--requests", type=int, default=300, help="the victim's reads, at most, each phase")
    parser.add_argument("--connections", type=int, default=8, help="the flood's connections")
    parser.add_argument("--threads", type=int, default=4, help="waitress threads")
    args = parser.parse_args(argv)
    if args.seconds < 2:
        parser.error("--seconds must be at least 2 (the victim starts 1 s in and stops 0.5 s before the end)")
    return args


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


class Victim:
    """The reader's keep-alive connection: GET /todo, timed one at a time."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"x-access-token": token}

    def read(self) -> float:
        started = time.perf_counter()
        self.conn.request("GET", "/todo", headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"the victim's read answered {response.status}: {body[:200]!r}")
        return elapsed

    def reads(self, count: int, until: float = math.inf) -> list[float]:
        times: list[float] = []
        while len(times) < count and time.monotonic() < until:
            times.append(self.read())
        return times

    def close(self) -> None:
        self.conn.close()


def measure(args: argparse.Namespace, rev: revserve.Revision, label: str, workdir: str) -> Outcome:
    os.makedirs(workdir)
    database = os.path.join(workdir, "flood.db")
    env = revserve.environment(
        rev,
        revserve.settings(database, args.iterations, TODO_LOGIN_MAX_FAILURES_PER_ADDRESS="1000000000"),
    )
    print(f"- {label}: todo_wsgi from {revserve.module_file(rev, env)}", flush=True)
    revserve.create_admin(rev, env, database)
    with revserve.Server(rev, env, args.threads, os.path.join(workdir, "server.log")) as server:
        seeded = revserve.seed(server.port)
        victim = Victim(server.port, seeded.reader_token)
        try:
            victim.reads(20)  # warm-up
            calm = victim.reads(args.requests)
            script = os.path.join(workdir, "flood.lua")
            with open(script, "w") as file:
                file.write(FLOOD_LUA % {"prefix": "flood-" + secrets.token_hex(4)})
            command = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds:g}s", "--timeout=60s"]
            started = time.monotonic()
            with subprocess.Popen(
                [*command, "-s", script, server.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ) as wrk:
                try:
                    time.sleep(1)
                    flooded = victim.reads(args.requests, until=started + args.seconds - 0.5)
                    out, err = wrk.communicate(timeout=args.seconds + 120)
                finally:
                    if wrk.poll() is None:
                        wrk.kill()
        finally:
            victim.close()
    line = next((ln for ln in out.splitlines() if ln.startswith("FLOOD ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{out}\n{err}")
    return Outcome(label, calm, flooded, json.loads(line[len("FLOOD ") :]))


def report(args: argparse.Namespace, outcomes: list[Outcome]) -> None:
    print(
        f"\n### Victim's GET /todo (one keep-alive connection, sequential), without and with a login flood "
        f"(wrk, {args.connections} connections, {args.seconds:g} s, a new name per login, wrong password; "
        f"PBKDF2 {args.iterations} iterations; waitress {args.threads} threads)\n"
    )
    print("(p99: nearest rank, so the slowest read when there are fewer than 100)\n")
    print("| revision | phase | reads | median ms | p99 ms | median vs no flood | p99 vs no-flood median |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for o in outcomes:
        base = common.median(o.calm_ms)
        for phase, values in (("no flood", o.calm_ms), ("login flood", o.flood_ms)):
            med, p99 = common.median(values), percentile(values, 99)
            row = f"| {o.label} | {phase} | {len(values)} | {med:.2f} | {p99:.2f} |"
            print(row + f" {med / base:.1f}x | {p99 / base:.1f}x |")
    print("\n### The flood's answers\n")
    print("| revision | logins | per s | " + " | ".join(STATUSES) + " | other | socket errors, timeouts | target |")
    print("|---|---:|---:|" + "---:|" * len(STATUSES) + "---:|---:|---|")
    for o in outcomes:
        flood = o.flood
        statuses: dict[str, int] = flood["statuses"]  # type: ignore[assignment]
        requests = int(flood["requests"])  # type: ignore[call-overload]
        duration_s = int(flood["duration_us"]) / 1e6  # type: ignore[call-overload]
        other = sum(n for key, n in statuses.items() if key not in STATUSES)
        errors = sum(int(flood[k]) for k in ("connect", "read", "write"))  # type: ignore[call-overload]
        med, base = common.median(o.flood_ms), common.median(o.calm_ms)
        met = med < TARGET_MS or med < TARGET_RATIO * base
        target = f"{'met' if met else 'NOT met'} (median {med:.1f} ms; needs < {TARGET_MS:g} ms or < {TARGET_RATIO:g}x)"
        print(
            f"| {o.label} | {requests} | {requests / duration_s:.1f} | "
            + " | ".join(str(statuses.get(s, 0)) for s in STATUSES)
            + f" | {other} | {errors}, {flood['timeout']} | {target} |"
        )
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if revserve.need_wrk():
        return 2
    revserve.stop_on_signals()
    with tempfile.TemporaryDirectory(prefix="todo-flood-") as tmp:
        revisions = [revserve.export(rev, i, tmp) for i, rev in enumerate(args.revisions)]
        names = revserve.labels(revisions)
        print(f"login_flood, {common.machine()}")
        outcomes = []
        for i, (rev, name) in enumerate(zip(revisions, names, strict=True)):
            outcomes.append(measure(args, rev, name, os.path.join(tmp, f"run{i}")))
        report(args, outcomes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
