"""Beyond the seed, editing: PATCH /todo/<id>, PATCH /user/<public_id>, the last admin (API.md)."""

from __future__ import annotations

import threading
from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, add_account, basic, login, stored_rows

LAST_ADMIN = {"message": "Cannot remove the last admin!"}


def new_todo(client, headers, text="buy milk"):
    return client.post_json("/todo", {"text": text}, headers=headers, status=201).json["todo"]


# -- PATCH /todo/<id> ------------------------------------------------------------------


def test_patch_todo_edits_the_text(client, user_headers):
    todo = new_todo(client, user_headers)
    response = client.patch_json(f"/todo/{todo['id']}", {"text": "buy oat milk"}, headers=user_headers, status=200)
    assert response.json == {"todo": {"id": todo["id"], "text": "buy oat milk", "complete": False}}
    assert client.get(f"/todo/{todo['id']}", headers=user_headers, status=200).json == response.json


def test_patch_todo_completes_and_uncompletes(client, user_headers):
    todo = new_todo(client, user_headers)
    done = client.patch_json(f"/todo/{todo['id']}", {"complete": True}, headers=user_headers, status=200)
    assert done.json["todo"]["complete"] is True
    undone = client.patch_json(f"/todo/{todo['id']}", {"complete": False}, headers=user_headers, status=200)
    assert undone.json == {"todo": {"id": todo["id"], "text": "buy milk", "complete": False}}
    assert client.get(f"/todo/{todo['id']}", headers=user_headers, status=200).json == undone.json


def test_patch_todo_edits_text_and_completion_together(client, user_headers):
    todo = new_todo(client, user_headers)
    body = {"text": "buy bread", "complete": True}
    response = client.patch_json(f"/todo/{todo['id']}", body, headers=user_headers, status=200)
    assert response.json == {"todo": {"id": todo["id"], **body}}


def test_patch_todo_with_empty_body_changes_nothing_and_answers_the_same(client, user_headers):
    todo = new_todo(client, user_headers)
    client.put(f"/todo/{todo['id']}", headers=user_headers, status=200)
    before = client.get(f"/todo/{todo['id']}", headers=user_headers, status=200).json
    response = client.patch_json(f"/todo/{todo['id']}", {}, headers=user_headers, status=200)
    assert response.json == before == {"todo": {"id": todo["id"], "text": "buy milk", "complete": True}}
    assert client.get(f"/todo/{todo['id']}", headers=user_headers, status=200).json == before


def test_patch_todo_of_another_account_is_404_and_changes_nothing(client, admin_headers, user_headers):
    todo = new_todo(client, admin_headers)
    response = client.patch_json(f"/todo/{todo['id']}", {"text": "mine now"}, headers=user_headers, status=404)
    assert response.json == {"message": "No todo found!"}
    assert client.get(f"/todo/{todo['id']}", headers=admin_headers, status=200).json["todo"] == todo


def test_patch_todo_that_does_not_exist_is_404(client, user_headers):
    response = client.patch_json("/todo/999", {"complete": True}, headers=user_headers, status=404)
    assert response.json == {"message": "No todo found!"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "x" * 501}, "text"),
        ({"text": "a\x00b"}, "text"),
        ({"text": 5}, "text"),
        ({"text": None}, "text"),
        ({"complete": "yes"}, "complete"),
        ({"complete": 1}, "complete"),
        ({"complete": None}, "complete"),
        ({"id": 7}, "id"),
    ],
)
def test_patch_todo_refuses_a_bad_field_naming_it_and_changes_nothing(client, user_headers, body, field):
    todo = new_todo(client, user_headers)
    response = client.patch_json(f"/todo/{todo['id']}", body, headers=user_headers, status=400)
    assert f"'{field}'" in response.json["message"]
    assert client.get(f"/todo/{todo['id']}", headers=user_headers, status=200).json["todo"] == todo


def test_patch_todo_needs_a_token(client, user_headers):
    todo = new_todo(client, user_headers)
    client.patch_json(f"/todo/{todo['id']}", {"complete": True}, status=401)


# -- PATCH /user/<public_id> -----------------------------------------------------------


def test_patch_user_renames_and_the_new_name_logs_in(client, admin_headers, user):
    response = client.patch_json(f"/user/{user['public_id']}", {"name": "alicia"}, headers=admin_headers, status=200)
    assert response.json == {"user": {"public_id": user["public_id"], "name": "alicia", "admin": False}}
    login(client, "alicia", USER_PASSWORD)
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=401)


def test_patch_user_to_a_taken_name_is_409_and_changes_nothing(client, app, admin_headers, user):
    add_account(app, "bob", USER_PASSWORD)
    response = client.patch_json(
        f"/user/{user['public_id']}", {"name": "bob", "admin": True}, headers=admin_headers, status=409
    )
    assert response.json == {"message": "Name already taken!"}
    assert client.get(f"/user/{user['public_id']}", headers=admin_headers, status=200).json["user"] == {
        "public_id": user["public_id"],
        "name": "alice",
        "admin": False,
    }


@pytest.mark.parametrize("taken", ["BOB", "ｂｏｂ"], ids=["case", "full-width"])
def test_patch_user_to_a_name_equal_to_a_taken_one_by_its_nfkc_case_fold_is_409_and_changes_nothing(
    client, app, admin_headers, user, taken
):
    add_account(app, "bob", USER_PASSWORD)
    before = stored_rows(app)
    response = client.patch_json(f"/user/{user['public_id']}", {"name": taken}, headers=admin_headers, status=409)
    assert response.json == {"message": "Name already taken!"}
    assert stored_rows(app) == before


def test_patch_user_to_its_own_name_is_fine(client, admin_headers, user):
    client.patch_json(f"/user/{user['public_id']}", {"name": "alice"}, headers=admin_headers, status=200)


def test_patch_user_password_reset_ends_the_accounts_tokens_and_the_new_password_logs_in(
    client, admin_headers, user, user_headers
):
    body = {"password": "reset-password-1"}
    client.patch_json(f"/user/{user['public_id']}", body, headers=admin_headers, status=200)
    response = client.get("/me", headers=user_headers, status=401)
    assert response.json == {"message": "Token is invalid!"}
    fresh = {"x-access-token": login(client, "alice", "reset-password-1")}
    client.get("/me", headers=fresh, status=200)
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=401)
    client.get("/user", headers=admin_headers, status=200)


def test_patch_user_without_a_password_leaves_tokens_working(client, admin_headers, user, user_headers):
    client.patch_json(f"/user/{user['public_id']}", {"name": "alicia"}, headers=admin_headers, status=200)
    client.get("/me", headers=user_headers, status=200)


def test_patch_user_grants_and_revokes_admin_at_once(client, admin_headers, user, user_headers):
    granted = client.patch_json(f"/user/{user['public_id']}", {"admin": True}, headers=admin_headers, status=200)
    assert granted.json["user"]["admin"] is True
    client.get("/user", headers=user_headers, status=200)
    revoked = client.patch_json(f"/user/{user['public_id']}", {"admin": False}, headers=admin_headers, status=200)
    assert revoked.json["user"]["admin"] is False
    client.get("/user", headers=user_headers, status=403)


def test_patch_user_with_empty_body_changes_nothing(client, admin_headers, user):
    response = client.patch_json(f"/user/{user['public_id']}", {}, headers=admin_headers, status=200)
    assert response.json == {"user": {"public_id": user["public_id"], "name": "alice", "admin": False}}


def test_patch_user_demoting_the_last_admin_is_409(client, admin, admin_headers):
    response = client.patch_json(f"/user/{admin['public_id']}", {"admin": False}, headers=admin_headers, status=409)
    assert response.json == LAST_ADMIN
    assert client.get("/me", headers=admin_headers, status=200).json["user"]["admin"] is True


def test_patch_user_demoting_an_admin_while_another_remains_is_fine(client, app, admin, admin_headers):
    add_account(app, "root", ADMIN_PASSWORD, admin=True)
    response = client.patch_json(f"/user/{admin['public_id']}", {"admin": False}, headers=admin_headers, status=200)
    assert response.json["user"]["admin"] is False
    client.get("/user", headers=admin_headers, status=403)


def test_patch_user_that_does_not_exist_is_404(client, admin_headers):
    response = client.patch_json(
        "/user/00000000-0000-4000-8000-000000000000", {"name": "x"}, headers=admin_headers, status=404
    )
    assert response.json == {"message": "No user found!"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 51}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": 5}, "name"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 1025}, "password"),
        ({"admin": "yes"}, "admin"),
        ({"admin": 1}, "admin"),
        ({"public_id": "x"}, "public_id"),
    ],
)
def test_patch_user_refuses_a_bad_field_naming_it(client, admin_headers, user, body, field):
    response = client.patch_json(f"/user/{user['public_id']}", body, headers=admin_headers, status=400)
    assert f"'{field}'" in response.json["message"]


def test_patch_user_is_admin_only(client, admin, user_headers):
    response = client.patch_json(f"/user/{admin['public_id']}", {"admin": False}, headers=user_headers, status=403)
    assert response.json == {"message": "Cannot perform that function!"}


# -- DELETE of the last admin ---------------------------------------------------------


def test_deleting_the_last_admin_is_409_and_deletes_nothing(client, admin, admin_headers):
    response = client.delete(f"/user/{admin['public_id']}", headers=admin_headers, status=409)
    assert response.json == LAST_ADMIN
    client.get("/me", headers=admin_headers, status=200)


def test_deleting_an_admin_while_another_remains_is_fine(client, app, admin, admin_headers):
    root = add_account(app, "root", ADMIN_PASSWORD, admin=True)
    client.delete(f"/user/{root['public_id']}", headers=admin_headers, status=200)
    response = client.delete(f"/user/{admin['public_id']}", headers=admin_headers, status=409)
    assert response.json == LAST_ADMIN


# -- the last-admin race ------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(3))
def test_two_admins_demoting_each_other_at_once_leave_one_admin(make_app, monkeypatch, attempt):
    """Both requests pass their admin check before either writes; one transaction decides."""
    apps = [make_app(), make_app()]  # two apps on one database file, as two processes would be
    clients = [TestApp(validator(app)) for app in apps]
    first = add_account(apps[0], "first", ADMIN_PASSWORD, admin=True)
    second = add_account(apps[0], "second", ADMIN_PASSWORD, admin=True)
    tokens = [
        {"x-access-token": login(clients[0], "first", ADMIN_PASSWORD)},
        {"x-access-token": login(clients[1], "second", ADMIN_PASSWORD)},
    ]
    targets = [second["public_id"], first["public_id"]]
    # Hold each request at the store until both have passed require_admin.
    barrier = threading.Barrier(2, timeout=10)
    backend = apps[0].store  # the store module of this backend, shared by both apps
    real_update_user = backend.update_user

    def update_user_once_both_are_in(*args, **kwargs):
        barrier.wait()
        return real_update_user(*args, **kwargs)

    monkeypatch.setattr(backend, "update_user", update_user_once_both_are_in)
    statuses = [0, 0]

    def demote(i):
        response = clients[i].patch_json(f"/user/{targets[i]}", {"admin": False}, headers=tokens[i], expect_errors=True)
        statuses[i] = response.status_int

    threads = [threading.Thread(target=demote, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    monkeypatch.setattr(backend, "update_user", real_update_user)
    # The loser, demoted by the winner first, is no longer an admin when its own write decides.
    assert sorted(statuses) == [200, 403]
    with apps[0].db.connection() as conn:
        admins = [u["name"] for u in backend.list_users(conn) if u["admin"]]
    assert admins in (["first"], ["second"])


@pytest.fixture
def admin_changes_fail(app, database):
    """A trigger that makes any change of an account's admin flag fail, mid-request.

    Dropped again at the end: a PostgreSQL test database is emptied and reused,
    and emptying it keeps triggers.
    """
    postgres = database.startswith("postgresql")
    with app.db.connection() as conn:
        if postgres:
            conn.execute(
                "CREATE FUNCTION refuse() RETURNS trigger"
                " AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql"
            )
            conn.execute("CREATE TRIGGER refuse BEFORE UPDATE OF admin ON users FOR EACH ROW EXECUTE FUNCTION refuse()")
        else:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE UPDATE OF admin ON users BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
    yield
    with app.db.connection() as conn:
        conn.execute("DROP TRIGGER refuse ON users" if postgres else "DROP TRIGGER refuse")
        if postgres:
            conn.execute("DROP FUNCTION refuse()")


def test_a_request_whose_write_fails_midway_changes_nothing(
    admin_changes_fail, client, admin_headers, user, user_headers
):
    change = {"name": "alicia", "password": "reset-password-1", "admin": True}
    response = client.patch_json(f"/user/{user['public_id']}", change, headers=admin_headers, expect_errors=True)
    assert response.status_int >= 400
    assert client.get(f"/user/{user['public_id']}", headers=admin_headers, status=200).json["user"] == {
        "public_id": user["public_id"],
        "name": "alice",
        "admin": False,
    }
    client.get("/me", headers=user_headers, status=200)  # the password cut-off did not move
    login(client, "alice", USER_PASSWORD)
