"""``python -m todo_wsgi copy-to URL``: the move from SQLite to PostgreSQL.

The source is this test's database (so the command runs from either
backend); the target is a new, empty PostgreSQL database (or, once, a SQLite
file). What was true before the move must be true after it, tokens included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

import pytest
from webtest import TestApp

import todo_wsgi
import todo_wsgi_cli
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, add_account, basic, login


@pytest.fixture
def target(postgres_cluster: Any) -> Iterator[str]:
    """A new, empty PostgreSQL database that no server has opened yet."""
    url = postgres_cluster.create_database(migrated=False)
    try:
        yield url
    finally:
        postgres_cluster.drop_database(url)


@pytest.fixture
def world(
    client: TestApp, app: todo_wsgi.TodoApp, admin: dict[str, Any], user: dict[str, Any], user_headers: dict[str, str]
) -> dict[str, Any]:
    """Accounts, to-dos (one done, one deleted), a logged-out token and a password change, before the move."""
    for text in ("first", "second 🦆", "third"):
        client.post_json("/todo", {"text": text}, headers=user_headers, status=201)
    client.put("/todo/2", headers=user_headers, status=200)
    last = client.post_json("/todo", {"text": "deleted"}, headers=user_headers, status=201).json["todo"]["id"]
    client.delete(f"/todo/{last}", headers=user_headers, status=200)
    add_account(app, "bob", "bob-password-1")
    logged_out = {"x-access-token": login(client, "bob", "bob-password-1")}
    client.post("/logout", headers=logged_out, status=200)
    changed = {"x-access-token": login(client, "bob", "bob-password-1")}
    change = {"old_password": "bob-password-1", "new_password": "bob-password-2"}
    client.put_json("/me/password", change, headers=changed, status=200)
    return {
        "alice": user_headers,
        "logged_out": logged_out,
        "before_change": changed,
        "todos": client.get("/todo", headers=user_headers, status=200).json["todos"],
        "users": client.get("/user", headers={"x-access-token": login(client, "admin", ADMIN_PASSWORD)}).json,
        "deleted_id": last,
    }


def copy_to(database: str, url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the command as an operator would (in-process): (exit status, stdout, stderr)."""
    status = todo_wsgi_cli.main(["--database", database, "copy-to", url])
    out, err = capsys.readouterr()
    return status, out, err


def test_copy_to_moves_everything_so_tokens_issued_before_work_after(
    database, world, target, make_app: Callable[..., todo_wsgi.TodoApp], capsys
):
    status, out, err = copy_to(database, target, capsys)
    assert (status, err) == (0, "")
    assert "copied 3 accounts, 3 to-dos, the signing key, 2 sessions, 0 spent refresh tokens, " in out
    moved = TestApp(validator(make_app(database=target)))
    assert moved.get("/todo", headers=world["alice"], status=200).json["todos"] == world["todos"]
    assert moved.get("/me", headers=world["alice"], status=200).json["user"]["name"] == "alice"
    assert moved.get("/me", headers=world["logged_out"], status=401).json == {"message": "Token is invalid!"}
    assert moved.get("/me", headers=world["before_change"], status=401).json == {"message": "Token is invalid!"}
    admin = {"x-access-token": login(moved, "admin", ADMIN_PASSWORD)}
    assert moved.get("/user", headers=admin, status=200).json == world["users"]
    moved.post("/login", headers=basic("bob", "bob-password-2"), status=200)


def test_copy_to_carries_the_audit_trail_and_refresh_tokens(database, world, target, make_app, client, capsys):
    pair = client.post("/login", headers=basic("alice", USER_PASSWORD), status=200).json
    admin = {"x-access-token": login(client, "admin", ADMIN_PASSWORD)}
    before = client.get("/audit", params={"limit": 1000}, headers=admin, status=200).json["events"]
    assert copy_to(database, target, capsys)[0] == 0
    moved = TestApp(validator(make_app(database=target)))
    assert moved.get("/audit", params={"limit": 1000}, headers=admin, status=200).json["events"] == before
    moved.post_json("/refresh", {"refresh_token": pair["refresh_token"]}, status=200)


def test_copy_to_carries_spent_refresh_tokens_so_a_replay_after_the_move_ends_the_session(
    database, world, target, make_app, client, capsys
):
    first = client.post("/login", headers=basic("alice", USER_PASSWORD), status=200).json
    second = client.post_json("/refresh", {"refresh_token": first["refresh_token"]}, status=200).json
    status, out, _ = copy_to(database, target, capsys)
    assert status == 0 and " 3 sessions, 1 spent refresh tokens, " in out
    moved = TestApp(validator(make_app(database=target)))
    moved.post_json("/refresh", {"refresh_token": first["refresh_token"]}, status=401)
    moved.post_json("/refresh", {"refresh_token": second["refresh_token"]}, status=401)
    moved.get("/me", headers={"Authorization": f"Bearer {second['token']}"}, status=401)


def test_copy_to_hands_out_no_used_id_again(database, world, target, make_app, capsys):
    assert copy_to(database, target, capsys)[0] == 0
    moved = TestApp(validator(make_app(database=target)))
    created = moved.post_json("/todo", {"text": "after the move"}, headers=world["alice"], status=201).json
    assert created["todo"]["id"] == world["deleted_id"] + 1
    admin = {"x-access-token": login(moved, "admin", ADMIN_PASSWORD)}
    moved.post_json("/user", {"name": "carol", "password": USER_PASSWORD}, headers=admin, status=201)


def test_copy_to_refuses_a_database_that_is_not_empty_and_changes_nothing(database, world, target, make_app, capsys):
    occupied = make_app(database=target)
    add_account(occupied, "squatter", USER_PASSWORD)
    status, _out, err = copy_to(database, target, capsys)
    assert status == 1
    assert err == "error: the target database is not empty: it already holds accounts or to-dos\n"
    with occupied.db.connection() as conn:
        assert [u["name"] for u in occupied.store.list_users(conn)] == ["squatter"]


def test_copy_to_an_unreachable_database_exits_1_saying_why(database, app, capsys):
    status, _, err = copy_to(database, "postgresql://nobody:secret@127.0.0.1:1/nothing", capsys)
    assert status == 1
    assert err.startswith("error: cannot use the PostgreSQL database: ") and "secret" not in err


def test_copy_to_a_sqlite_file_copies_too(database, world, make_app, tmp_path: Path, capsys):
    file = str(tmp_path / "copy.db")
    assert copy_to(database, file, capsys)[0] == 0
    moved = TestApp(validator(make_app(database=file)))
    assert moved.get("/todo", headers=world["alice"], status=200).json["todos"] == world["todos"]
    created = moved.post_json("/todo", {"text": "after"}, headers=world["alice"], status=201).json
    assert created["todo"]["id"] == world["deleted_id"] + 1


def test_copy_to_keeps_every_etag(database, world, target, make_app, client, capsys):
    # Bob's password changed once before the move: his account's version counts it.
    admin = {"x-access-token": login(client, "admin", ADMIN_PASSWORD)}
    bob = next(user for user in world["users"]["users"] if user["name"] == "bob")
    tags = {
        path: client.get(path, headers=headers, status=200).headers["ETag"]
        for path, headers in (
            (f"/user/{bob['public_id']}", admin),
            ("/me", world["alice"]),
            ("/todo/2", world["alice"]),
            ("/todo", world["alice"]),
        )
    }
    assert copy_to(database, target, capsys)[0] == 0
    moved = TestApp(validator(make_app(database=target)))
    for path, tag in tags.items():
        headers = admin if path.startswith("/user/") else world["alice"]
        moved.get(path, headers={**headers, "If-None-Match": tag}, status=304)


def test_a_create_retried_after_the_move_is_answered_once(database, world, target, make_app, client, capsys):
    retried = {**world["alice"], "Idempotency-Key": "move-1"}
    first = client.post_json("/todo", {"text": "before the move"}, headers=retried, status=201)
    assert copy_to(database, target, capsys)[0] == 0
    moved = TestApp(validator(make_app(database=target)))
    again = moved.post_json("/todo", {"text": "before the move"}, headers=retried, status=201)
    assert (again.json, again.headers["Location"]) == (first.json, first.headers["Location"])
    assert len(moved.get("/todo", headers=world["alice"], status=200).json["todos"]) == len(world["todos"]) + 1
