"""The main part of API.md, one test per promise, through WebTest over wsgiref's validator."""

import base64
import hashlib
import json
import logging
import re
import sqlite3
import uuid
from wsgiref.validate import validator

import jwt
import pytest
from webtest import TestApp

import todo_wsgi
from tests.conftest import (
    ADMIN_PASSWORD,
    ITERATIONS,
    USER_PASSWORD,
    add_account,
    basic,
    challenge,
    login,
    session_of,
    stored_rows,
)

COULD_NOT_VERIFY = {"message": "Could not verify"}
BASIC_CHALLENGE = 'Basic realm="Login required!"'
TOKEN_MISSING = {"message": "Token is missing!"}
TOKEN_INVALID = {"message": "Token is invalid!"}
FORBIDDEN = {"message": "Cannot perform that function!"}
NO_USER = {"message": "No user found!"}
NO_TODO = {"message": "No todo found!"}
JSON_ERROR = {"message": "Internal server error"}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def new_todo(client, headers, text="buy milk"):
    return client.post_json("/todo", {"text": text}, headers=headers, status=201).json["todo"]


def new_user(client, admin_headers, name="bob", password="bob-password-1"):
    return client.post_json("/user", {"name": name, "password": password}, headers=admin_headers, status=201).json[
        "user"
    ]


def sign(app, claims, key=None, algorithm="HS256"):
    """A token with exactly these claims, signed as the app does unless told otherwise."""
    return jwt.encode(claims, app.secret_key if key is None else key, algorithm=algorithm)


def valid_claims(clock, public_id, sid="no-such-session"):
    return {"public_id": public_id, "sid": sid, "iat": int(clock()), "exp": int(clock()) + 600}


@pytest.fixture
def pbkdf2_calls(app, monkeypatch):
    """Every PBKDF2 run of the app's hasher, as (hash name, iterations)."""
    calls = []
    real = app.hasher.kdf

    def spy(hash_name, password, salt, iterations, *args):
        calls.append((hash_name, iterations))
        return real(hash_name, password, salt, iterations, *args)

    monkeypatch.setattr(app.hasher, "kdf", spy)
    return calls


# -- authentication: login ----------------------------------------------------------


def test_login_get_with_basic_answers_token_and_expires_in(client, admin):
    response = client.get("/login", headers=basic("admin", ADMIN_PASSWORD), status=200)
    assert set(response.json) == {"token", "expires_in", "refresh_token", "refresh_expires_in"}
    assert response.json["expires_in"] == 1800
    assert isinstance(response.json["token"], str)


def test_login_post_with_basic_answers_token_and_expires_in(client, admin):
    response = client.post("/login", headers=basic("admin", ADMIN_PASSWORD), status=200)
    assert set(response.json) == {"token", "expires_in", "refresh_token", "refresh_expires_in"}
    assert response.json["expires_in"] == 1800


def test_token_is_hs256_with_public_id_iat_exp(client, app, admin, clock):
    token = login(client, "admin", ADMIN_PASSWORD)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, app.secret_key, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims["public_id"] == admin["public_id"]
    assert claims["iat"] == pytest.approx(clock())
    assert claims["exp"] == int(clock()) + 1800


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("nobody", ADMIN_PASSWORD),
        basic("admin", "wrong-password"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer something"},
    ],
    ids=["missing", "unknown-name", "wrong-password", "malformed-basic", "not-basic"],
)
def test_bad_credentials_all_answer_401_could_not_verify_with_basic_challenge(client, admin, headers):
    response = client.post("/login", headers=headers, status=401)
    assert response.json == COULD_NOT_VERIFY
    assert response.headers["WWW-Authenticate"] == BASIC_CHALLENGE


def test_missing_credentials_unknown_name_and_wrong_password_are_indistinguishable(client, admin):
    answers = [
        client.get("/login", headers=headers, status=401)
        for headers in ({}, basic("nobody", ADMIN_PASSWORD), basic("admin", "wrong-password"))
    ]
    assert len({(a.status, tuple(a.headerlist), a.body) for a in answers}) == 1


def test_missing_credentials_are_refused_without_hashing(client, admin, pbkdf2_calls):
    client.post("/login", status=401)
    assert pbkdf2_calls == []


def test_unknown_name_hashes_once_at_the_configured_cost(client, admin, pbkdf2_calls):
    client.post("/login", headers=basic("nobody", ADMIN_PASSWORD), status=401)
    assert pbkdf2_calls == [("sha256", ITERATIONS)]


def test_unknown_name_costs_the_same_hashing_as_a_wrong_password(client, admin, pbkdf2_calls):
    client.post("/login", headers=basic("admin", "wrong-password"), status=401)
    wrong_password = list(pbkdf2_calls)
    pbkdf2_calls.clear()
    client.post("/login", headers=basic("nobody", "wrong-password"), status=401)
    assert pbkdf2_calls == wrong_password


# -- authentication: tokens -----------------------------------------------------------


def test_token_is_accepted_in_x_access_token(client, admin):
    token = login(client, "admin", ADMIN_PASSWORD)
    client.get("/todo", headers={"x-access-token": token}, status=200)


def test_token_is_accepted_in_authorization_bearer(client, admin):
    token = login(client, "admin", ADMIN_PASSWORD)
    client.get("/todo", headers=bearer(token), status=200)


@pytest.mark.parametrize(
    "headers",
    [{}, basic("admin", ADMIN_PASSWORD)],
    ids=["no-header", "basic-instead"],
)
def test_no_token_answers_401_token_is_missing_with_bearer_challenge(client, admin, headers):
    response = client.get("/todo", headers=headers, status=401)
    assert response.json == TOKEN_MISSING
    assert response.headers["WWW-Authenticate"] == "Bearer"


def invalid_tokens(app, clock, public_id):
    """Every kind of bad token API.md names, by name."""
    claims = valid_claims(clock, public_id)
    without_exp = {k: v for k, v in claims.items() if k != "exp"}
    return {
        "malformed": "not.a.token",
        "garbage": "x" * 40,
        "other-key": sign(app, claims, key="another-key-of-at-least-32-bytes!!"),
        "other-algorithm": sign(app, claims, algorithm="HS512"),
        "alg-none": jwt.encode(claims, None, algorithm="none"),
        "expired": sign(app, {**claims, "exp": int(clock()) - 1}),
        "lacking-exp": sign(app, without_exp),
        "unknown-account": sign(app, {**claims, "public_id": str(uuid.uuid4())}),
    }


# Why each is refused, as its challenge says (RFC 6750 3).
BAD_TOKEN_REASONS = {
    "malformed": "malformed",
    "garbage": "malformed",
    "other-key": "malformed",
    "other-algorithm": "malformed",
    "alg-none": "malformed",
    "expired": "expired",
    "lacking-exp": "malformed",
    "unknown-account": "revoked",
}


@pytest.mark.parametrize("kind", BAD_TOKEN_REASONS)
def test_bad_token_answers_401_token_is_invalid_with_bearer_challenge(client, app, clock, admin, kind):
    token = invalid_tokens(app, clock, admin["public_id"])[kind]
    for headers in ({"x-access-token": token}, bearer(token)):
        response = client.get("/todo", headers=headers, status=401)
        assert response.json == TOKEN_INVALID
        assert response.headers["WWW-Authenticate"] == challenge(BAD_TOKEN_REASONS[kind])


def test_a_self_signed_token_with_valid_claims_is_accepted(client, app, clock, admin):
    # The counterpart of the test above: its bad tokens fail for their flaw alone.
    sid = session_of(login(client, "admin", ADMIN_PASSWORD))
    client.get("/todo", headers=bearer(sign(app, valid_claims(clock, admin["public_id"], sid))), status=200)


def test_token_expires_after_token_ttl(client, admin, clock):
    token = login(client, "admin", ADMIN_PASSWORD)
    clock.advance(1799)
    client.get("/todo", headers=bearer(token), status=200)
    clock.advance(1)
    assert client.get("/todo", headers=bearer(token), status=401).json == TOKEN_INVALID


def test_admin_rights_are_read_from_the_database_on_every_request(
    client, app, admin, admin_headers, user, user_headers
):
    client.get("/user", headers=user_headers, status=403)
    client.put(f"/user/{user['public_id']}", headers=admin_headers, status=200)
    client.get("/user", headers=user_headers, status=200)  # the same token, now an admin's
    with app.db.connection() as conn:
        app.store.update_user(conn, None, user["public_id"], admin=False)
    assert client.get("/user", headers=user_headers, status=403).json == FORBIDDEN


def test_deleted_account_s_token_is_invalid(client, admin_headers, user, user_headers):
    client.delete(f"/user/{user['public_id']}", headers=admin_headers, status=200)
    response = client.get("/todo", headers=user_headers, status=401)
    assert response.json == TOKEN_INVALID
    assert response.headers["WWW-Authenticate"] == challenge("revoked")


def test_token_signed_by_another_app_s_key_is_refused(make_app, tmp_path, admin):
    other = make_app(database=str(tmp_path / "other.db"))
    add_account(other, "admin", ADMIN_PASSWORD, admin=True)
    foreign = login(TestApp(validator(other)), "admin", ADMIN_PASSWORD)
    ours = TestApp(validator(make_app()))
    assert ours.get("/todo", headers=bearer(foreign), status=401).json == TOKEN_INVALID


# -- accounts (admin only) --------------------------------------------------------------

USER_ROUTES = [
    ("GET", "/user", None),
    ("POST", "/user", {"name": "carol", "password": "carol-password"}),
    ("GET", "/user/{id}", None),
    ("PUT", "/user/{id}", None),
    ("DELETE", "/user/{id}", None),
]


@pytest.mark.parametrize("method, path, body", USER_ROUTES)
def test_non_admin_gets_403_on_every_account_route(
    client, admin, admin_headers, user, user_headers, method, path, body
):
    url = path.format(id=user["public_id"])
    if body is None:
        response = client.request(url, method=method, headers=user_headers, status=403)
    else:
        response = client.post_json(url, body, headers=user_headers, status=403)
    assert response.json == FORBIDDEN
    accounts = client.get("/user", headers=admin_headers, status=200).json["users"]
    assert [(a["name"], a["admin"]) for a in accounts] == [("admin", True), ("alice", False)]


@pytest.mark.parametrize("method, path, body", USER_ROUTES)
def test_account_routes_without_token_answer_401(client, admin, method, path, body):
    url = path.format(id=admin["public_id"])
    response = client.request(url, method=method, status=401)
    assert response.json == TOKEN_MISSING


# Every route but logging in, /healthz, /openapi.json and the browser client's files needs a
# token (API.md, "Authentication").
OPEN_ROUTES = {
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/refresh"),
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
} | {
    (method, pattern)
    for method, pattern, handler in todo_wsgi.ROUTES
    if handler in (todo_wsgi.web_file, todo_wsgi.web_redirect)
}


@pytest.mark.parametrize(
    "method, pattern", [(m, p) for m, p, _ in todo_wsgi.ROUTES if (m, p) not in OPEN_ROUTES], ids=str
)
def test_every_route_but_login_and_healthz_answers_401_token_missing_without_a_token(client, user, method, pattern):
    path = pattern.replace("<int:todo_id>", "1").replace("<public_id>", user["public_id"])
    # A JSON body: a route that read it before checking the token would answer other than 401.
    body = {"text": "t", "name": "n", "password": "password-1", "old_password": "x", "new_password": "password-2"}
    response = client.request(path, method=method, body=json.dumps(body).encode(), content_type="application/json",
                              status=401)  # fmt: skip
    assert response.json == TOKEN_MISSING
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_pool_size_sizes_the_postgresql_pool(make_app, database):
    app = make_app(pool_size=2)
    assert app.settings.pool_size == 2
    if database.startswith("postgresql"):
        assert app.db.pool.max_size == 2


def test_list_users_answers_every_account_without_secrets(client, admin, admin_headers, user):
    response = client.get("/user", headers=admin_headers, status=200)
    assert response.json == {
        "users": [
            {"public_id": admin["public_id"], "name": "admin", "admin": True},
            {"public_id": user["public_id"], "name": "alice", "admin": False},
        ]
    }


def test_get_user_answers_the_account(client, admin_headers, user):
    response = client.get(f"/user/{user['public_id']}", headers=admin_headers, status=200)
    assert response.json == {"user": {"public_id": user["public_id"], "name": "alice", "admin": False}}


def test_get_unknown_user_answers_404_no_user_found(client, admin_headers):
    assert client.get(f"/user/{uuid.uuid4()}", headers=admin_headers, status=404).json == NO_USER


def test_create_user_answers_201_with_the_account_and_location(client, admin_headers):
    response = client.post_json(
        "/user", {"name": "bob", "password": "bob-password-1"}, headers=admin_headers, status=201
    )
    user = response.json["user"]
    assert response.json == {
        "message": "New user created!",
        "user": {"public_id": user["public_id"], "name": "bob", "admin": False},
    }
    assert str(uuid.UUID(user["public_id"], version=4)) == user["public_id"]
    assert response.headers["Location"] == f"/user/{user['public_id']}"
    client.get(response.headers["Location"], headers=admin_headers, status=200)
    client.post("/login", headers=basic("bob", "bob-password-1"), status=200)


def test_create_user_with_a_taken_name_answers_409(client, admin_headers, user):
    response = client.post_json(
        "/user", {"name": "alice", "password": "another-password"}, headers=admin_headers, status=409
    )
    assert set(response.json) == {"message"}
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=200)


def test_create_user_refuses_admin_field(client, admin_headers):
    body = {"name": "mallory", "password": "mallory-password", "admin": True}
    response = client.post_json("/user", body, headers=admin_headers, status=400)
    assert "admin" in response.json["message"]
    assert [u["name"] for u in client.get("/user", headers=admin_headers, status=200).json["users"]] == ["admin"]


def test_promote_user_answers_200_and_makes_an_admin(client, admin_headers, user):
    response = client.put(f"/user/{user['public_id']}", headers=admin_headers, status=200)
    assert response.json == {"message": "The user has been promoted!"}
    assert client.get(f"/user/{user['public_id']}", headers=admin_headers, status=200).json["user"]["admin"] is True


def test_promote_unknown_user_answers_404(client, admin_headers):
    assert client.put(f"/user/{uuid.uuid4()}", headers=admin_headers, status=404).json == NO_USER


def test_delete_user_answers_200_and_removes_it_with_its_todos(client, app, admin_headers, user, user_headers):
    new_todo(client, user_headers)
    response = client.delete(f"/user/{user['public_id']}", headers=admin_headers, status=200)
    assert response.json == {"message": "The user has been deleted!"}
    client.get(f"/user/{user['public_id']}", headers=admin_headers, status=404)
    with app.db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM todos").fetchone()[0] == 0


def test_delete_unknown_user_answers_404(client, admin_headers):
    assert client.delete(f"/user/{uuid.uuid4()}", headers=admin_headers, status=404).json == NO_USER


@pytest.mark.parametrize("name", ["a", "n" * 50, "Zoë", "名前", "with space"])
def test_names_of_1_to_50_characters_are_taken(client, admin_headers, name):
    assert new_user(client, admin_headers, name=name)["name"] == name


@pytest.mark.parametrize(
    "name",
    ["", "n" * 51, "line\nbreak", "tab\there", "nul\x00", "del\x7f", "c1\x85"],
    ids=["empty", "51", "newline", "tab", "nul", "del", "c1"],
)
def test_names_empty_longer_than_50_or_with_control_characters_are_refused(client, admin_headers, name):
    response = client.post_json("/user", {"name": name, "password": "password-1"}, headers=admin_headers, status=400)
    assert "name" in response.json["message"]


@pytest.mark.parametrize("length", [8, 1024])
def test_passwords_of_8_to_1024_characters_are_taken(client, admin_headers, length):
    password = "p" * length
    new_user(client, admin_headers, password=password)
    client.post("/login", headers=basic("bob", password), status=200)


@pytest.mark.parametrize("length", [0, 7, 1025])
def test_passwords_shorter_than_8_or_longer_than_1024_are_refused(client, admin_headers, length):
    response = client.post_json("/user", {"name": "bob", "password": "p" * length}, headers=admin_headers, status=400)
    assert "password" in response.json["message"]


# -- to-dos (own only) ------------------------------------------------------------------


def test_create_todo_answers_201_with_the_todo_and_location(client, user_headers):
    response = client.post_json("/todo", {"text": "buy milk"}, headers=user_headers, status=201)
    todo = response.json["todo"]
    assert response.json == {
        "message": "Todo created!",
        "todo": {"id": todo["id"], "text": "buy milk", "complete": False},
    }
    assert isinstance(todo["id"], int)
    assert response.headers["Location"] == f"/todo/{todo['id']}"
    client.get(response.headers["Location"], headers=user_headers, status=200)


def test_list_todos_answers_own_todos_in_id_order(client, admin_headers, user_headers):
    first, second, third = (new_todo(client, user_headers, text) for text in ("c", "a", "b"))
    new_todo(client, admin_headers, "someone else's")
    client.delete(f"/todo/{second['id']}", headers=user_headers, status=200)
    response = client.get("/todo", headers=user_headers, status=200)
    assert response.json == {"todos": [first, third]}
    assert first["id"] < third["id"]


def test_list_todos_of_a_new_account_is_empty(client, user_headers):
    assert client.get("/todo", headers=user_headers, status=200).json == {"todos": []}


def test_get_todo_answers_the_todo(client, user_headers):
    todo = new_todo(client, user_headers)
    assert client.get(f"/todo/{todo['id']}", headers=user_headers, status=200).json == {"todo": todo}


def test_complete_todo_answers_200_and_marks_it_complete(client, user_headers):
    todo = new_todo(client, user_headers)
    response = client.put(f"/todo/{todo['id']}", headers=user_headers, status=200)
    assert response.json == {"message": "Todo item has been completed!"}
    assert client.get(f"/todo/{todo['id']}", headers=user_headers, status=200).json["todo"]["complete"] is True


def test_delete_todo_answers_200_and_removes_it(client, user_headers):
    todo = new_todo(client, user_headers)
    response = client.delete(f"/todo/{todo['id']}", headers=user_headers, status=200)
    assert response.json == {"message": "Todo item deleted!"}
    client.get(f"/todo/{todo['id']}", headers=user_headers, status=404)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("todo_id", ["999999", str(2**63), str(2**70)])
def test_missing_todo_answers_404_no_todo_found(client, user_headers, method, todo_id):
    response = client.request(f"/todo/{todo_id}", method=method, headers=user_headers, status=404)
    assert response.json == NO_TODO


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_another_account_s_todo_is_answered_exactly_as_a_missing_one(client, admin_headers, user_headers, method):
    theirs = new_todo(client, admin_headers, "admin's own")
    missing = theirs["id"] + 1000
    other = client.request(f"/todo/{theirs['id']}", method=method, headers=user_headers, status=404)
    absent = client.request(f"/todo/{missing}", method=method, headers=user_headers, status=404)
    assert (other.status, other.headerlist, other.body) == (absent.status, absent.headerlist, absent.body)
    assert client.get(f"/todo/{theirs['id']}", headers=admin_headers, status=200).json == {"todo": theirs}


@pytest.mark.parametrize(
    "text",
    [
        "t",
        "x" * 500,
        "  spaces kept  ",
        "line\nbreak\ttab",
        "émoji 🎉 and 名前",
        "\u200b\ufeff",
        'quote " \\ /',
        "\x1f\x7f",
    ],
)
def test_todo_text_is_stored_and_returned_exactly(client, user_headers, text):
    created = new_todo(client, user_headers, text)
    assert created["text"] == text
    assert client.get(f"/todo/{created['id']}", headers=user_headers, status=200).json["todo"]["text"] == text
    assert client.get("/todo", headers=user_headers, status=200).json["todos"][0]["text"] == text


@pytest.mark.parametrize("text", ["", "x" * 501, "nul\x00inside"], ids=["empty", "501", "nul"])
def test_todo_text_empty_longer_than_500_or_with_nul_is_refused(client, user_headers, text):
    response = client.post_json("/todo", {"text": text}, headers=user_headers, status=400)
    assert "text" in response.json["message"]
    assert client.get("/todo", headers=user_headers, status=200).json == {"todos": []}


@pytest.mark.parametrize(
    "method, path", [("GET", "/todo"), ("POST", "/todo"), ("GET", "/todo/1"), ("PUT", "/todo/1"), ("DELETE", "/todo/1")]
)
def test_todo_routes_without_token_answer_401(client, method, path):
    assert client.request(path, method=method, status=401).json == TOKEN_MISSING


# -- request bodies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/user", {"password": "password-1"}, "name"),
        ("/user", {"name": "bob"}, "password"),
        ("/user", {"name": 7, "password": "password-1"}, "name"),
        ("/user", {"name": "bob", "password": None}, "password"),
        ("/user", {"name": "bob", "password": "password-1", "admin": True}, "admin"),
        ("/todo", {}, "text"),
        ("/todo", {"text": 5}, "text"),
        ("/todo", {"text": True}, "text"),
        ("/todo", {"text": ["a"]}, "text"),
        ("/todo", {"text": "a", "complete": True}, "complete"),
    ],
    ids=[
        "user-missing-name",
        "user-missing-password",
        "user-name-not-string",
        "user-password-null",
        "user-unknown-admin",
        "todo-missing-text",
        "todo-text-int",
        "todo-text-bool",
        "todo-text-list",
        "todo-unknown-complete",
    ],
)
def test_body_field_missing_of_wrong_type_or_not_taken_answers_400_naming_it(client, admin_headers, path, body, field):
    response = client.post_json(path, body, headers=admin_headers, status=400)
    assert f"'{field}'" in response.json["message"]


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b"[]", b'"text"', b"null", b"NaN", b"\xff\xfe"],
    ids=["empty", "truncated", "words", "array", "string", "null", "nan", "not-utf8"],
)
def test_body_not_valid_json_or_not_an_object_answers_400(client, user_headers, raw):
    response = client.post("/todo", raw, headers=user_headers, content_type="application/json", status=400)
    assert set(response.json) == {"message"}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
def test_body_declared_as_something_other_than_json_answers_415(client, user_headers, content_type):
    response = client.post("/todo", b'{"text": "a"}', headers=user_headers, content_type=content_type, status=415)
    assert set(response.json) == {"message"}


def test_body_over_max_body_bytes_answers_413(make_app, user, user_headers):
    small = TestApp(validator(make_app(max_body_bytes=64)))
    exactly = json.dumps({"text": "x" * 52}).encode()
    assert len(exactly) == 64
    small.post("/todo", exactly, headers=user_headers, content_type="application/json", status=201)
    response = small.post("/todo", exactly + b" ", headers=user_headers, content_type="application/json", status=413)
    assert set(response.json) == {"message"}


# PUT and DELETE on a to-do or an account, and POST /logout, take no body: any field is one
# the route does not take.
BODYLESS_WRITES = [
    ("PUT", "/todo/{todo}", {"complete": False}, "complete"),
    ("DELETE", "/todo/{todo}", {"id": 1}, "id"),
    ("PUT", "/user/{user}", {"admin": False}, "admin"),
    ("DELETE", "/user/{user}", {"public_id": "x"}, "public_id"),
    ("POST", "/logout", {"everywhere": True}, "everywhere"),
]


def bodyless_write(client, admin_headers, user_headers, user, method, path):
    """The URL and headers of a route that takes no body, on a to-do or an account that exists."""
    todo = new_todo(client, user_headers)
    url = path.format(todo=todo["id"], user=user["public_id"])
    return url, (user_headers if url.startswith("/todo") else admin_headers)


@pytest.mark.parametrize("method, path, body, field", BODYLESS_WRITES)
def test_a_field_sent_to_a_route_that_takes_no_body_answers_400_naming_it_and_changes_nothing(
    client, app, admin_headers, user, user_headers, method, path, body, field
):
    url, headers = bodyless_write(client, admin_headers, user_headers, user, method, path)
    before = stored_rows(app)
    response = client.request(url, method=method, body=json.dumps(body).encode(), headers=headers,
                              content_type="application/json", status=400)  # fmt: skip
    assert response.json == {"message": f"Field '{field}' is not accepted here"}
    assert stored_rows(app) == before


@pytest.mark.parametrize("method, path, body, field", BODYLESS_WRITES)
def test_a_body_sent_to_a_route_that_takes_none_declared_other_than_json_answers_415_and_changes_nothing(
    client, app, admin_headers, user, user_headers, method, path, body, field
):
    url, headers = bodyless_write(client, admin_headers, user_headers, user, method, path)
    before = stored_rows(app)
    response = client.request(url, method=method, body=b"complete=false", headers=headers,
                              content_type="application/x-www-form-urlencoded", status=415)  # fmt: skip
    assert set(response.json) == {"message"}
    assert stored_rows(app) == before


@pytest.mark.parametrize("method, path, body, field", BODYLESS_WRITES)
@pytest.mark.parametrize("sent", [b"", b"{}"], ids=["no-body", "empty-object"])
def test_a_route_that_takes_no_body_answers_no_body_or_an_empty_object_as_before(
    client, admin_headers, user, user_headers, method, path, body, field, sent
):
    url, headers = bodyless_write(client, admin_headers, user_headers, user, method, path)
    client.request(url, method=method, body=sent, headers=headers, content_type="application/json", status=200)


# -- everything else --------------------------------------------------------------------


def test_unknown_path_answers_404(client, user_headers):
    for path in ("/index.html", "/nowhere", "/todo/abc", "/todo/1/extra", "/user/a/b"):
        response = client.get(path, headers=user_headers, status=404)
        assert set(response.json) == {"message"}


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("DELETE", "/todo", "GET, HEAD, POST"),
        ("POST", "/todo/1", "DELETE, GET, HEAD, PATCH, PUT"),
        ("DELETE", "/login", "GET, HEAD, POST"),
        ("POST", "/healthz", "GET, HEAD"),
    ],
)
def test_known_path_with_wrong_method_answers_405_with_allow(client, method, path, allow):
    response = client.request(path, method=method, status=405)
    assert response.headers["Allow"] == allow
    assert set(response.json) == {"message"}


def test_head_answers_as_get_without_a_body(client, user_headers):
    new_todo(client, user_headers)
    got = client.get("/todo", headers=user_headers, status=200)
    head = client.head("/todo", headers=user_headers, status=200)
    assert head.body == b""
    assert head.headerlist == got.headerlist


def test_healthz_answers_200_ok_without_token(client):
    response = client.get("/healthz", status=200)
    assert response.json == {"status": "ok"}


@pytest.mark.sqlite_only
def test_healthz_answers_503_when_the_database_does_not_answer(client, app, monkeypatch):
    def broken(conn):
        error = sqlite3.OperationalError("disk I/O error")
        error.sqlite_errorcode = 10  # SQLITE_IOERR, as sqlite3 sets it
        raise error

    monkeypatch.setattr(app.store, "ping", broken)
    response = client.get("/healthz", status=503)
    assert set(response.json) == {"message"}
    assert "disk I/O" not in response.text


def test_unexpected_failure_answers_500_json_with_traceback_in_the_log_only(
    client, app, user_headers, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(app.store, "session_account_with_todos", broken)
    with caplog.at_level(logging.ERROR, logger="todo_wsgi"):
        response = client.get("/todo", headers=user_headers, status=500)
    assert response.json == JSON_ERROR
    assert response.content_type == "application/json"
    assert "secret internal detail" not in response.text
    assert "Traceback" in caplog.text
    assert "RuntimeError: secret internal detail" in caplog.text


def test_mount_prefix_routes_below_it_and_location_includes_it(app, user, user_headers):
    mounted = TestApp(validator(app), extra_environ={"SCRIPT_NAME": "/api"})
    created = mounted.post_json("/api/todo", {"text": "mounted"}, headers=user_headers, status=201)
    location = created.headers["Location"]
    assert location == f"/api/todo/{created.json['todo']['id']}"
    assert mounted.get(location, headers=user_headers, status=200).json["todo"]["text"] == "mounted"
    token = mounted.post("/api/login", headers=basic("alice", USER_PASSWORD), status=200).json["token"]
    assert mounted.get("/api/todo", headers=bearer(token), status=200).json["todos"][0]["text"] == "mounted"


def test_mount_prefix_location_of_a_new_user_includes_it(app, admin, admin_headers):
    mounted = TestApp(validator(app), extra_environ={"SCRIPT_NAME": "/api"})
    created = mounted.post_json(
        "/api/user", {"name": "bob", "password": "bob-password-1"}, headers=admin_headers, status=201
    )
    assert created.headers["Location"] == f"/api/user/{created.json['user']['public_id']}"


def tour(client, admin_headers, user_headers):
    """Every route, answered with success and with each kind of failure."""
    user = new_user(client, admin_headers, "bob", "bob-password-1")
    todo = new_todo(client, user_headers)
    calls = [
        ("GET", "/login", {}, None, 401),
        ("POST", "/login", basic("bob", "bob-password-1"), None, 200),
        ("POST", "/login", basic("bob", "wrong-password"), None, 401),
        ("GET", "/healthz", {}, None, 200),
        ("GET", "/user", admin_headers, None, 200),
        ("GET", "/user", user_headers, None, 403),
        ("GET", "/user", {}, None, 401),
        ("GET", "/user", {"x-access-token": "bad"}, None, 401),
        ("GET", f"/user/{user['public_id']}", admin_headers, None, 200),
        ("GET", "/user/missing", admin_headers, None, 404),
        ("POST", "/user", admin_headers, {"name": "carol", "password": "carol-password"}, 201),
        ("POST", "/user", admin_headers, {"name": "carol", "password": "carol-password"}, 409),
        ("POST", "/user", admin_headers, {"name": "dave", "password": "short"}, 400),
        ("PUT", f"/user/{user['public_id']}", admin_headers, None, 200),
        ("DELETE", f"/user/{user['public_id']}", admin_headers, None, 200),
        ("DELETE", f"/user/{user['public_id']}", admin_headers, None, 404),
        ("GET", "/todo", user_headers, None, 200),
        ("GET", f"/todo/{todo['id']}", user_headers, None, 200),
        ("GET", f"/todo/{todo['id']}", admin_headers, None, 404),
        ("POST", "/todo", user_headers, {"text": "more"}, 201),
        ("POST", "/todo", user_headers, {"text": ""}, 400),
        ("PUT", f"/todo/{todo['id']}", user_headers, None, 200),
        ("DELETE", f"/todo/{todo['id']}", user_headers, None, 200),
        ("DELETE", f"/todo/{todo['id']}", user_headers, None, 404),
        ("GET", "/nowhere", {}, None, 404),
        ("PATCH", "/todo", user_headers, None, 405),
    ]
    responses = []
    for method, path, headers, body, status in calls:
        if body is None:
            responses.append(client.request(path, method=method, headers=headers, status=status))
        else:
            responses.append(client.post_json(path, body, headers=headers, status=status))
    responses.append(client.post("/todo", b"x", headers=user_headers, content_type="text/plain", status=415))
    responses.append(client.post("/todo", b"{", headers=user_headers, content_type="application/json", status=400))
    return responses


def test_every_response_body_is_json(client, admin_headers, user_headers):
    for response in tour(client, admin_headers, user_headers):
        assert response.content_type == "application/json", response
        body = json.loads(response.body)
        assert isinstance(body, dict)
        if response.status_int >= 400:
            assert set(body) == {"message"} and isinstance(body["message"], str), response


def test_no_response_carries_a_password_or_a_hash(client, app, admin_headers, user_headers):
    responses = tour(client, admin_headers, user_headers)
    with app.db.connection() as conn:
        hashes = [row[0] for row in conn.execute("SELECT password_hash FROM users")]
    secrets = [ADMIN_PASSWORD, USER_PASSWORD, "bob-password-1", "carol-password", "pbkdf2", "password_hash"]
    secrets += [part for h in hashes for part in h.split("$")[2:]]
    for response in responses:
        seen = response.body.decode() + str(response.headerlist)
        for secret in secrets:
            assert secret not in seen, (secret, response)


# -- settings, keys and password storage -----------------------------------------------------


def test_two_apps_in_one_process_do_not_share_state(make_app, tmp_path):
    first = make_app(database=str(tmp_path / "first.db"))
    second = make_app(database=str(tmp_path / "second.db"))
    assert first.secret_key != second.secret_key
    add_account(first, "admin", ADMIN_PASSWORD, admin=True)
    one, two = TestApp(validator(first)), TestApp(validator(second))
    token = login(one, "admin", ADMIN_PASSWORD)
    new_todo(one, bearer(token))
    assert two.post("/login", headers=basic("admin", ADMIN_PASSWORD), status=401).json == COULD_NOT_VERIFY
    assert two.get("/todo", headers=bearer(token), status=401).json == TOKEN_INVALID


def test_defaults_are_those_of_api_md():
    settings = todo_wsgi.Settings.resolve(environ={})
    assert (settings.database, settings.secret_key, settings.token_ttl) == ("todo.db", None, 1800)
    assert (settings.pbkdf2_iterations, settings.max_body_bytes, settings.pool_size) == (600_000, 65536, 4)


def test_the_login_window_cors_refresh_ttl_and_audit_retention_defaults_are_those_of_api_md():
    settings = todo_wsgi.Settings.resolve(environ={})
    assert (settings.login_window, settings.cors_origins) == (900, ())
    assert (settings.refresh_ttl, settings.audit_retention_days) == (1_209_600, 365)


@pytest.mark.parametrize(
    "env, value, setting, expected",
    [
        ("TODO_TOKEN_TTL", "60", "token_ttl", 60),
        ("TODO_PBKDF2_ITERATIONS", "1234", "pbkdf2_iterations", 1234),
        ("TODO_MAX_BODY_BYTES", "100", "max_body_bytes", 100),
        ("TODO_SECRET_KEY", "k" * 32, "secret_key", "k" * 32),
        ("TODO_POOL_SIZE", "3", "pool_size", 3),
        ("TODO_LOGIN_MAX_FAILURES_PER_ADDRESS", "7", "login_max_failures_per_address", 7),
        ("TODO_REFRESH_TTL", "3600", "refresh_ttl", 3600),
        ("TODO_AUDIT_RETENTION_DAYS", "30", "audit_retention_days", 30),
    ],
)
def test_settings_are_read_from_environment_variables(make_app, monkeypatch, env, value, setting, expected):
    monkeypatch.setenv(env, value)
    assert getattr(make_app(pbkdf2_iterations=None).settings, setting) == expected


def test_token_ttl_from_the_environment_sets_expires_in(make_app, monkeypatch, clock):
    monkeypatch.setenv("TODO_TOKEN_TTL", "60")
    app = make_app()
    add_account(app, "admin", ADMIN_PASSWORD, admin=True)
    client = TestApp(validator(app))
    assert client.get("/login", headers=basic("admin", ADMIN_PASSWORD), status=200).json["expires_in"] == 60
    token = login(client, "admin", ADMIN_PASSWORD)
    clock.advance(60)
    client.get("/todo", headers=bearer(token), status=401)


def test_database_from_the_environment_is_used(make_app, monkeypatch, tmp_path):
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("TODO_DATABASE", str(path))
    app = make_app(database=None)
    assert app.settings.database == str(path)
    client = TestApp(validator(app))
    client.get("/healthz", status=200)
    assert path.exists()


def test_arguments_win_over_environment_variables(make_app, monkeypatch):
    monkeypatch.setenv("TODO_TOKEN_TTL", "60")
    monkeypatch.setenv("TODO_MAX_BODY_BYTES", "100")
    settings = make_app(token_ttl=120, max_body_bytes=200).settings
    assert (settings.token_ttl, settings.max_body_bytes) == (120, 200)


def test_secret_key_is_generated_once_and_kept_in_the_database(make_app):
    first = make_app()
    add_account(first, "admin", ADMIN_PASSWORD, admin=True)
    token = login(TestApp(validator(first)), "admin", ADMIN_PASSWORD)
    first.close()
    second = make_app()  # a restart on the same file
    assert second.secret_key == first.secret_key
    assert len(second.secret_key.encode()) >= 32
    TestApp(validator(second)).get("/todo", headers=bearer(token), status=200)


def test_secret_key_differs_between_databases(make_app, tmp_path):
    keys = {make_app(database=str(tmp_path / f"{n}.db")).secret_key for n in range(2)}
    assert len(keys) == 2


def test_operator_secret_key_is_used_to_sign(make_app, clock):
    key = "operator-key-" + "x" * 30
    app = make_app(secret_key=key)
    admin = add_account(app, "admin", ADMIN_PASSWORD, admin=True)
    token = login(TestApp(validator(app)), "admin", ADMIN_PASSWORD)
    assert (
        jwt.decode(token, key, algorithms=["HS256"], options={"verify_iat": False})["public_id"] == admin["public_id"]
    )


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_operator_key_shorter_than_32_bytes_is_refused_at_start(make_app, monkeypatch, how):
    short = "k" * 31
    if how == "environment":
        monkeypatch.setenv("TODO_SECRET_KEY", short)
    with pytest.raises(ValueError, match="TODO_SECRET_KEY must be at least 32 bytes"):
        make_app(secret_key=short if how == "argument" else None)


def test_stored_hash_is_pbkdf2_sha256_iterations_salt_hash_with_16_byte_salt(client, app, admin_headers):
    new_user(client, admin_headers, "bob", "bob-password-1")
    with app.db.connection() as conn:
        stored = app.store.get_login(conn, "bob")["password_hash"]
    match = re.fullmatch(r"pbkdf2_sha256\$([0-9]+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", stored)
    assert match is not None, stored
    iterations, salt, digest = int(match[1]), base64.b64decode(match[2]), base64.b64decode(match[3])
    assert iterations == ITERATIONS
    assert len(salt) == 16
    assert digest == hashlib.pbkdf2_hmac("sha256", b"bob-password-1", salt, iterations)


def test_same_password_gets_a_different_salt(app):
    first = todo_wsgi.hash_password("same-password", 1000)
    second = todo_wsgi.hash_password("same-password", 1000)
    assert first != second
    assert app.hasher.verify("same-password", first) and app.hasher.verify("same-password", second)


def test_weaker_stored_hash_is_rehashed_at_login(client, app):
    weak = todo_wsgi.hash_password(USER_PASSWORD, ITERATIONS // 2)
    with app.db.connection() as conn:
        app.store.create_user(conn, None, str(uuid.uuid4()), "alice", weak, False)
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=200)
    with app.db.connection() as conn:
        stored = app.store.get_login(conn, "alice")["password_hash"]
    assert stored != weak
    assert stored.startswith(f"pbkdf2_sha256${ITERATIONS}$")
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=200)
    client.post("/login", headers=basic("alice", "wrong-password"), status=401)


def test_failed_login_does_not_rehash(client, app):
    weak = todo_wsgi.hash_password(USER_PASSWORD, ITERATIONS // 2)
    with app.db.connection() as conn:
        app.store.create_user(conn, None, str(uuid.uuid4()), "alice", weak, False)
    client.post("/login", headers=basic("alice", "wrong-password"), status=401)
    with app.db.connection() as conn:
        assert app.store.get_login(conn, "alice")["password_hash"] == weak


# -- found in review: input that once reached a 500 or a dead end ----------------


def test_a_path_id_of_thousands_of_digits_is_404_not_500(client, user_headers):
    # Python refuses int() of more than 4300 digits; the router must not pass them on.
    response = client.get("/todo/" + "9" * 5000, headers=user_headers, status=404)
    assert response.json == {"message": "No todo found!"}
    client.get("/todo/" + "0" * 5000 + "1", headers=user_headers, status=404)


@pytest.mark.parametrize("name", ["limit", "offset"])
def test_a_query_integer_of_thousands_of_digits_is_400_naming_it(client, user_headers, name):
    response = client.get(f"/todo?{name}=" + "9" * 5000, headers=user_headers, status=400)
    assert f"'{name}'" in response.json["message"]


def test_a_name_with_a_colon_is_refused_since_basic_credentials_cannot_carry_it(client, admin_headers):
    response = client.post_json("/user", {"name": "a:b", "password": "password-1"}, headers=admin_headers, status=400)
    assert response.json == {"message": "Field 'name' must not contain ':'"}
    client.get("/user", headers=admin_headers, status=200)


def test_json_with_more_media_type_parameters_is_accepted(client, user_headers):
    client.post(
        "/todo",
        b'{"text": "x"}',
        headers={**user_headers, "Content-Type": 'application/json; charset="UTF-8"; profile=todo'},
        status=201,
    )


def test_json_declared_in_another_charset_is_415(client, user_headers):
    response = client.post(
        "/todo",
        b'{"text": "x"}',
        headers={**user_headers, "Content-Type": "application/json; charset=latin-1"},
        status=415,
    )
    assert response.json == {"message": "Body must be application/json"}


def test_creating_a_todo_for_an_account_deleted_meanwhile_is_401_not_500(app, client, user, user_headers, monkeypatch):
    create_todo = app.store.create_todo

    def delete_owner_first(conn, caller, text, max_todos, once=None):
        app.store.delete_user(conn, None, user["public_id"])  # the race, forced
        return create_todo(conn, caller, text, max_todos, once)

    monkeypatch.setattr(app.store, "create_todo", delete_owner_first)
    response = client.post_json("/todo", {"text": "x"}, headers=user_headers, status=401)
    assert response.json == {"message": "Token is invalid!"}


def test_an_account_at_its_maximum_of_todos_is_refused_409_and_nothing_is_created(make_app):
    app = make_app(max_todos_per_account=2)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    headers = {"x-access-token": login(client, "alice", USER_PASSWORD)}
    for text in ("one", "two"):
        client.post_json("/todo", {"text": text}, headers=headers, status=201)
    response = client.post_json("/todo", {"text": "three"}, headers=headers, status=409)
    assert response.json == {"message": "Too many todos"}
    assert [t["text"] for t in client.get("/todo", headers=headers, status=200).json["todos"]] == ["one", "two"]
