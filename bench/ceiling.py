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
    database: str, public_id: str, body: bytes = DEFAULT_BODY, access_log: bool = False
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """The ceiling plus the SQLite read todo-wsgi cannot skip, and nothing else.

    For ``GET /todo`` the account check with the page of to-dos, for
    ``GET /todo/<id>`` the account check with the to-do: the same ``store.py``
    call (one statement) todo-wsgi makes, on one connection per waitress
    thread, with none of its Python around it (no routing, token, JSON or
    log). Served like the ceiling, it shows what any app that reads the
    database on every request, as API.md requires, can reach on this server
    and machine. With ``access_log``, it also writes the access-log line API.md
    requires, through todo-wsgi's own ``access_line``: the least that any app
    keeping both rules must do per request.
    """
    import logging
    import time

    import store
    import todo_wsgi

    database_handle = store.open_database(database)
    # A session of the account's own, as a login would start it.
    session_id = "floor-session"
    with database_handle.connection() as conn:
        account = store.get_user(conn, public_id)
        assert account is not None, "the floor's account is missing"
        conn.execute(
            "INSERT OR IGNORE INTO sessions (id, user_id, expires_at, refresh_hash) VALUES (?, ?, ?, '-')",
            (session_id, account["id"], 4e9),
        )
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    log = logging.getLogger("todo_wsgi.access") if access_log else None
    stamps = todo_wsgi.Stamps()

    def floor(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        with database_handle.connection() as conn:
            if path.startswith("/todo/"):
                found, _ = store.session_account_with_todo(conn, session_id, public_id, 0, int(path.rsplit("/", 1)[1]))
            else:
                found, _ = store.session_account_with_todos(conn, session_id, public_id, 0, 101, 0)
        assert found is not None, "the floor's account is missing"
        start_response("200 OK", headers)
        if log is not None:
            stamp = stamps.now()
            log.info(
                "%s", todo_wsgi.access_line(environ, environ["REQUEST_METHOD"], path, 200, started, public_id, stamp)
            )
        return [body]

    return floor


def make_first_cut(database: str, secret_key: str) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """Issue 4's "first cut" of such an app, kept as a yardstick for this machine.

    ``GET /todo`` and ``GET /todo/<id>`` as a first, unoptimised version would
    serve them: PyJWT's full decode of every token, two indexed SQLite reads
    (the account, then its to-dos or the one to-do), ``json.dumps``. The issue
    measured such an app at about 0.42x the ceiling on its machine; served
    here in the same run as todo-wsgi and the ceiling, its ratio says how
    this machine compares, so the issue's 0.6x can be read against it.
    """
    import json

    import jwt

    import store

    database_handle = store.open_database(database)

    def first_cut(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            claims = jwt.decode(environ.get("HTTP_X_ACCESS_TOKEN", ""), secret_key, algorithms=["HS256"])
        except jwt.PyJWTError:
            start_response("401 Unauthorized", [("Content-Type", "application/json")])
            return [b'{"message": "Token is invalid!"}']
        path = environ.get("PATH_INFO", "")
        with database_handle.connection() as conn:
            account = conn.execute("SELECT id FROM users WHERE public_id = ?", (claims["public_id"],)).fetchone()
            assert account is not None, "the first cut's account is missing"
            if path.startswith("/todo/"):
                row = conn.execute(
                    "SELECT id, text, complete FROM todos WHERE id = ? AND owner_id = ?",
                    (int(path.rsplit("/", 1)[1]), account[0]),
                ).fetchone()
                body: dict[str, Any] = {"todo": {"id": row[0], "text": row[1], "complete": bool(row[2])}}
            else:
                rows = conn.execute(
                    "SELECT id, text, complete FROM todos WHERE owner_id = ? ORDER BY id", (account[0],)
                ).fetchall()
                body = {"todos": [{"id": r[0], "text": r[1], "complete": bool(r[2])} for r in rows]}
        payload = json.dumps(body).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]

    return first_cut
