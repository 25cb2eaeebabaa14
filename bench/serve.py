"""Serve todo-wsgi or the ceiling under waitress on 127.0.0.1, an ephemeral port.

Run as a subprocess by the benchmarks: prints ``PORT <n>`` on its first line
of standard output once listening, then serves until terminated. Both apps get
the same waitress settings as ``python -m todo_wsgi serve`` (threads, limits),
so the only difference between them is the application.

    python bench/serve.py todo --threads 4       # settings from TODO_* variables
    python bench/serve.py ceiling --threads 4 --body-file FILE
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import waitress  # noqa: E402

import ceiling  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app", choices=["todo", "ceiling"])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--body-file", help="the ceiling's body (default: a 3-item list)")
    parser.add_argument("--access-log", help="log every request at INFO to this file, as `make run` does to stderr")
    args = parser.parse_args()
    if args.access_log:
        logging.basicConfig(
            level=logging.INFO, filename=args.access_log, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    if args.app == "todo":
        import todo_wsgi

        app = todo_wsgi.create_app()
    else:
        body = ceiling.DEFAULT_BODY
        if args.body_file:
            with open(args.body_file, "rb") as file:
                body = file.read()
        app = ceiling.make_ceiling(body)
    server = waitress.create_server(
        app,
        host="127.0.0.1",
        port=0,
        threads=args.threads,
        # As cmd_serve in todo_wsgi.py sets them.
        connection_limit=100,
        channel_timeout=30,
        max_request_header_size=16384,
        max_request_body_size=65536 + 1024,
        ident="todo-wsgi-bench",
    )
    print(f"PORT {server.effective_port}", flush=True)  # type: ignore[union-attr]
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
