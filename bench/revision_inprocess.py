"""Microseconds per request of one revision's WSGI callable, called in-process (no server, no network).

Run by ``compare_revisions.py --inprocess`` in a subprocess whose
``PYTHONPATH`` is the revision's export, on a database that revision's server
seeded, with the server's ``TODO_*`` settings; imports only
``todo_wsgi.create_app``. Logging as under ``waitress-serve`` (which calls
``logging.basicConfig()``), but to /dev/null: the access-log line is
formatted and written on each request. Prints one JSON line: the best (least)
of ``--repeat`` timed batches of µs per request, for "list" (GET /todo) and
"get" (GET /todo/ID), after ``--warmup`` untimed calls; the least, as timeit
advises, since a batch is only ever slowed by what else the machine runs.

    python bench/revision_inprocess.py TOKEN TODO_ID [--batch 2000] [--repeat 5] [--warmup 300]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import time
from typing import Any


def environ(path: str, token: str) -> dict[str, Any]:
    """A GET as waitress builds its environ."""
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8080",
        "HTTP_X_ACCESS_TOKEN": token,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("token")
    parser.add_argument("todo_id", type=int)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()
    devnull = open(os.devnull, "w")  # open until exit, as a server's stderr
    logging.basicConfig(stream=devnull)
    from todo_wsgi import create_app

    app = create_app()
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        statuses.append(status)

    result = {}
    for name, path in (("list", "/todo"), ("get", f"/todo/{args.todo_id}")):
        template = environ(path, args.token)

        def call(n: int, template: dict[str, Any] = template) -> None:
            for _ in range(n):
                env = dict(template)
                env["wsgi.input"] = io.BytesIO(b"")
                body = app(env, start_response)
                b"".join(body)
                close = getattr(body, "close", None)
                if close is not None:
                    close()

        statuses.clear()
        call(args.warmup)
        if any(not s.startswith("200") for s in statuses):
            raise SystemExit(f"{name}: {path} answered {sorted(set(statuses))}")
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            call(args.batch)
            times.append((time.perf_counter() - started) * 1e6 / args.batch)
        result[name] = min(times)
    close_app = getattr(app, "close", None)
    if close_app is not None:
        close_app()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
