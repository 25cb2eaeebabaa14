"""Serve todo-wsgi or the ceiling under waitress on 127.0.0.1, an ephemeral port.

Run as a subprocess by the benchmarks: prints ``PORT <n>`` on its first line
of standard output once listening, then serves until terminated. Both apps get
the same waitress settings as ``python -m todo_wsgi serve`` (threads, limits)
and the same logging (``todo_wsgi_cli.configure_logging()``: standard error),
so todo-wsgi writes its access log line per request there, as deployed;
``--no-access-log`` turns it off to show what the line costs.

    python bench/serve.py todo --threads 4       # settings from TODO_* variables
    python bench/serve.py ceiling --threads 4 --body-file FILE
    python bench/serve.py floor --threads 4 --body-file FILE --public-id ID [--access-log]   # TODO_DATABASE
    python bench/serve.py first-cut --threads 4     # TODO_DATABASE, TODO_SECRET_KEY
    ... --cpu N                                     # any of them kept on CPU N
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ceiling
import waitress


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app", choices=["todo", "ceiling", "floor", "first-cut"])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--body-file", help="the ceiling's body (default: a 3-item list)")
    parser.add_argument("--public-id", help="the floor's account (its reads are this account's)")
    parser.add_argument("--no-access-log", action="store_true", help="todo-wsgi's access log off")
    parser.add_argument("--access-log", action="store_true", help="the floor writes todo-wsgi's access-log line")
    parser.add_argument("--cpu", type=int, help="keep the server on this CPU (as taskset -c N would)")
    args = parser.parse_args()
    import todo_wsgi

    if args.cpu is not None:
        # Before any thread starts, so every thread inherits it (as taskset would).
        os.sched_setaffinity(0, {args.cpu})
    import todo_wsgi_cli

    if args.no_access_log:
        logging.getLogger("todo_wsgi.access").setLevel(logging.WARNING)
    # waitress warns "Task queue depth is N" each time a request waits for a
    # thread, which under a benchmark is all the time: off for both apps, so
    # the figures measure the apps rather than that line's logging.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    if args.app == "todo":
        app = todo_wsgi.create_app()
    elif args.app == "first-cut":
        app = ceiling.make_first_cut(os.environ["TODO_DATABASE"], os.environ["TODO_SECRET_KEY"])
    else:
        body = ceiling.DEFAULT_BODY
        if args.body_file:
            with open(args.body_file, "rb") as file:
                body = file.read()
        app = (
            ceiling.make_ceiling(body)
            if args.app == "ceiling"
            else ceiling.make_floor(os.environ["TODO_DATABASE"], args.public_id, body, args.access_log)
        )
    # As python -m todo_wsgi serve logs (todo-wsgi's access lines straight to the handler's queue).
    handler = todo_wsgi_cli.configure_logging(app=app if isinstance(app, todo_wsgi.TodoApp) else None)
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
        ident=None,
    )
    print(f"PORT {server.effective_port}", flush=True)  # type: ignore[union-attr]
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
