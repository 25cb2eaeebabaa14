"""Safe concurrent edits (API.md, "Safe retries and concurrent edits"): ETags,
If-Match (412) and If-None-Match (304), RFC 9110 8.8.3 and 13.1."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, basic, login, stored_rows

PRECONDITION_FAILED = {"message": "Precondition failed"}


@pytest.fixture
def todo(client, user_headers):
    return client.post_json("/todo", {"text": "first"}, headers=user_headers, status=201)


def strong(tag: str) -> bool:
    return tag.startswith('"') and tag.endswith('"')


def test_a_todo_answers_a_strong_etag_and_its_creation_the_same(client, user_headers, todo):
    got = client.get(todo.headers["Location"], headers=user_headers, status=200)
    assert strong(got.headers["ETag"]) and got.headers["ETag"] == todo.headers["ETag"]


def test_a_todos_etag_changes_when_it_changes_and_only_then(client, user_headers, todo):
    url, first = todo.headers["Location"], todo.headers["ETag"]
    assert client.patch_json(url, {}, headers=user_headers, status=200).headers["ETag"] == first
    completed = client.put(url, headers=user_headers, status=200).headers["ETag"]
    assert completed != first
    assert client.put(url, headers=user_headers, status=200).headers["ETag"] == completed  # already complete
    edited = client.patch_json(url, {"text": "second"}, headers=user_headers, status=200).headers["ETag"]
    assert edited not in (first, completed)
    assert client.get(url, headers=user_headers, status=200).headers["ETag"] == edited


def test_if_match_with_the_current_etag_lets_the_write_through(client, user_headers, todo):
    url, tag = todo.headers["Location"], todo.headers["ETag"]
    headers = {**user_headers, "If-Match": f'"nope", {tag}'}
    assert client.patch_json(url, {"text": "mine"}, headers=headers, status=200).json["todo"]["text"] == "mine"


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
def test_a_stale_if_match_is_412_with_the_current_etag_and_changes_nothing(client, user_headers, todo, method):
    url, stale = todo.headers["Location"], todo.headers["ETag"]
    current = client.patch_json(url, {"text": "from the phone"}, headers=user_headers, status=200).headers["ETag"]
    headers = {**user_headers, "If-Match": stale}
    body = b'{"text": "from the laptop"}' if method == "PATCH" else b""
    response = client.request(
        url, method=method, body=body, headers={**headers, "Content-Type": "application/json"}, status=412
    )
    assert response.json == PRECONDITION_FAILED
    assert response.headers["ETag"] == current
    assert client.get(url, headers=user_headers, status=200).json["todo"] == {
        "id": todo.json["todo"]["id"],
        "text": "from the phone",
        "complete": False,
    }


def test_a_weak_etag_never_matches_if_match(client, user_headers, todo):
    headers = {**user_headers, "If-Match": "W/" + todo.headers["ETag"]}
    client.delete(todo.headers["Location"], headers=headers, status=412)


def test_if_match_star_matches_any_existing_todo(client, user_headers, todo):
    client.delete(todo.headers["Location"], headers={**user_headers, "If-Match": "*"}, status=200)


@pytest.mark.parametrize("header", ["If-Match", "If-None-Match"])
def test_a_missing_or_another_accounts_todo_is_404_whatever_the_conditions(client, admin_headers, todo, header):
    url = todo.headers["Location"]
    for value in ("*", todo.headers["ETag"]):
        client.get(url, headers={**admin_headers, header: value}, status=404)
        client.delete(url, headers={**admin_headers, header: value}, status=404)
    client.delete("/todo/999999", headers={**admin_headers, header: "*"}, status=404)


def test_if_none_match_answers_304_with_the_etag_and_no_body(client, user_headers, todo):
    url, tag = todo.headers["Location"], todo.headers["ETag"]
    for value in (tag, "W/" + tag, f'"other", {tag}', "*"):
        response = client.get(url, headers={**user_headers, "If-None-Match": value}, status=304)
        assert response.body == b"" and response.headers["ETag"] == tag
        assert "Content-Type" not in response.headers
    client.get(url, headers={**user_headers, "If-None-Match": '"other"'}, status=200)


def test_a_todo_list_page_answers_a_weak_etag_and_304_on_a_match(client, user_headers, todo):
    page = client.get("/todo", headers=user_headers, status=200)
    tag = page.headers["ETag"]
    assert tag.startswith('W/"')
    client.get("/todo", headers={**user_headers, "If-None-Match": tag}, status=304)
    client.put(todo.headers["Location"], headers=user_headers, status=200)
    assert client.get("/todo", headers={**user_headers, "If-None-Match": tag}, status=200).headers["ETag"] != tag


def test_a_page_that_gains_a_next_link_has_another_etag(client, user_headers, todo):
    first = client.get("/todo", params={"limit": 1}, headers=user_headers, status=200)
    assert "Link" not in first.headers
    client.post_json("/todo", {"text": "second"}, headers=user_headers, status=201)
    again = client.get("/todo", params={"limit": 1}, headers={**user_headers, "If-None-Match": first.headers["ETag"]})
    assert again.status_int == 200 and again.json == first.json
    assert 'rel="next"' in again.headers["Link"]


def test_an_account_answers_the_same_strong_etag_at_me_and_at_its_user_url(client, user, user_headers, admin_headers):
    mine = client.get("/me", headers=user_headers, status=200).headers["ETag"]
    theirs = client.get(f"/user/{user['public_id']}", headers=admin_headers, status=200).headers["ETag"]
    assert strong(mine) and mine == theirs
    client.get("/me", headers={**user_headers, "If-None-Match": mine}, status=304)


@pytest.mark.parametrize(
    "change",
    [{"name": "alicia"}, {"admin": True}, {"password": "another-password-1"}],
    ids=["name", "admin", "password"],
)
def test_an_accounts_etag_changes_with_its_name_admin_flag_or_password(client, user, admin_headers, change):
    url = f"/user/{user['public_id']}"
    before = client.get(url, headers=admin_headers, status=200).headers["ETag"]
    after = client.patch_json(url, change, headers=admin_headers, status=200).headers["ETag"]
    assert after != before
    assert client.get(url, headers=admin_headers, status=200).headers["ETag"] == after


def test_an_accounts_etag_stays_when_nothing_changes(client, user, admin_headers):
    url = f"/user/{user['public_id']}"
    before = client.get(url, headers=admin_headers, status=200).headers["ETag"]
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=200)
    assert client.patch_json(url, {}, headers=admin_headers, status=200).headers["ETag"] == before


def test_a_rename_from_a_stale_page_is_412_and_changes_nothing(client, user, admin, admin_headers):
    other_admin = {"x-access-token": login(client, "admin", ADMIN_PASSWORD)}
    url = f"/user/{user['public_id']}"
    stale = client.get(url, headers=admin_headers, status=200).headers["ETag"]
    reset = client.patch_json(url, {"password": "reset-password-1"}, headers=other_admin, status=200)
    response = client.patch_json(url, {"name": "renamed"}, headers={**admin_headers, "If-Match": stale}, status=412)
    assert response.json == PRECONDITION_FAILED and response.headers["ETag"] == reset.headers["ETag"]
    assert client.get(url, headers=admin_headers, status=200).json["user"]["name"] == "alice"
    client.put(url, headers={**admin_headers, "If-Match": stale}, status=412)
    client.delete(url, headers={**admin_headers, "If-Match": stale}, status=412)
    client.delete(url, headers={**admin_headers, "If-Match": reset.headers["ETag"]}, status=200)


def test_an_accounts_creation_and_promotion_answer_the_etag_its_url_then_answers(client, admin_headers):
    created = client.post_json(
        "/user", {"name": "bob", "password": "bob-password-1"}, headers=admin_headers, status=201
    )
    url = created.headers["Location"]
    assert strong(created.headers["ETag"])
    assert client.get(url, headers=admin_headers, status=200).headers["ETag"] == created.headers["ETag"]
    promoted = client.put(url, headers=admin_headers, status=200).headers["ETag"]
    assert promoted != created.headers["ETag"]
    assert client.get(url, headers=admin_headers, status=200).headers["ETag"] == promoted


def test_if_none_match_on_an_account_answers_304_with_the_etag_and_no_body(client, user, admin_headers):
    url = f"/user/{user['public_id']}"
    tag = client.get(url, headers=admin_headers, status=200).headers["ETag"]
    response = client.get(url, headers={**admin_headers, "If-None-Match": tag}, status=304)
    assert response.body == b"" and response.headers["ETag"] == tag
    client.get(url, headers={**admin_headers, "If-None-Match": '"other"'}, status=200)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_a_missing_account_is_404_whatever_the_conditions(client, app, admin_headers, method):
    before = stored_rows(app)
    for value in ("*", '"any"'):
        response = client.request(
            f"/user/{uuid.uuid4()}",
            method=method,
            body=b"{}" if method == "PATCH" else b"",
            headers={**admin_headers, "If-Match": value, "Content-Type": "application/json"},
            status=404,
        )
        assert response.json == {"message": "No user found!"}
    assert stored_rows(app) == before


def test_an_account_list_page_answers_a_weak_etag_and_304_on_a_match(client, admin_headers, user):
    tag = client.get("/user", headers=admin_headers, status=200).headers["ETag"]
    assert tag.startswith('W/"')
    client.get("/user", headers={**admin_headers, "If-None-Match": tag}, status=304)


def test_writes_without_if_match_are_unconditional(client, user_headers, todo):
    client.patch_json(todo.headers["Location"], {"text": "x"}, headers=user_headers, status=200)
    client.delete(todo.headers["Location"], headers=user_headers, status=200)
