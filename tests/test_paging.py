"""Beyond the seed, paging: limit, offset, Link rel="next" and complete= on the lists (API.md)."""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, urlsplit
from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.conftest import USER_PASSWORD, add_account, login, store_caller

LINK = re.compile(r'<(?P<url>[^>]*)>; rel="next"')


def add_todos(app, owner_name, count, complete_every=0):
    """Insert ``count`` to-dos straight into the store; every n-th one complete."""
    owner = store_caller(app, owner_name)
    with app.db.connection() as conn:
        ids = []
        for i in range(count):
            todo = app.store.create_todo(conn, owner, f"todo {i}", app.settings.max_todos_per_account)
            if complete_every and i % complete_every == 0:
                app.store.update_todo(conn, owner, todo["id"], complete=True)
            ids.append(todo["id"])
    return ids


def next_url(response):
    """The URL of Link rel="next", or None when there is no such header."""
    link = response.headers.get("Link")
    if link is None:
        return None
    found = LINK.fullmatch(link)
    assert found, f"malformed Link header {link!r}"
    return found["url"]


def walk(client, url, headers, key):
    """Follow Link rel="next" from ``url``; return every item seen, in order."""
    seen = []
    while url is not None:
        response = client.get(url, headers=headers, status=200)
        seen.extend(response.json[key])
        url = next_url(response)
    return seen


# -- GET /todo --------------------------------------------------------------------------


def test_todo_list_default_page_is_100_in_the_old_shape(client, app, user, user_headers):
    ids = add_todos(app, "alice", 101)
    response = client.get("/todo", headers=user_headers, status=200)
    assert list(response.json) == ["todos"]
    assert [t["id"] for t in response.json["todos"]] == ids[:100]
    assert next_url(response) == "/todo?limit=100&offset=100"


def test_todo_list_of_100_or_fewer_has_no_link(client, app, user, user_headers):
    add_todos(app, "alice", 100)
    response = client.get("/todo", headers=user_headers, status=200)
    assert len(response.json["todos"]) == 100
    assert "Link" not in response.headers


def test_todo_list_takes_limit_and_offset(client, app, user, user_headers):
    ids = add_todos(app, "alice", 10)
    response = client.get("/todo?limit=3&offset=4", headers=user_headers, status=200)
    assert [t["id"] for t in response.json["todos"]] == ids[4:7]
    assert next_url(response) == "/todo?limit=3&offset=7"


def test_todo_list_links_next_exactly_when_more_remain(client, app, user, user_headers):
    add_todos(app, "alice", 6)
    assert next_url(client.get("/todo?limit=3&offset=2", headers=user_headers, status=200)) is not None
    assert next_url(client.get("/todo?limit=3&offset=3", headers=user_headers, status=200)) is None
    assert next_url(client.get("/todo?limit=6", headers=user_headers, status=200)) is None
    assert next_url(client.get("/todo?limit=5", headers=user_headers, status=200)) is not None


def test_todo_list_offset_past_the_end_is_an_empty_page(client, app, user, user_headers):
    add_todos(app, "alice", 2)
    response = client.get("/todo?offset=5", headers=user_headers, status=200)
    assert response.json == {"todos": []}
    assert "Link" not in response.headers


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 1000])
def test_following_todo_links_walks_every_todo_exactly_once(client, app, user, user_headers, limit):
    ids = add_todos(app, "alice", 7)
    seen = walk(client, f"/todo?limit={limit}", user_headers, "todos")
    assert [t["id"] for t in seen] == ids


def test_todo_list_limit_accepts_1_and_1000(client, app, user, user_headers):
    add_todos(app, "alice", 2)
    assert len(client.get("/todo?limit=1", headers=user_headers, status=200).json["todos"]) == 1
    assert len(client.get("/todo?limit=1000", headers=user_headers, status=200).json["todos"]) == 2


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("limit=-1", "limit"),
        ("limit=2.5", "limit"),
        ("limit=%EF%BC%91", "limit"),  # a fullwidth digit one
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("offset=99999999999999999999", "offset"),
        ("complete=yes", "complete"),
        ("complete=True", "complete"),
        ("complete=", "complete"),
        ("limit=5&limit=6", "limit"),
        ("offset=1&offset=1", "offset"),
        ("complete=true&complete=false", "complete"),
    ],
)
def test_todo_list_refuses_a_bad_paging_value_naming_the_parameter(client, user_headers, query, name):
    response = client.get(f"/todo?{query}", headers=user_headers, status=400)
    assert f"'{name}'" in response.json["message"]


def test_todo_list_complete_true_lists_only_complete_ones(client, app, user, user_headers):
    ids = add_todos(app, "alice", 7, complete_every=3)  # 0, 3, 6 complete
    response = client.get("/todo?complete=true", headers=user_headers, status=200)
    assert [t["id"] for t in response.json["todos"]] == [ids[0], ids[3], ids[6]]
    assert all(t["complete"] for t in response.json["todos"])


def test_todo_list_complete_false_lists_only_incomplete_ones(client, app, user, user_headers):
    ids = add_todos(app, "alice", 7, complete_every=3)
    response = client.get("/todo?complete=false", headers=user_headers, status=200)
    assert [t["id"] for t in response.json["todos"]] == [ids[i] for i in (1, 2, 4, 5)]


@pytest.mark.parametrize("complete", ["true", "false"])
def test_todo_list_link_keeps_the_complete_filter(client, app, user, user_headers, complete):
    ids = add_todos(app, "alice", 9, complete_every=2)  # 0, 2, 4, 6, 8 complete
    first = client.get(f"/todo?complete={complete}&limit=2", headers=user_headers, status=200)
    assert parse_qs(urlsplit(next_url(first)).query) == {"limit": ["2"], "offset": ["2"], "complete": [complete]}
    seen = walk(client, f"/todo?complete={complete}&limit=2", user_headers, "todos")
    wanted = [i for n, i in enumerate(ids) if (n % 2 == 0) == (complete == "true")]
    assert [t["id"] for t in seen] == wanted


def test_todo_list_pages_only_the_accounts_own(client, app, admin, user, user_headers):
    add_todos(app, "admin", 5)
    mine = add_todos(app, "alice", 3)
    assert [t["id"] for t in walk(client, "/todo?limit=2", user_headers, "todos")] == mine


@pytest.fixture
def mounted(app, user):
    """A client whose requests arrive below SCRIPT_NAME /api, and alice's token."""
    client = TestApp(validator(app), extra_environ={"SCRIPT_NAME": "/api"})
    return client, {"x-access-token": login(client, "alice", USER_PASSWORD)}


def test_todo_list_link_includes_the_mount_prefix(mounted):
    client, headers = mounted
    for _ in range(3):
        client.post_json("/todo", {"text": "x"}, headers=headers, status=201)
    response = client.get("/todo?limit=2&complete=false", headers=headers, status=200)
    assert next_url(response) == "/api/todo?limit=2&offset=2&complete=false"


# -- GET /user ----------------------------------------------------------------------------


def add_users(app, count):
    return [add_account(app, f"user{i:02d}-{uuid.uuid4().hex[:6]}", "password-1234")["public_id"] for i in range(count)]


def test_user_list_default_page_is_100(client, app, admin, admin_headers):
    with app.db.connection() as conn:
        for i in range(100):  # admin + 100 = 101 accounts; a cheap hash, inserted directly
            app.store.create_user(conn, None, str(uuid.uuid4()), f"user{i}", "unused-hash", False)
    response = client.get("/user", headers=admin_headers, status=200)
    assert list(response.json) == ["users"]
    assert len(response.json["users"]) == 100
    assert next_url(response) == "/user?limit=100&offset=100"
    last = client.get(next_url(response), headers=admin_headers, status=200)
    assert [u["name"] for u in last.json["users"]] == ["user99"]
    assert "Link" not in last.headers


def test_user_list_takes_limit_and_offset(client, app, admin, admin_headers):
    ids = [admin["public_id"], *add_users(app, 5)]
    response = client.get("/user?limit=2&offset=3", headers=admin_headers, status=200)
    assert [u["public_id"] for u in response.json["users"]] == ids[3:5]
    assert next_url(response) == "/user?limit=2&offset=5"


@pytest.mark.parametrize("limit", [1, 2, 6])
def test_following_user_links_walks_every_account_exactly_once(client, app, admin, admin_headers, limit):
    ids = [admin["public_id"], *add_users(app, 5)]
    seen = walk(client, f"/user?limit={limit}", admin_headers, "users")
    assert [u["public_id"] for u in seen] == ids


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("limit=1&limit=2", "limit"),
    ],
)
def test_user_list_refuses_a_bad_paging_value_naming_the_parameter(client, admin_headers, query, name):
    response = client.get(f"/user?{query}", headers=admin_headers, status=400)
    assert f"'{name}'" in response.json["message"]


@pytest.mark.parametrize("how", ["logout", "account deleted"])
def test_todo_list_answers_a_refused_token_401_before_a_bad_paging_value(
    client, user, user_headers, admin_headers, how
):
    if how == "logout":
        client.post("/logout", headers=user_headers, status=200)
    else:
        client.delete(f"/user/{user['public_id']}", headers=admin_headers, status=200)
    response = client.get("/todo?limit=0", headers=user_headers, status=401)
    assert response.json == {"message": "Token is invalid!"}
    client.get("/todo?limit=0", status=401)  # no token at all
