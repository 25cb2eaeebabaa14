"""Every decision holds at its write: each race of a slow step (hashing) made wide on purpose.

A request is held inside its PBKDF2 run by a gate (a kdf that blocks on an
event for one chosen password) while another request changes what the first
decided on; then the first is let go. Its write must decide again and refuse,
changing nothing at all. Both backends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from wsgiref.validate import validator

import pytest
from webtest import TestApp

import todo_wsgi
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, HeldWrite, add_account, basic, challenge, login, stored_rows

ATTACKER_PASSWORD = "attacker-password-1"


class Gate:
    """A kdf that holds the first run on ``password`` until released."""

    def __init__(self, password: str) -> None:
        self.password = password.encode()
        self.entered = threading.Event()
        self.released = threading.Event()
        self._held = False
        self._lock = threading.Lock()

    def __call__(self, name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
        import hashlib

        with self._lock:
            hold = password == self.password and not self._held
            self._held = self._held or hold
        if hold:
            self.entered.set()
            assert self.released.wait(10), "the gate was never released"
        return hashlib.pbkdf2_hmac(name, password, salt, iterations)


@pytest.fixture
def gated(app: todo_wsgi.TodoApp) -> Callable[[str], Gate]:
    """Hold the app's next PBKDF2 run on a password (several slots, so others still hash)."""

    def gate(password: str) -> Gate:
        held = Gate(password)
        app.hasher = todo_wsgi.Hasher(app.settings.pbkdf2_iterations, 4, held)
        return held

    return gate


def in_thread(app: todo_wsgi.TodoApp, call: Callable[[TestApp], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``call`` with a client of its own in a thread; its answer lands in the list."""
    answer: list[Any] = []
    thread = threading.Thread(target=lambda: answer.append(call(TestApp(validator(app)))))
    thread.start()
    return thread, answer


def rogue_admin(app: todo_wsgi.TodoApp, client: TestApp) -> tuple[dict[str, str], dict[str, str], str]:
    """A second admin, "rogue": its token, the first admin's token, and rogue's public id."""
    add_account(app, "rogue", ADMIN_PASSWORD, admin=True)
    rogue = {"x-access-token": login(client, "rogue", ADMIN_PASSWORD)}
    admin_headers = {"x-access-token": login(client, "admin", ADMIN_PASSWORD)}
    rogue_id = client.get("/me", headers=rogue, status=200).json["user"]["public_id"]
    return rogue, admin_headers, rogue_id


def held_while(
    app: todo_wsgi.TodoApp, gate: Gate, request: Callable[[TestApp], Any], meanwhile: Callable[[], Any]
) -> tuple[Any, dict[str, list[Any]]]:
    """Run ``request`` in a thread until it is inside its gated PBKDF2 run, then ``meanwhile``;
    take every table and let the request go on. Its answer, and the tables ``meanwhile`` left."""
    thread, answer = in_thread(app, request)
    assert gate.entered.wait(10)
    meanwhile()
    before = stored_rows(app)
    gate.released.set()
    thread.join(10)
    (response,) = answer
    return response, before


def test_a_login_hashing_while_its_password_changes_gets_no_working_token(app, client, user, user_headers, gated):
    gate = gated(USER_PASSWORD)

    def meanwhile() -> None:
        change = {"old_password": USER_PASSWORD, "new_password": "changed-password-2"}
        client.put_json("/me/password", change, headers=user_headers, status=200)

    response, _ = held_while(
        app, gate, lambda c: c.post("/login", headers=basic("alice", USER_PASSWORD), expect_errors=True), meanwhile
    )
    assert response.status_int == 401
    assert response.json == {"message": "Could not verify"}
    client.post("/login", headers=basic("alice", "changed-password-2"), status=200)


def test_a_login_starting_its_session_while_a_password_reset_commits_keeps_no_session(
    app, client, admin_headers, user, monkeypatch
):
    # The window is held open inside the reset's own transaction: after its writes
    # (the new hash, its sessions deleted), before its commit. The login, its
    # password verified against the old hash, then starts its session.
    hold = HeldWrite(app, monkeypatch, "account.password_reset")
    reset = {"password": "reset-by-admin-1"}
    resetting, _ = in_thread(
        app, lambda c: c.patch_json(f"/user/{user['public_id']}", reset, headers=admin_headers, status=200)
    )
    assert hold.inside.wait(10)
    logging_in, answer = in_thread(
        app, lambda c: c.post("/login", headers=basic("alice", USER_PASSWORD), expect_errors=True)
    )
    # The login must wait for the reset (SQLite: the write lock; PostgreSQL: the account's
    # row); one that does not finishes at once.
    logging_in.join(0.5)
    assert logging_in.is_alive()
    hold.go_on.set()
    resetting.join(10)
    logging_in.join(10)
    (response,) = answer
    if response.status_int == 200:  # then its token must not outlive the reset
        client.get("/me", headers={"x-access-token": response.json["token"]}, status=401)
    assert response.status_int == 401
    client.post("/login", headers=basic("alice", "reset-by-admin-1"), status=200)
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=401)


def test_a_login_of_an_account_deleted_while_it_hashes_never_opens_the_account_created_after_it(
    app, client, admin_headers, user, gated
):
    # alice is the newest account: on SQLite her internal id is handed out again to the
    # next account. Her login is held in its PBKDF2 run, her password already read.
    gate = gated(USER_PASSWORD)

    def meanwhile() -> None:
        client.delete(f"/user/{user['public_id']}", headers=admin_headers, status=200)
        bob = {"name": "bob", "password": "bobs-own-password-9"}
        client.post_json("/user", bob, headers=admin_headers, status=201)

    response, before = held_while(
        app, gate, lambda c: c.post("/login", headers=basic("alice", USER_PASSWORD), expect_errors=True), meanwhile
    )
    assert response.status_int == 401
    assert stored_rows(app)["sessions"] == before["sessions"]


def test_a_password_change_whose_name_went_to_another_account_meanwhile_is_409_and_checks_no_other_password(
    app, client, admin_headers, user, user_headers, monkeypatch
):
    bob = add_account(app, "bob", "bob-password-1")
    count_attempt = app.store.count_login_attempt

    def rename_then_count(*args: Any) -> Any:
        # While alice's request waits for its hashing slot, an admin renames her and gives bob her name.
        monkeypatch.setattr(app.store, "count_login_attempt", count_attempt)
        client.patch_json(f"/user/{user['public_id']}", {"name": "alice-2"}, headers=admin_headers, status=200)
        client.patch_json(f"/user/{bob['public_id']}", {"name": "alice"}, headers=admin_headers, status=200)
        return count_attempt(*args)

    monkeypatch.setattr(app.store, "count_login_attempt", rename_then_count)
    change = {"old_password": USER_PASSWORD, "new_password": ATTACKER_PASSWORD}
    response = client.put_json("/me/password", change, headers=user_headers, status=409)
    assert response.json["message"] == "The account changed meanwhile; try again"
    events = [event[3] for event in stored_rows(app)["audit_events"]]
    assert "login.failed" not in events and "account.password_changed" not in events
    client.post("/login", headers=basic("alice-2", USER_PASSWORD), status=200)
    client.post("/login", headers=basic("alice", "bob-password-1"), status=200)


def test_an_admin_reset_during_the_attackers_password_change_leaves_the_admins_password(
    app, client, admin_headers, user, user_headers, gated
):
    gate = gated(ATTACKER_PASSWORD)  # the attacker's new password, hashing
    change = {"old_password": USER_PASSWORD, "new_password": ATTACKER_PASSWORD}

    def meanwhile() -> None:
        reset = {"password": "reset-by-admin-1"}
        client.patch_json(f"/user/{user['public_id']}", reset, headers=admin_headers, status=200)

    response, before = held_while(
        app, gate, lambda c: c.put_json("/me/password", change, headers=user_headers, expect_errors=True), meanwhile
    )
    assert response.status_int == 401
    assert response.headers["WWW-Authenticate"] == challenge("revoked")
    assert stored_rows(app) == before
    client.post("/login", headers=basic("alice", "reset-by-admin-1"), status=200)
    client.post("/login", headers=basic("alice", ATTACKER_PASSWORD), status=401)


def test_an_admin_deleted_while_its_edit_is_hashing_changes_nothing(app, client, admin, user, gated):
    rogue, admin_headers, rogue_id = rogue_admin(app, client)
    gate = gated(ATTACKER_PASSWORD)
    edit = {"password": ATTACKER_PASSWORD, "admin": True}
    response, before = held_while(
        app,
        gate,
        lambda c: c.patch_json(f"/user/{user['public_id']}", edit, headers=rogue, expect_errors=True),
        lambda: client.delete(f"/user/{rogue_id}", headers=admin_headers, status=200),
    )
    assert response.status_int == 401
    assert stored_rows(app) == before
    assert client.get(f"/user/{user['public_id']}", headers=admin_headers, status=200).json["user"]["admin"] is False


def test_an_admin_demoted_while_its_account_creation_is_hashing_creates_nothing(app, client, admin, gated):
    rogue, admin_headers, rogue_id = rogue_admin(app, client)
    gate = gated(ATTACKER_PASSWORD)
    new = {"name": "accomplice", "password": ATTACKER_PASSWORD}
    response, before = held_while(
        app,
        gate,
        lambda c: c.post_json("/user", new, headers=rogue, expect_errors=True),
        lambda: client.patch_json(f"/user/{rogue_id}", {"admin": False}, headers=admin_headers, status=200),
    )
    assert response.status_int == 403
    assert response.json == {"message": "Cannot perform that function!"}
    assert stored_rows(app) == before


def test_an_admin_logged_out_while_its_account_creation_is_hashing_creates_nothing(app, client, admin, gated):
    admin_headers = {"x-access-token": login(client, "admin", ADMIN_PASSWORD)}
    gate = gated(ATTACKER_PASSWORD)
    new = {"name": "accomplice", "password": ATTACKER_PASSWORD}
    response, before = held_while(
        app,
        gate,
        lambda c: c.post_json("/user", new, headers=admin_headers, expect_errors=True),
        lambda: client.post("/logout", headers=admin_headers, status=200),
    )
    assert response.status_int == 401
    assert stored_rows(app) == before


def test_an_admin_removed_while_deleting_an_account_deletes_nothing(app, client, admin, user, monkeypatch):
    rogue, admin_headers, rogue_id = rogue_admin(app, client)
    # No slow step here: the window is held open at the store's door instead.
    arrived, go_on = threading.Event(), threading.Event()
    real_delete_user = app.store.delete_user

    def delete_user_when_told(conn, caller, public_id, check=None):
        if public_id == user["public_id"]:
            arrived.set()
            assert go_on.wait(10)
        return real_delete_user(conn, caller, public_id, check)

    monkeypatch.setattr(app.store, "delete_user", delete_user_when_told)
    thread, answer = in_thread(app, lambda c: c.delete(f"/user/{user['public_id']}", headers=rogue, expect_errors=True))
    assert arrived.wait(10)
    monkeypatch.setattr(app.store, "delete_user", real_delete_user)
    client.delete(f"/user/{rogue_id}", headers=admin_headers, status=200)
    before = stored_rows(app)
    go_on.set()
    thread.join(10)
    (response,) = answer
    assert response.status_int == 401
    assert stored_rows(app) == before


def test_a_todo_write_after_its_session_ended_mid_request_writes_nothing(app, client, user, user_headers, monkeypatch):
    todo = client.post_json("/todo", {"text": "mine"}, headers=user_headers, status=201).json["todo"]
    real_update_todo = app.store.update_todo

    def logout_first(conn, caller, todo_id, **change):
        app.store.end_session(conn, caller)  # the race, forced
        return real_update_todo(conn, caller, todo_id, **change)

    monkeypatch.setattr(app.store, "update_todo", logout_first)
    before = stored_rows(app)
    response = client.patch_json(f"/todo/{todo['id']}", {"text": "changed"}, headers=user_headers, status=401)
    assert response.headers["WWW-Authenticate"] == challenge("revoked")
    after = stored_rows(app)
    assert after["todos"] == before["todos"]


@pytest.mark.parametrize("resource", ["todo", "account"])
def test_two_writes_naming_the_same_etag_at_once_one_wins_the_other_is_412(
    app, client, admin_headers, user, user_headers, monkeypatch, resource
):
    # The first write is held inside its transaction, its If-Match already checked; the
    # second, naming the same ETag, must wait for it and then find the ETag stale.
    if resource == "todo":
        path = client.post_json("/todo", {"text": "mine"}, headers=user_headers, status=201).headers["Location"]
        headers, first, second = user_headers, {"text": "first"}, {"text": "second"}
    else:
        path, headers = f"/user/{user['public_id']}", admin_headers
        first, second = {"name": "first"}, {"name": "second"}
    tag = client.get(path, headers=headers, status=200).headers["ETag"]
    inside, go_on = threading.Event(), threading.Event()
    real_precondition = todo_wsgi.precondition

    def held_precondition(req, tag_of):
        check = real_precondition(req, tag_of)
        if check is None or "HTTP_X_HOLD" not in req.environ:
            return check

        def checked_then_held(current):
            check(current)
            inside.set()
            assert go_on.wait(10)

        return checked_then_held

    monkeypatch.setattr(todo_wsgi, "precondition", held_precondition)
    held, held_answer = in_thread(
        app,
        lambda c: c.patch_json(path, first, headers={**headers, "If-Match": tag, "X-Hold": "1"}, expect_errors=True),
    )
    assert inside.wait(10)
    racing, racing_answer = in_thread(
        app, lambda c: c.patch_json(path, second, headers={**headers, "If-Match": tag}, expect_errors=True)
    )
    racing.join(0.5)
    assert racing.is_alive()  # waiting for the held write's transaction
    go_on.set()
    held.join(10)
    racing.join(10)
    assert (held_answer[0].status_int, racing_answer[0].status_int) == (200, 412)
    assert racing_answer[0].headers["ETag"] == held_answer[0].headers["ETag"]
    shown = client.get(path, headers=headers, status=200).json
    assert shown.get("todo", shown.get("user"))[next(iter(first))] == "first"


def test_an_admin_demoting_itself_while_the_command_line_demotes_the_other_admin_is_refused_as_the_last_admin(
    app, client, admin, monkeypatch
):
    # The command line's demotion of the first admin is held inside its transaction, its
    # last-admin check passed and its write made; the second admin's own demotion must wait
    # for it (PostgreSQL: every admin row is locked first) and then find itself the last.
    other = add_account(app, "bea", ADMIN_PASSWORD, admin=True)
    other_headers = {"x-access-token": login(client, "bea", ADMIN_PASSWORD)}
    held_answer: list[Any] = []

    def demote_by_command_line():
        with app.db.connection() as conn:
            held_answer.append(app.store.update_user(conn, None, admin["public_id"], admin=False))

    hold = HeldWrite(app, monkeypatch, "account.demoted", admin["public_id"])
    held = threading.Thread(target=demote_by_command_line)
    held.start()
    assert hold.inside.wait(10)
    racing, racing_answer = in_thread(
        app,
        lambda c: c.patch_json(
            f"/user/{other['public_id']}", {"admin": False}, headers=other_headers, expect_errors=True
        ),
    )
    racing.join(0.5)
    assert racing.is_alive()  # waiting for the held demotion's transaction
    hold.go_on.set()
    held.join(10)
    racing.join(10)
    assert held_answer[0]["admin"] is False
    (response,) = racing_answer
    assert response.status_int == 409
    assert response.json == {"message": "Cannot remove the last admin!"}
    with app.db.connection() as conn:
        admins = [u["name"] for u in app.store.list_users(conn) if u["admin"]]
    assert admins == ["bea"]


def test_two_creates_of_one_account_at_one_below_the_maximum_give_exactly_the_maximum(make_app, monkeypatch):
    # The first create is held inside its transaction, its count taken and its to-do
    # inserted (at its Idempotency-Key's answer); the second, from another session of the
    # same account, must wait for it (PostgreSQL: the account's row locked FOR UPDATE) and
    # then count the maximum.
    app = make_app(max_todos_per_account=3)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    first_headers = {"x-access-token": login(client, "alice", USER_PASSWORD)}
    second_headers = {"x-access-token": login(client, "alice", USER_PASSWORD)}
    for text in ("one", "two"):
        client.post_json("/todo", {"text": text}, headers=first_headers, status=201)
    inside, go_on = threading.Event(), threading.Event()
    real_keep = app.store._keep

    def keep_then_hold(conn, owner, once, created):
        real_keep(conn, owner, once, created)
        if once.key == "held":
            inside.set()
            assert go_on.wait(10)

    monkeypatch.setattr(app.store, "_keep", keep_then_hold)
    held, held_answer = in_thread(
        app,
        lambda c: c.post_json(
            "/todo", {"text": "held"}, headers={**first_headers, "Idempotency-Key": "held"}, expect_errors=True
        ),
    )
    assert inside.wait(10)
    racing, racing_answer = in_thread(
        app, lambda c: c.post_json("/todo", {"text": "racing"}, headers=second_headers, expect_errors=True)
    )
    racing.join(0.5)
    assert racing.is_alive()  # waiting for the held create's transaction
    go_on.set()
    held.join(10)
    racing.join(10)
    assert held_answer[0].status_int == 201
    (response,) = racing_answer
    assert response.status_int == 409
    assert response.json == {"message": "Too many todos"}
    texts = [t["text"] for t in client.get("/todo", headers=first_headers, status=200).json["todos"]]
    assert sorted(texts) == ["held", "one", "two"]
