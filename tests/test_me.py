"""Beyond the seed, one's own account: GET /me, PUT /me/password, POST /logout (API.md)."""

from __future__ import annotations

import sqlite3
from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.conftest import USER_PASSWORD, basic, challenge, login, session_of
from todo_wsgi import digest, issue_token

NEW_PASSWORD = "a-new-password-2"


def change_password(client, headers, old=USER_PASSWORD, new=NEW_PASSWORD, status=200):
    body = {"old_password": old, "new_password": new}
    return client.put_json("/me/password", body, headers=headers, status=status)


def session_rows(database: str) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM sessions ORDER BY id")]


# -- GET /me -------------------------------------------------------------------


def test_me_answers_the_signed_in_account(client, user, user_headers):
    response = client.get("/me", headers=user_headers, status=200)
    assert response.json == {"user": {"public_id": user["public_id"], "name": "alice", "admin": False}}


def test_me_needs_a_token(client):
    response = client.get("/me", status=401)
    assert response.json == {"message": "Token is missing!"}


# -- PUT /me/password ------------------------------------------------------------


def test_password_change_answers_password_changed(client, user_headers):
    response = change_password(client, user_headers)
    assert response.json == {"message": "Password changed!"}


def test_password_change_lets_the_new_password_log_in_and_not_the_old(client, user_headers):
    change_password(client, user_headers)
    login(client, "alice", NEW_PASSWORD)
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=401)


def test_password_change_with_wrong_old_password_is_403_and_changes_nothing(client, user_headers):
    response = change_password(client, user_headers, old="not-the-password", status=403)
    assert response.json == {"message": "Wrong password!"}
    client.get("/me", headers=user_headers, status=200)
    login(client, "alice", USER_PASSWORD)


def test_password_change_refuses_a_bad_new_password_naming_new_password(client, user_headers):
    for bad in ("short", "x" * 1025):
        response = change_password(client, user_headers, new=bad, status=400)
        assert "new_password" in response.json["message"]
    login(client, "alice", USER_PASSWORD)


def test_password_change_refuses_a_body_missing_old_password(client, user_headers):
    response = client.put_json("/me/password", {"new_password": NEW_PASSWORD}, headers=user_headers, status=400)
    assert "old_password" in response.json["message"]


def test_password_change_ends_every_token_issued_before_it(client, user, user_headers):
    other = {"x-access-token": login(client, "alice", USER_PASSWORD)}
    change_password(client, user_headers)
    for headers in (user_headers, other):
        response = client.get("/me", headers=headers, status=401)
        assert response.json == {"message": "Token is invalid!"}


def test_token_issued_after_a_password_change_works_within_the_same_instant(client, user, user_headers):
    # The fake clock does not move: change and new login happen at the same time.
    change_password(client, user_headers)
    fresh = {"x-access-token": login(client, "alice", NEW_PASSWORD)}
    client.get("/me", headers=fresh, status=200)
    client.get("/me", headers=user_headers, status=401)


def test_token_issued_after_a_password_change_keeps_working_later(client, clock, user, user_headers):
    change_password(client, user_headers)
    clock.advance(1)
    fresh = {"x-access-token": login(client, "alice", NEW_PASSWORD)}
    clock.advance(60)
    client.get("/me", headers=fresh, status=200)


def test_password_change_leaves_other_accounts_tokens_alone(client, admin_headers, user_headers):
    change_password(client, user_headers)
    client.get("/me", headers=admin_headers, status=200)


# -- POST /logout ------------------------------------------------------------------------


def test_logout_answers_logged_out(client, user_headers):
    response = client.post("/logout", headers=user_headers, status=200)
    assert response.json == {"message": "Logged out!"}


def test_logout_ends_that_token(client, user_headers):
    client.post("/logout", headers=user_headers, status=200)
    response = client.get("/me", headers=user_headers, status=401)
    assert response.json == {"message": "Token is invalid!"}
    assert response.headers["WWW-Authenticate"] == challenge("revoked")


def test_logout_leaves_another_token_of_the_same_account_working(client, user, user_headers):
    other = {"Authorization": f"Bearer {login(client, 'alice', USER_PASSWORD)}"}
    client.post("/logout", headers=user_headers, status=200)
    client.get("/me", headers=other, status=200)


def test_logout_holds_in_another_app_sharing_the_database(client, make_app, user_headers):
    client.post("/logout", headers=user_headers, status=200)
    other_process = TestApp(validator(make_app()))
    other_process.get("/me", headers=user_headers, status=401)


def test_logout_needs_a_valid_token(client, user_headers):
    client.post("/logout", status=401)
    client.post("/logout", headers=user_headers, status=200)
    client.post("/logout", headers=user_headers, status=401)


@pytest.mark.sqlite_only
def test_logout_deletes_the_tokens_session_and_only_it(client, database, user, user_headers):
    other = login(client, "alice", USER_PASSWORD)
    client.post("/logout", headers=user_headers, status=200)
    assert session_rows(database) == [digest(session_of(other))]  # kept by its digest


def test_logout_ends_every_token_of_its_session_and_no_other(client, app, user, user_headers):
    # A second access token of the same session, as a refresh would issue it.
    same_session = issue_token(app, user["public_id"], session_of(user_headers["x-access-token"]), app.clock())
    other_session = login(client, "alice", USER_PASSWORD)
    client.post("/logout", headers=user_headers, status=200)
    client.get("/me", headers={"x-access-token": same_session}, status=401)
    client.get("/me", headers={"x-access-token": other_session}, status=200)


def test_every_login_starts_its_own_session(client, user):
    tokens = [login(client, "alice", USER_PASSWORD) for _ in range(3)]
    assert len({session_of(token) for token in tokens}) == 3
