"""The ceiling: a bare WSGI app that answers every request with one fixed JSON body.

Served by the same waitress, with the same threads, as todo-wsgi, it is the
most requests per second this server can answer on this machine for a body
of that size: todo-wsgi's figures are read as a fraction of it. It reads no
body, checks nothing and touches no database; its one body is as long as
todo-wsgi's answer to a 3-item list (``bench/serve.py`` passes that exact
answer when it has one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# A 3-item to-do list as todo-wsgi answers it (compact, ASCII JSON).
DEFAULT_BODY = (
    b'{"todos":[{"id":1,"text":"buy milk","complete":false},'
    b'{"id":2,"text":"write the benchmark","complete":false},'
    b'{"id":3,"text":"read the profile","complete":false}]}'
)


def make_ceiling(body: bytes = DEFAULT_BODY) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """A WSGI app answering ``200`` and ``body`` to anything."""
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    def ceiling(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", headers)
        return [body]

    return ceiling
