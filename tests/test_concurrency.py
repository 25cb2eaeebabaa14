"""Concurrency through a real waitress server: nothing lost, doubled, or answered 500.

Issue 3, point 5. Each test starts waitress (8 threads) on an ephemeral
loopback port in a background thread, drives it with ``http.client`` from
several threads released together by a barrier, and stops it in the fixture's
teardown, even on failure. Outcomes are checked by what the server answered
and what it lists afterwards, never by timing.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import ADMIN_PASSWORD, add_account, basic
from tests.live import LiveServer

THREADS = 8


@pytest.fixture
def serve(make_app: Callable[..., Any]) -> Iterator[Callable[..., tuple[Any, LiveServer]]]:
    servers: list[LiveServer] = []

    def start(**settings: Any) -> tuple[Any, LiveServer]:
        settings.setdefault("pool_size", THREADS)  # PostgreSQL: a connection per waitress thread
        app = make_app(**settings)
        servers.append(LiveServer(app, threads=THREADS))
        return app, servers[-1]

    yield start
    for server in servers:
        server.close()


def call(
    conn: http.client.HTTPConnection, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    """One request on a kept-alive connection; return (status, parsed JSON body)."""
    headers = {"x-access-token": token} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    return response.status, json.loads(payload) if payload else None


def log_in(server: LiveServer, name: str, password: str) -> str:
    conn = server.connect()
    try:
        conn.request("POST", "/login", headers=basic(name, password))
        response = conn.getresponse()
        assert response.status == 200
        return str(json.loads(response.read())["token"])
    finally:
        conn.close()


def together(workers: list[Callable[[], Any]]) -> list[Any]:
    """Run the workers in threads released at once; return their results in order.

    A worker's exception is re-raised here, in the test's thread.
    """
    barrier = threading.Barrier(len(workers), timeout=30)
    results: list[Any] = [None] * len(workers)
    errors: list[BaseException] = []

    def run(index: int, work: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[index] = work()
        except BaseException as exc:  # re-raised below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    assert not any(thread.is_alive() for thread in threads), "a worker never finished"
    return results


def test_parallel_creates_give_distinct_ids_all_listed_none_lost_or_doubled(serve):
    app, server = serve()
    accounts = [f"writer{n}" for n in range(4)]
    for name in accounts:
        add_account(app, name, f"{name}-password")
    tokens = {name: log_in(server, name, f"{name}-password") for name in accounts}

    def writer(name: str, thread: int) -> list[tuple[int, int | None, str]]:
        conn = server.connect()
        answered = []
        try:
            for i in range(50):
                text = f"{name} thread {thread} item {i}"
                status, body = call(conn, "POST", "/todo", {"text": text}, tokens[name])
                answered.append((status, body["todo"]["id"] if status == 201 else None, text))
        finally:
            conn.close()
        return answered

    # Two threads per account, eight in all.
    results = together([lambda n=name, t=t: writer(n, t) for name in accounts for t in range(2)])
    answered = [row for rows in results for row in rows]
    assert Counter(status for status, _, _ in answered) == {201: THREADS * 50}
    ids = [todo_id for _, todo_id, _ in answered]
    assert len(set(ids)) == len(ids) == THREADS * 50

    conn = server.connect()
    try:
        for index, name in enumerate(accounts):
            status, body = call(conn, "GET", "/todo?limit=1000", token=tokens[name])
            assert status == 200
            listed = [(todo["id"], todo["text"]) for todo in body["todos"]]
            mine = [(todo_id, text) for rows in results[2 * index : 2 * index + 2] for _, todo_id, text in rows]
            assert sorted(listed) == sorted(mine)  # every one there, exactly once, none of another's
    finally:
        conn.close()


def test_one_name_created_ten_times_at_once_gives_one_201_and_nine_409(serve):
    app, server = serve()
    add_account(app, "admin", ADMIN_PASSWORD, admin=True)
    token = log_in(server, "admin", ADMIN_PASSWORD)

    def create(n: int) -> int:
        conn = server.connect()
        try:
            return call(conn, "POST", "/user", {"name": "popular", "password": f"password-{n}"}, token)[0]
        finally:
            conn.close()

    statuses = together([lambda n=n: create(n) for n in range(10)])
    assert sorted(statuses) == [201] + [409] * 9
    conn = server.connect()
    try:
        status, body = call(conn, "GET", "/user", token=token)
        assert status == 200
        assert [u["name"] for u in body["users"]].count("popular") == 1
    finally:
        conn.close()


def test_racing_complete_delete_and_patch_on_one_todo_never_answer_500(serve):
    app, server = serve()
    add_account(app, "alice", "alice-password")
    token = log_in(server, "alice", "alice-password")
    conn = server.connect()
    requests = [
        ("PUT", None),
        ("PATCH", {"text": "renamed"}),
        ("PATCH", {"complete": False, "text": "again"}),
        ("GET", None),
    ] + [("DELETE", None)] * 4
    try:
        for _ in range(20):
            status, body = call(conn, "POST", "/todo", {"text": "contested"}, token)
            assert status == 201
            path = f"/todo/{body['todo']['id']}"

            def race(method: str, payload: Any, path: str = path) -> tuple[str, int, Any]:
                own = server.connect()
                try:
                    return (method, *call(own, method, path, payload, token))
                finally:
                    own.close()

            answers = together([lambda m=m, p=p: race(m, p) for m, p in requests])
            assert all(status in (200, 404) for _, status, _ in answers), answers
            assert [status for method, status, _ in answers if method == "DELETE"].count(200) == 1, answers
            for method, status, body in answers:
                if status == 404:
                    assert body == {"message": "No todo found!"}
            assert call(conn, "GET", path, token=token)[0] == 404
        assert call(conn, "GET", "/todo", token=token) == (200, {"todos": []})
    finally:
        conn.close()
