"""A full account stays cheap: a page far into it, and deleting it, timed in-process.

Creates an account holding ``--todos`` to-dos (default 10,000, the default
``max_todos_per_account``), then, through the WSGI app itself (no server):

1. the median time of ``GET /todo?limit=100`` at offset 0 and at the last
   page, so the cost of an offset deep into the list shows;
2. the time ``DELETE /user/<id>`` of that account takes (its to-dos go with
   it by cascade, in the delete's one transaction), against the busy timeout
   other writers wait before answering 503 (``store.BUSY_TIMEOUT_MS``);
3. while that delete runs in one thread, the time another account's
   ``POST /todo`` waited for it, from a second thread.

    .venv/bin/python bench/full_account.py [--todos 10000] [--database URL]

SQLite in a temporary directory by default; ``--database postgresql://...``
for an empty PostgreSQL database.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import store
import todo_wsgi

PASSWORD = "full-account-password"


def call(app: Any, method: str, path: str, token: str | None = None, body: Any = None, basic: str = "") -> Any:
    raw = json.dumps(body).encode() if body is not None else b""
    path, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw),
        "CONTENT_LENGTH": str(len(raw)) if raw else "",
        "CONTENT_TYPE": "application/json" if raw else "",
    }
    if token:
        environ["HTTP_X_ACCESS_TOKEN"] = token
    if basic:
        environ["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(basic.encode()).decode()
    answer: dict[str, str] = {}
    payload = b"".join(app(environ, lambda status, headers: answer.update(status=status)))
    return answer["status"], (json.loads(payload) if payload else None)


def login(app: Any, name: str) -> str:
    status, body = call(app, "POST", "/login", basic=f"{name}:{PASSWORD}")
    assert status.startswith("200"), (status, body)
    return str(body["token"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--todos", type=int, default=10000)
    parser.add_argument("--database", help="a postgresql:// URL of an empty database (default: SQLite, temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        database = args.database or os.path.join(folder, "full.db")
        app = todo_wsgi.create_app(database=database, pbkdf2_iterations=1000, max_todos_per_account=args.todos)
        try:
            return run(app, args.todos)
        finally:
            app.close()


def run(app: Any, todos: int) -> int:
    password_hash = todo_wsgi.hash_password(PASSWORD, 1000)
    with app.db.connection() as conn:
        for name, admin in (("admin", True), ("full", False), ("other", False)):
            app.store.create_user(conn, None, str(uuid.uuid4()), name, password_hash, admin)
    admin, full, other = (login(app, name) for name in ("admin", "full", "other"))
    started = time.perf_counter()
    for n in range(todos):
        status, _ = call(app, "POST", "/todo", full, {"text": f"to-do number {n}"})
        assert status.startswith("201"), status
    print(f"filled an account with {todos} to-dos in {time.perf_counter() - started:.1f} s (one POST each)")
    status, _ = call(app, "POST", "/todo", full, {"text": "one too many"})
    print(f"one more: {status}")

    def page(offset: int) -> float:
        times = []
        for _ in range(50):
            begun = time.perf_counter()
            status, body = call(app, "GET", f"/todo?limit=100&offset={offset}", full)
            times.append(time.perf_counter() - begun)
            assert status.startswith("200") and body["todos"], status
        return statistics.median(times) * 1000

    print(f"GET /todo?limit=100, first page: {page(0):.2f} ms (median of 50)")
    print(f"GET /todo?limit=100, last page (offset {todos - 100}): {page(todos - 100):.2f} ms (median of 50)")

    status, me = call(app, "GET", "/me", full)
    public_id = me["user"]["public_id"]
    waited: list[float] = []
    deleting = threading.Event()

    def write_meanwhile() -> None:
        deleting.wait()
        begun = time.perf_counter()
        status, _ = call(app, "POST", "/todo", other, {"text": "written while the full account goes"})
        waited.append(time.perf_counter() - begun)
        assert status.startswith("201"), status

    writer = threading.Thread(target=write_meanwhile)
    writer.start()
    begun = time.perf_counter()
    deleting.set()
    status, _ = call(app, "DELETE", f"/user/{public_id}", admin)
    took = (time.perf_counter() - begun) * 1000
    writer.join()
    print(f"DELETE /user of the full account: {status}, {took:.1f} ms (busy timeout {store.BUSY_TIMEOUT_MS} ms)")
    print(f"another account's POST /todo meanwhile: answered after {waited[0] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
