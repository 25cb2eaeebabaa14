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


def make_floor(
    database: str, public_id: str, body: bytes = DEFAULT_BODY
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """The ceiling plus the SQLite read todo-wsgi cannot skip, and nothing else.

    For ``GET /todo`` the account check with the page of to-dos, for
    ``GET /todo/<id>`` the account check with the to-do: the same ``store.py``
    call (one statement) todo-wsgi makes, on one connection per waitress
    thread, with none of its Python around it (no routing, token, JSON or
    log). Served like the ceiling, it shows what any app that reads the
    database on every request, as API.md requires, can reach on this server
    and machine.
    """
    import store

    database_handle = store.open_database(database)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    def floor(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        with database_handle.connection() as conn:
            if path.startswith("/todo/"):
                found, _ = store.token_account_with_todo(conn, public_id, "-", int(path.rsplit("/", 1)[1]))
            else:
                found, _ = store.token_account_with_todos(conn, public_id, "-", 101, 0)
        assert found is not None, "the floor's account is missing"
        start_response("200 OK", headers)
        return [body]

    return floor
