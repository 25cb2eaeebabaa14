"""Promises where SQLite and PostgreSQL differ underneath, held the same on both.

PostgreSQL text cannot hold NUL, its integers stop at 2**63 - 1, and its
names compare by collation: each test here runs on both backends (the
``database`` fixture) and pins the answer API.md gives.
"""

from __future__ import annotations

import pytest

import todo_wsgi
import todo_wsgi_cli
from tests.conftest import USER_PASSWORD, basic

MAX_ID = 2**63 - 1


@pytest.mark.parametrize(
    "text",
    [
        "🦆 astral, 𝄞 and 😀",
        "e\u0301 vs \u00e9, and a zero-width joiner: 👩\u200d💻",
        "שלום right to left \u202e reversed",
        "line\u2028separator and \ufeff byte order mark and \uffff noncharacter",
        "𝄞" * 500,
        "'; DROP TABLE todos; -- \\ %s $1 ?",
        "".join(map(chr, range(1, 32))) + '\x7f"\\/ and [1, "json"]',
    ],
    ids=["astral", "combining", "bidi", "separators", "500-astral", "sql-looking", "controls-and-escapes"],
)
def test_any_text_but_nul_is_stored_and_returned_exactly(client, user_headers, text):
    created = client.post_json("/todo", {"text": text}, headers=user_headers, status=201).json["todo"]
    assert client.get(f"/todo/{created['id']}", headers=user_headers, status=200).json["todo"]["text"] == text
    assert client.get("/todo", headers=user_headers, status=200).json["todos"] == [created]
    patched = client.patch_json(f"/todo/{created['id']}", {"text": text[::-1]}, headers=user_headers, status=200)
    assert patched.json["todo"]["text"] == text[::-1]


def test_a_login_name_with_nul_is_refused_as_an_unknown_name_and_throttled(client, user):
    for _ in range(5):
        response = client.post("/login", headers=basic("ali\x00ce", USER_PASSWORD), status=401)
        assert response.json == {"message": "Could not verify"}
    client.post("/login", headers=basic("ali\x00ce", USER_PASSWORD), status=429)
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=200)  # another name's count


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_a_public_id_with_nul_is_no_user(client, admin_headers, method):
    response = client.request(
        "/user/abc%00def", method=method, headers=admin_headers, body=b"{}", content_type="application/json",
        status=404,
    )  # fmt: skip
    assert response.json == {"message": "No user found!"}


def test_the_largest_id_is_answered_as_missing(client, user_headers):
    for method in ("GET", "PUT", "DELETE"):
        client.request(f"/todo/{MAX_ID}", method=method, headers=user_headers, status=404)


def test_the_largest_offset_answers_an_empty_page(client, admin_headers, user_headers):
    client.post_json("/todo", {"text": "one"}, headers=user_headers, status=201)
    assert client.get(f"/todo?offset={MAX_ID}", headers=user_headers, status=200).json == {"todos": []}
    assert client.get(f"/user?offset={MAX_ID}", headers=admin_headers, status=200).json == {"users": []}


@pytest.mark.parametrize(
    ("first", "second"),
    [("Alice", "alice"), ("\u00e9mile", "e\u0301mile"), ("straße", "strasse"), ("root", "ｒｏｏｔ"), ("ﬁle", "file")],
)
def test_names_equal_by_their_nfkc_case_fold_are_one_name(client, database, admin_headers, first, second):
    client.post_json("/user", {"name": first, "password": USER_PASSWORD}, headers=admin_headers, status=201)
    before = client.get("/user", headers=admin_headers, status=200).json
    response = client.post_json("/user", {"name": second, "password": USER_PASSWORD}, headers=admin_headers, status=409)
    assert response.json == {"message": "Name already taken!"}
    assert client.get("/user", headers=admin_headers, status=200).json == before


def test_check_on_postgresql_reports_a_to_do_whose_owner_is_gone(database, app, admin, capsys):
    if not database.startswith("postgresql"):
        pytest.skip("PostgreSQL's check; SQLite's is in test_cli_ops")
    with app.db.connection() as conn, conn.transaction():
        conn.execute(
            "SET LOCAL session_replication_role = replica"
        )  # foreign keys not enforced, as after a bad restore
        conn.execute("INSERT INTO todos (owner_id, text) VALUES (4242, 'orphan')")
    assert todo_wsgi_cli.main(["--database", database, "check"]) == 1
    out = capsys.readouterr().out
    assert "problem: todos row 1 refers to a missing users row" in out
    assert "integrity: 1 problem(s)" in out


def test_the_schema_version_is_the_same_on_both_backends(app):
    import store

    with app.db.connection() as conn:
        assert app.store.schema_version(conn) == app.store.SCHEMA_VERSION == store.SCHEMA_VERSION


@pytest.mark.parametrize("path", ["/todo", "/todo/1", "/me"])
def test_a_signed_token_whose_public_id_holds_nul_is_invalid(client, app, path):
    token = todo_wsgi.issue_token(app, "abc\x00def", "session\x00id", app.clock())
    response = client.get(path, headers={"x-access-token": token}, status=401)
    assert response.json == {"message": "Token is invalid!"}


@pytest.mark.parametrize("step", ["get_or_create_secret", "load_web_files"])
def test_an_app_that_fails_to_start_leaves_no_database_open(database, monkeypatch, step):
    # On PostgreSQL an open Database is a pool (a connection, worker threads): a start that
    # fails after opening it (the key's read refused, the browser client's files unreadable)
    # must not leave it behind in a process that goes on (a test run, a command that reports it).
    backend = todo_wsgi.backend_for(database)
    opened: list[object] = []
    closed: list[object] = []
    real_init, real_close = backend.Database.__init__, backend.Database.close

    def init(db: object, *args: object) -> None:
        real_init(db, *args)
        opened.append(db)

    def close(db: object) -> None:
        closed.append(db)
        real_close(db)

    def fail(*args: object) -> None:
        raise OSError(f"{step} failed")

    monkeypatch.setattr(backend.Database, "__init__", init)
    monkeypatch.setattr(backend.Database, "close", close)
    monkeypatch.setattr(backend if step == "get_or_create_secret" else todo_wsgi, step, fail)
    with pytest.raises(OSError, match=f"{step} failed"):
        todo_wsgi.create_app(database=database, pbkdf2_iterations=1000, web_client=True)
    assert closed == opened
    assert all(db.pool.closed for db in opened if database.startswith("postgresql"))  # type: ignore[attr-defined]
