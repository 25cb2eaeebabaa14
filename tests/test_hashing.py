"""Password hashing is bounded per process: one client's logins cannot take every thread."""

from __future__ import annotations

import hashlib
import threading
import time
from wsgiref.validate import validator

import pytest
from webtest import TestApp

import todo_wsgi
from tests.conftest import USER_PASSWORD, basic

HELD = "held-password-1"


class Held:
    """A kdf that holds every run on HELD until released."""

    def __init__(self) -> None:
        self.entered, self.released = threading.Event(), threading.Event()

    def __call__(self, name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
        if password == HELD.encode():
            self.entered.set()
            assert self.released.wait(10)
        return hashlib.pbkdf2_hmac(name, password, salt, iterations)


def hold_one_slot(app: todo_wsgi.TodoApp) -> Held:
    """One hashing slot, taken by a login held inside its PBKDF2 run."""
    held = Held()
    app.hasher = todo_wsgi.Hasher(app.settings.pbkdf2_iterations, 1, held)
    thread = threading.Thread(
        target=lambda: TestApp(validator(app)).post("/login", headers=basic("alice", HELD), expect_errors=True)
    )
    thread.start()
    assert held.entered.wait(10)
    held.thread = thread  # type: ignore[attr-defined]
    return held


def test_a_signed_in_password_change_waits_its_turn_for_hashing(app, client, user, user_headers):
    held = hold_one_slot(app)
    threading.Timer(0.3, held.released.set).start()
    started = time.monotonic()
    change = {"old_password": USER_PASSWORD, "new_password": "changed-password-2"}
    client.put_json("/me/password", change, headers=user_headers, status=200)
    assert time.monotonic() - started >= 0.25  # it waited for the held run, then hashed
    held.thread.join(10)


def test_a_signed_in_request_answers_503_past_its_bound(app, client, user, user_headers, monkeypatch):
    monkeypatch.setattr(todo_wsgi, "SIGNED_IN_HASH_WAIT", 0.2)
    held = hold_one_slot(app)
    try:
        change = {"old_password": USER_PASSWORD, "new_password": "changed-password-2"}
        response = client.put_json("/me/password", change, headers=user_headers, status=503)
        assert response.headers["Retry-After"] == "1"
        client.post("/login", headers=basic("alice", USER_PASSWORD), status=503)  # a login does not wait
    finally:
        held.released.set()
        held.thread.join(10)
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=200)


ADMIN_HASHING = {
    "admin reset": ("patch_json", "/user/{public_id}", {"password": "reset-password-1"}, {}),
    "account creation": ("post_json", "/user", {"name": "bob", "password": "bob-password-1"}, {}),
    "keyed account creation": (
        "post_json",
        "/user",
        {"name": "carol", "password": "carol-password-1"},
        {"Idempotency-Key": "carol-1"},
    ),
}


@pytest.mark.parametrize("request_name", ADMIN_HASHING)
def test_an_admins_hashing_waits_for_a_slot_and_answers_503_past_its_bound(
    app, client, admin_headers, user, monkeypatch, request_name
):
    method, path, body, extra = ADMIN_HASHING[request_name]
    send = getattr(client, method)
    path, headers = path.format(public_id=user["public_id"]), {**admin_headers, **extra}
    monkeypatch.setattr(todo_wsgi, "SIGNED_IN_HASH_WAIT", 0.2)
    before = client.get("/user", headers=admin_headers, status=200).json
    held = hold_one_slot(app)
    try:
        assert send(path, body, headers=headers, status=503).headers["Retry-After"] == "1"
        assert client.get("/user", headers=admin_headers, status=200).json == before
    finally:
        held.released.set()
        held.thread.join(10)
    send(path, body, headers=headers, status=(200, 201))


def test_with_cheap_hashing_concurrent_logins_all_succeed(app, user):
    answers: list[int] = []
    barrier = threading.Barrier(8)

    def log_in() -> None:
        barrier.wait()
        answers.append(TestApp(validator(app)).post("/login", headers=basic("alice", USER_PASSWORD)).status_int)

    threads = [threading.Thread(target=log_in) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [200] * 8
