"""Retry-safe creates (API.md, "Safe retries and concurrent edits"): the Idempotency-Key header."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, HeldWrite, add_account, basic, login, stored_rows
from tests.live import LiveServer


def create(client: Any, headers: dict[str, str], key: str | None, body: Any = None, status: int = 201) -> Any:
    extra = {"Idempotency-Key": key} if key is not None else {}
    return client.post_json("/todo", body or {"text": "buy milk"}, headers={**headers, **extra}, status=status)


def count(client: Any, headers: dict[str, str]) -> int:
    return len(client.get("/todo", headers=headers, status=200).json["todos"])


def test_a_retry_with_the_same_key_gets_the_first_answer_and_creates_nothing(client, user_headers):
    first = create(client, user_headers, "key-1")
    again = create(client, user_headers, "key-1")
    assert again.json == first.json
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert count(client, user_headers) == 1


def test_the_same_body_in_another_order_is_the_same_request(client, user_headers):
    create(client, user_headers, "key-1", body={"text": "x"})
    raw = b'{ "text" : "x" }'
    again = client.post(
        "/todo", raw, headers={**user_headers, "Idempotency-Key": "key-1", "Content-Type": "application/json"}
    )
    assert again.status_int == 201 and count(client, user_headers) == 1


def test_the_same_key_with_another_body_is_422_and_creates_nothing(client, user_headers):
    create(client, user_headers, "key-1")
    response = create(client, user_headers, "key-1", body={"text": "something else"}, status=422)
    assert response.json == {"message": "Idempotency-Key reused with another request"}
    assert count(client, user_headers) == 1


def test_different_keys_create_twice(client, user_headers):
    create(client, user_headers, "key-1")
    create(client, user_headers, "key-2")
    assert count(client, user_headers) == 2


def test_keys_of_different_accounts_never_meet(client, user_headers, admin_headers):
    create(client, user_headers, "shared")
    create(client, admin_headers, "shared")
    assert count(client, user_headers) == 1 and count(client, admin_headers) == 1


def test_a_failed_first_attempt_leaves_the_key_free(make_app):
    from wsgiref.validate import validator

    from webtest import TestApp

    app = make_app(max_todos_per_account=1)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    headers = {"x-access-token": login(client, "alice", USER_PASSWORD)}
    create(client, headers, None)
    create(client, headers, "key-1", status=409)  # too many to-dos: not kept
    client.delete("/todo/1", headers=headers, status=200)
    create(client, headers, "key-1", status=201)


def test_a_key_is_kept_24_hours(client, clock, user):
    def fresh():  # a day outlives any access token: log in again
        return {"x-access-token": login(client, "alice", USER_PASSWORD)}

    create(client, fresh(), "key-1")
    clock.advance(86400 - 1)
    create(client, fresh(), "key-1")
    assert count(client, fresh()) == 1
    clock.advance(2)
    create(client, fresh(), "key-1")
    assert count(client, fresh()) == 2


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "caf\u00e9", "tab\there"], ids=["empty", "too-long", "non-ascii", "tab"]
)
def test_a_malformed_key_is_400_naming_the_header(client, user_headers, key):
    response = client.post_json("/todo", {"text": "x"}, headers={**user_headers, "Idempotency-Key": key}, status=400)
    assert "Idempotency-Key" in response.json["message"]
    assert count(client, user_headers) == 0


def test_creating_an_account_is_retry_safe_too(client, admin_headers):
    body = {"name": "bob", "password": "bob-password-1"}
    headers = {**admin_headers, "Idempotency-Key": "new-bob"}
    first = client.post_json("/user", body, headers=headers, status=201)
    again = client.post_json("/user", body, headers=headers, status=201)
    assert again.json == first.json and again.headers["Location"] == first.headers["Location"]
    assert len(client.get("/user", headers=admin_headers, status=200).json["users"]) == 2
    client.post_json("/user", {**body, "name": "robert"}, headers=headers, status=422)


def test_a_new_accounts_password_is_kept_no_weaker_than_its_hash(app, client, admin_headers):
    # The fingerprint of a keyed POST /user is kept a day, backups included: a fast hash
    # of a body holding the password would let a copy of the database guess it cheaply.
    password = "sunshine-1"
    body = {"name": "bob", "password": password}
    headers = {**admin_headers, "Idempotency-Key": "new-bob"}
    client.post_json("/user", body, headers=headers, status=201)
    with app.db.connection() as conn:
        ((fingerprint, answer),) = conn.execute("SELECT fingerprint, answer FROM idempotency_keys").fetchall()
    for request in (["POST", "/user", body], ["POST", "/user", {"password": password, "name": "bob"}]):
        fast = hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        assert fingerprint != fast
    assert password not in answer
    client.post_json("/user", body, headers=headers, status=201)  # the same request: replayed
    client.post_json("/user", {**body, "password": "sunshine-2"}, headers=headers, status=422)


def test_keys_past_their_day_are_pruned_by_later_creates(app, client, clock, user, user_headers):
    create(client, user_headers, "old")
    clock.advance(86401)
    create(client, {"x-access-token": login(client, "alice", USER_PASSWORD)}, "new")
    with app.db.connection() as conn:
        assert [row[0] for row in conn.execute("SELECT key FROM idempotency_keys").fetchall()] == ["new"]


# -- concurrent retries on live servers ----------------------------------------------------------


@pytest.fixture
def servers(make_app: Callable[..., Any]) -> Iterator[Callable[[], tuple[Any, LiveServer]]]:
    started: list[LiveServer] = []

    def start() -> tuple[Any, LiveServer]:
        app = make_app(pool_size=8)
        started.append(LiveServer(app, threads=8))
        return app, started[-1]

    yield start
    for server in started:
        server.close()


def post(server: LiveServer, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    conn: http.client.HTTPConnection = server.connect()
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def eight_retries_at_once(targets: list[LiveServer], path: str, body: Any, headers: dict[str, str]) -> list[Any]:
    barrier = threading.Barrier(8, timeout=10)
    answers: list[tuple[int, Any]] = []

    def send(server: LiveServer) -> None:
        barrier.wait()
        answers.append(post(server, path, body, headers))

    threads = [threading.Thread(target=send, args=(targets[i % len(targets)],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def test_eight_concurrent_retries_create_exactly_one(servers):
    app, server = servers()
    add_account(app, "alice", USER_PASSWORD)
    _, pair = post(server, "/login", {}, basic("alice", USER_PASSWORD))
    headers = {"x-access-token": pair["token"], "Idempotency-Key": "once"}
    answers = eight_retries_at_once([server], "/todo", {"text": "only one"}, headers)
    created = [body for status, body in answers if status == 201]
    assert all(status in (201, 409) for status, _ in answers)
    assert created and all(body == created[0] for body in created)
    with app.db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM todos").fetchone()[0] == 1


def test_two_servers_sharing_one_database_agree_on_a_key(servers, database):
    if not database.startswith("postgresql"):
        pytest.skip("two servers share one PostgreSQL; SQLite's servers share a file the same way above")
    (app, first), (_, second) = servers(), servers()
    add_account(app, "admin2", ADMIN_PASSWORD, admin=True)
    _, pair = post(first, "/login", {}, basic("admin2", ADMIN_PASSWORD))
    headers = {"x-access-token": pair["token"], "Idempotency-Key": "new-carol"}
    answers = eight_retries_at_once([first, second], "/user", {"name": "carol", "password": "carol-password"}, headers)
    assert all(status in (201, 409) for status, _ in answers)
    assert len({json.dumps(body) for status, body in answers if status == 201}) == 1
    with app.db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE name = 'carol'").fetchone()[0] == 1


def test_an_account_past_its_budget_of_keys_is_refused_429_and_no_key_is_forgotten_within_its_day(
    app, client, clock, user_headers, monkeypatch
):
    import store

    monkeypatch.setattr(store, "KEYS_PER_OWNER", 3)
    if app.store is not store:
        monkeypatch.setattr(app.store, "KEYS_PER_OWNER", 3)
    first = create(client, user_headers, "key-0", body={"text": "to-do 0"})
    for n in (1, 2):
        clock.advance(100)
        create(client, user_headers, f"key-{n}", body={"text": f"to-do {n}"})
    before = stored_rows(app)
    refused = create(client, user_headers, "key-3", body={"text": "to-do 3"}, status=429)
    assert refused.json == {"message": "Too many Idempotency-Keys within a day; send this create without one, or later"}
    # key-0 is the oldest, claimed 200 s ago: it is forgotten once its day has passed.
    assert refused.headers["Retry-After"] == str(86400 - 200 + 1)
    assert stored_rows(app) == before
    # Every key of the day still answers its retry as promised; a create without a key runs.
    assert create(client, user_headers, "key-0", body={"text": "to-do 0"}).json == first.json
    create(client, user_headers, None, body={"text": "no key"})
    clock.advance(86400 - 200 + 1)
    fresh = {"x-access-token": login(client, "alice", USER_PASSWORD)}  # the first token has expired
    create(client, fresh, "key-3", body={"text": "to-do 3"})


def test_two_keyed_creates_at_once_cannot_both_take_the_last_key(app, admin_headers, monkeypatch):
    from webtest import TestApp

    import store

    monkeypatch.setattr(store, "KEYS_PER_OWNER", 1)
    if app.store is not store:
        monkeypatch.setattr(app.store, "KEYS_PER_OWNER", 1)
    held = HeldWrite(app, monkeypatch, "account.created")  # the first create, its key claimed, uncommitted
    answers: dict[str, Any] = {}

    def create_user(key: str, name: str) -> None:
        body = {"name": name, "password": "a-password-1"}
        headers = {**admin_headers, "Idempotency-Key": key}
        answers[key] = TestApp(app).post_json("/user", body, headers=headers, expect_errors=True)

    first = threading.Thread(target=create_user, args=("k1", "carol"))
    first.start()
    assert held.inside.wait(10)
    second = threading.Thread(target=create_user, args=("k2", "dave"))
    second.start()
    second.join(0.5)  # time to reach its claim while the first is held
    held.go_on.set()
    first.join(10)
    second.join(10)
    assert answers["k1"].status_int == 201
    assert answers["k2"].status_int == 429
    with app.db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM users WHERE name = 'dave'").fetchone()[0] == 0
