"""Secrets at rest and the smaller holes (issue 13, points 4 and 6; API.md "Authentication",
"Everything else").

Files are private whatever the umask; tokens from the future or living past
``token_ttl`` are refused; every answer says ``Cache-Control: no-store`` and
every refused token says why; zero-padded numbers are read; a failed login
costs the same for an unknown name and an old hash; logs carry the client
address and never a password; failed logins are counted per address across
names (IPv6 by /64); a busy hasher turns a login away at once, counting
nothing. Client addresses are REMOTE_ADDR, set per request through WebTest's
``extra_environ``; time moves with the fake clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import jwt
import pytest
from webtest import TestApp

import todo_wsgi
from router import Router
from tests.conftest import (
    ADMIN_PASSWORD,
    ITERATIONS,
    USER_PASSWORD,
    add_account,
    basic,
    challenge,
    login,
    session_of,
)

HERE, THERE = "203.0.113.7", "198.51.100.9"
ANOTHER_KEY = "another-key-that-is-long-enough-for-hs256-0123456789"
INVALID = {"message": "Token is invalid!"}


def attempt(client: TestApp, name: str, password: str, address: str = HERE, status: int | None = None) -> Any:
    """POST /login with Basic credentials from ``address``."""
    return client.post("/login", headers=basic(name, password), extra_environ={"REMOTE_ADDR": address}, status=status)


def mode(path: Any) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


# -- point 4: secrets at rest ------------------------------------------------------------


@pytest.mark.sqlite_only
def test_the_database_file_and_its_journal_files_are_0600_whatever_the_umask(make_app, database):
    with umask(0):
        app = make_app()
        add_account(app, "alice", USER_PASSWORD)  # a write: the -wal and -shm exist while the app is open
    for suffix in ("", "-wal", "-shm"):
        assert mode(database + suffix) == 0o600, suffix


@pytest.mark.sqlite_only
def test_a_backup_is_0600_whatever_the_umask(make_app, database, run_command, tmp_path):
    add_account(make_app(), "alice", USER_PASSWORD)
    target = tmp_path / "backup.db"
    with umask(0):
        result = run_command(database, "backup", str(target))
    assert result.returncode == 0, result.stderr
    assert mode(target) == 0o600
    with contextlib.closing(sqlite3.connect(target)) as copy:
        assert copy.execute("SELECT name FROM users").fetchall() == [("alice",)]


def signed(app: todo_wsgi.TodoApp, sid: str, public_id: str, iat: float, exp: float) -> dict[str, str]:
    """A token signed with the app's own key (as a stolen key or a skewed server would sign it)."""
    claims = {"public_id": public_id, "sid": sid, "iat": int(iat), "exp": int(exp)}
    return {"x-access-token": jwt.encode(claims, app.secret_key, algorithm="HS256")}


@pytest.fixture
def session(app, client, user) -> tuple[str, str]:
    """(sid, public_id) of a real session of alice's."""
    return session_of(login(client, "alice", USER_PASSWORD)), user["public_id"]


def test_a_token_whose_iat_is_more_than_60_s_ahead_is_refused_as_malformed(app, client, session, clock):
    ahead = clock() + 61
    response = client.get("/me", headers=signed(app, *session, ahead, ahead + 600), status=401)
    assert response.json == INVALID
    assert response.headers["WWW-Authenticate"] == challenge("malformed")


def test_a_token_whose_iat_is_59_s_ahead_is_accepted(app, client, session, clock):
    ahead = clock() + 59
    client.get("/me", headers=signed(app, *session, ahead, ahead + 600), status=200)


def test_a_token_whose_lifetime_exceeds_token_ttl_is_refused_as_malformed(app, client, session, clock):
    now, ttl = clock(), app.settings.token_ttl
    client.get("/me", headers=signed(app, *session, now, now + ttl), status=200)
    response = client.get("/me", headers=signed(app, *session, now, now + ttl + 1), status=401)
    assert response.json == INVALID
    assert response.headers["WWW-Authenticate"] == challenge("malformed")


# -- point 6: Cache-Control: no-store on every answer -------------------------------------

ORIGIN = "https://app.example"


def transient_error(app: todo_wsgi.TodoApp) -> Exception:
    """An error the app's store classes as "database unavailable"."""
    if app.store.BACKEND == "sqlite":
        error = sqlite3.OperationalError("database is locked")
        error.sqlite_errorcode = 5  # type: ignore[attr-defined]  # SQLITE_BUSY, as sqlite3 sets it
        return error
    import psycopg

    return psycopg.OperationalError("server closed the connection unexpectedly")


def raising(error: Exception) -> Callable[..., Any]:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise error

    return broken


@contextlib.contextmanager
def busy_slot(wait: float, predict: bool = False) -> Iterator[None]:
    raise todo_wsgi.too_busy()
    yield  # a generator, as Hasher.slot is


# Each row: how to get one status out of the app. ``t`` is alice's token headers.
def unchanged(client: TestApp, path: str, token: dict[str, str]) -> Any:
    """A GET of ``path`` naming the ETag it just answered: 304."""
    tag = client.get(path, headers=token, status=200).headers["ETag"]
    return client.get(path, headers={**token, "If-None-Match": tag}, status=304)


def new_todo(client: TestApp, token: dict[str, str]) -> str:
    """The path of a new to-do."""
    return str(client.post_json("/todo", {"text": "x"}, headers=token, status=201).headers["Location"])


ANSWERS: dict[str, Callable[[TestApp, todo_wsgi.TodoApp, dict[str, str], Any], Any]] = {
    "200": lambda c, app, t, mp: c.get("/todo", headers=t, status=200),
    "201": lambda c, app, t, mp: c.post_json("/todo", {"text": "x"}, headers=t, status=201),
    "204 preflight": lambda c, app, t, mp: c.options(
        "/todo", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}, status=204
    ),
    "200 HEAD": lambda c, app, t, mp: c.head("/todo", headers=t, status=200),
    "200 openapi": lambda c, app, t, mp: c.get("/openapi.json", status=200),
    "304 list": lambda c, app, t, mp: unchanged(c, "/todo", t),
    "304 to-do": lambda c, app, t, mp: unchanged(c, new_todo(c, t), t),
    "412": lambda c, app, t, mp: c.put(new_todo(c, t), headers={**t, "If-Match": '"stale"'}, status=412),
    "400": lambda c, app, t, mp: c.post_json("/todo", {"text": 1}, headers=t, status=400),
    "401": lambda c, app, t, mp: c.get("/todo", status=401),
    "403": lambda c, app, t, mp: c.get("/user", headers=t, status=403),
    "404": lambda c, app, t, mp: c.get("/todo/999", headers=t, status=404),
    "405": lambda c, app, t, mp: c.delete("/todo", headers=t, status=405),
    "413": lambda c, app, t, mp: c.post(
        "/todo", "x" * (app.settings.max_body_bytes + 1), headers=t, content_type="application/json", status=413
    ),
    "415": lambda c, app, t, mp: c.post("/todo", "text=x", headers=t, content_type="text/plain", status=415),
    "429": lambda c, app, t, mp: (
        attempt(c, "alice", "wrong-password", status=401),
        attempt(c, "alice", "wrong-password", status=429),
    )[-1],
    "500": lambda c, app, t, mp: (
        mp.setattr(app.store, "session_account_with_todos", raising(RuntimeError("boom"))),
        c.get("/todo", headers=t, status=500),
    )[-1],
    "503 database": lambda c, app, t, mp: (
        mp.setattr(app.store, "ping", raising(transient_error(app))),
        c.get("/healthz", status=503),
    )[-1],
    "503 hasher busy": lambda c, app, t, mp: (
        mp.setattr(app.hasher, "slot", busy_slot),
        c.post("/login", headers=basic("alice", USER_PASSWORD), status=503),
    )[-1],
}


@pytest.mark.parametrize("answer", ANSWERS)
def test_every_answer_carries_cache_control_no_store(make_app, monkeypatch, answer):
    app = make_app(cors_origins=ORIGIN, login_max_failures=1)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    token = {"x-access-token": login(client, "alice", USER_PASSWORD)}
    response = ANSWERS[answer](client, app, token, monkeypatch)
    assert str(response.status_int) == answer.split()[0]
    assert response.headers.getall("Cache-Control") == ["no-store"]


@pytest.mark.parametrize("cors", [False, True])
def test_the_edge_never_changes_the_headers_a_handler_returns(make_app, cors):
    app = make_app(cors_origins=ORIGIN if cors else None)
    returned = [("Content-Type", "text/plain")]
    app.router = Router((("GET", "/fixed", lambda req: (200, b"fixed", returned)),))
    client = TestApp(validator(app))
    for _ in range(3):
        response = client.get("/fixed", headers={"Origin": ORIGIN}, status=200)
        assert response.headers.getall("Content-Length") == ["5"]
        assert response.headers.getall("Cache-Control") == ["no-store"]
    assert returned == [("Content-Type", "text/plain")]


# -- point 6: the RFC 6750 challenge says why ------------------------------------------------


def expire(client, app, clock, token, admin_headers):
    clock.advance(app.settings.token_ttl)


def log_out(client, app, clock, token, admin_headers):
    client.post("/logout", headers=token, status=200)


def change_password(client, app, clock, token, admin_headers):
    body = {"old_password": USER_PASSWORD, "new_password": "another-password-2"}
    client.put_json("/me/password", body, headers=token, status=200)


def delete_account(client, app, clock, token, admin_headers):
    public_id = client.get("/me", headers=token, status=200).json["user"]["public_id"]
    client.delete(f"/user/{public_id}", headers=admin_headers, status=200)


def garbage(token: str, app: todo_wsgi.TodoApp) -> str:
    return "not.a.token"


def another_key(token: str, app: todo_wsgi.TodoApp) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, ANOTHER_KEY, algorithm="HS256")


@pytest.mark.parametrize(
    ("cause", "why"),
    [
        (expire, "expired"),
        (log_out, "revoked"),
        (change_password, "revoked"),
        (delete_account, "revoked"),
    ],
)
def test_the_challenge_of_a_refused_token_says_why(app, client, clock, user, admin_headers, cause, why):
    token = {"x-access-token": login(client, "alice", USER_PASSWORD)}
    cause(client, app, clock, token, admin_headers)
    response = client.get("/todo", headers=token, status=401)
    assert response.json == INVALID
    assert response.headers["WWW-Authenticate"] == challenge(why)


@pytest.mark.parametrize("forge", [garbage, another_key])
def test_the_challenge_of_a_token_that_does_not_verify_says_malformed(app, client, user, forge):
    token = forge(login(client, "alice", USER_PASSWORD), app)
    response = client.get("/todo", headers={"Authorization": f"Bearer {token}"}, status=401)
    assert response.json == INVALID
    assert response.headers["WWW-Authenticate"] == challenge("malformed")


def test_the_challenge_of_a_missing_token_is_plain_bearer(client):
    response = client.get("/todo", status=401)
    assert response.json == {"message": "Token is missing!"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


# -- point 6: zero-padded numbers are read, never a 500 --------------------------------------------


def test_a_limit_with_5000_leading_zeros_is_read_as_its_number(client, user_headers):
    for text in ("first", "second"):
        client.post_json("/todo", {"text": text}, headers=user_headers, status=201)
    response = client.get("/todo?limit=" + "0" * 5000 + "1", headers=user_headers, status=200)
    assert [t["text"] for t in response.json["todos"]] == ["first"]
    assert 'rel="next"' in response.headers["Link"]


def test_a_content_length_with_5000_leading_zeros_is_read_as_its_number(app, user_headers):
    # Called directly: WebTest sets Content-Length itself, and waitress refuses such a
    # header before the app sees it; another server might pass it on.
    body = b'{"text": "padded"}'

    def post(content_length: str) -> str:
        environ: dict[str, Any] = {}
        setup_testing_defaults(environ)
        environ.update(
            REQUEST_METHOD="POST",
            PATH_INFO="/todo",
            CONTENT_TYPE="application/json",
            CONTENT_LENGTH=content_length,
            HTTP_X_ACCESS_TOKEN=user_headers["x-access-token"],
        )
        environ["wsgi.input"] = io.BytesIO(body)
        answered: list[str] = []
        # Not through wsgiref.validate: its own int() of the header raises first.
        app(environ, lambda status, headers, exc_info=None: answered.append(status))
        return answered[0]

    assert post("0" * 5000 + str(len(body))) == "201 Created"
    assert post("0" * 5000 + "9" * 30).startswith("413")


def test_an_offset_of_5000_zeros_is_read_as_zero(client, user_headers):
    for text in ("first", "second"):
        client.post_json("/todo", {"text": text}, headers=user_headers, status=201)
    response = client.get("/todo?offset=" + "0" * 5000, headers=user_headers, status=200)
    assert [t["text"] for t in response.json["todos"]] == ["first", "second"]


def test_a_padded_number_past_its_range_is_a_400(client, user_headers):
    response = client.get("/todo?limit=" + "0" * 5000 + "1001", headers=user_headers, status=400)
    assert response.json == {"message": "Query parameter 'limit' must be an integer from 1 to 1000"}


def test_a_padded_query_with_a_logged_out_token_answers_401(client, user_headers):
    client.post("/logout", headers=user_headers, status=200)
    for query in ("limit=" + "0" * 5000 + "1", "offset=" + "0" * 5000):
        response = client.get(f"/todo?{query}", headers=user_headers, status=401)
        assert response.headers["WWW-Authenticate"] == challenge("revoked")


# -- point 6: a failed login costs the same whoever it names ---------------------------------------


def test_a_failed_login_costs_the_same_iterations_for_an_unknown_name_an_old_hash_and_a_current_one(
    app, client, user, monkeypatch
):
    fewer = ITERATIONS // 10
    with app.db.connection() as conn:
        old_hash = todo_wsgi.hash_password("old-password-1", fewer)
        app.store.create_user(conn, None, str(uuid.uuid4()), "oldie", old_hash, False)
    spent: list[int] = []
    real = app.hasher.kdf

    def spy(name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
        spent.append(iterations)
        return real(name, password, salt, iterations)

    monkeypatch.setattr(app.hasher, "kdf", spy)
    cost = {}
    for name in ("nobody", "oldie", "alice"):
        spent.clear()
        attempt(client, name, "wrong-password", status=401)
        cost[name] = sum(spent)
    assert cost == {"nobody": ITERATIONS, "oldie": ITERATIONS, "alice": ITERATIONS}


# -- point 6: the logs carry the client address, never a password ---------------------------------


def test_the_access_log_line_carries_the_client_address(client, caplog):
    caplog.set_level(logging.INFO, logger="todo_wsgi.access")
    for address in (HERE, "2001:db8::7"):
        caplog.clear()
        client.get("/healthz", extra_environ={"REMOTE_ADDR": address}, status=200)
        (line,) = [r.getMessage() for r in caplog.records if r.name == "todo_wsgi.access"]
        assert f" {address} GET /healthz 200 " in line


def test_a_throttled_login_is_logged_as_a_warning_naming_the_address_and_never_the_password(make_app, caplog):
    app = make_app(login_max_failures=2)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    caplog.set_level(logging.DEBUG)
    for _ in range(2):
        attempt(client, "alice", "wrong-password-Sekret", status=401)
    assert not [r for r in caplog.records if r.name == "todo_wsgi" and r.levelno >= logging.WARNING]
    attempt(client, "alice", USER_PASSWORD, status=429)
    (warning,) = [r for r in caplog.records if r.name == "todo_wsgi" and r.levelno == logging.WARNING]
    assert HERE in warning.getMessage()
    assert "alice" in warning.getMessage()
    for password in ("wrong-password-Sekret", USER_PASSWORD):
        assert password not in caplog.text
        assert not any(password in r.getMessage() for r in caplog.records)


# -- point 2 as API.md states it: failed logins per address, and a wrong old password ---------------


def test_a_wrong_old_password_counts_as_a_failed_login(make_app):
    app = make_app(login_max_failures=2)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    token = {"x-access-token": attempt(client, "alice", USER_PASSWORD, status=200).json["token"]}
    body = {"old_password": "wrong-password", "new_password": "another-password-2"}
    for _ in range(2):
        client.put_json("/me/password", body, headers=token, extra_environ={"REMOTE_ADDR": HERE}, status=403)
    response = attempt(client, "alice", USER_PASSWORD, HERE, status=429)
    assert int(response.headers["Retry-After"]) > 0
    attempt(client, "alice", USER_PASSWORD, THERE, status=200)  # counted for that address only


def test_failures_with_many_names_from_one_address_throttle_every_login_from_it(make_app):
    app = make_app(login_max_failures_per_address=3)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    for name in ("invented-1", "invented-2", "invented-3"):
        attempt(client, name, "wrong-password", HERE, status=401)
    response = attempt(client, "alice", USER_PASSWORD, HERE, status=429)
    assert response.json == {"message": "Too many failed logins; try again later"}
    assert response.headers["Retry-After"] == str(app.settings.login_window)
    attempt(client, "alice", USER_PASSWORD, THERE, status=200)


def test_ipv6_addresses_in_one_64_share_a_count_and_another_64_does_not(make_app):
    app = make_app(login_max_failures_per_address=3)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    for n, name in enumerate(("invented-1", "invented-2", "invented-3"), start=1):
        attempt(client, name, "wrong-password", f"2001:db8:1:2::{n}", status=401)
    attempt(client, "alice", USER_PASSWORD, "2001:db8:1:2:ffff:ffff:ffff:ffff", status=429)
    attempt(client, "alice", USER_PASSWORD, "2001:db8:1:3::1", status=200)


def test_a_successful_login_clears_its_names_count(make_app):
    app = make_app(login_max_failures=3)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    for _ in range(2):
        attempt(client, "alice", "wrong-password", status=401)
    attempt(client, "alice", USER_PASSWORD, status=200)
    # Three more failures allowed again (uncleared, the first of them would be the fourth: 429).
    for _ in range(3):
        attempt(client, "alice", "wrong-password", status=401)
    attempt(client, "alice", USER_PASSWORD, status=429)


def test_a_successful_login_does_not_clear_its_addresss_count(make_app):
    app = make_app(login_max_failures_per_address=4)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    for _ in range(2):
        attempt(client, "alice", "wrong-password", status=401)
    attempt(client, "alice", USER_PASSWORD, status=200)
    # The address keeps its two failures: two more are allowed, not four.
    for name in ("invented-1", "invented-2"):
        attempt(client, name, "wrong-password", status=401)
    attempt(client, "invented-3", "wrong-password", status=429)
    attempt(client, "alice", USER_PASSWORD, status=429)


# -- point 2 as API.md states it: a busy hasher turns a login away at once --------------------------


def throttle_rows(app: todo_wsgi.TodoApp) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with app.db.connection() as conn:
        by_name = conn.execute("SELECT name, address, failures FROM login_failures ORDER BY name").fetchall()
        by_address = conn.execute("SELECT address, failures FROM address_failures ORDER BY address").fetchall()
    return [tuple(r) for r in by_name], [tuple(r) for r in by_address]


def test_a_login_while_the_hasher_is_busy_answers_503_at_once_and_counts_nothing(app, user, admin):
    entered, release = threading.Event(), threading.Event()

    def blocking_kdf(name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
        if password == USER_PASSWORD.encode():
            entered.set()
            release.wait(30)
        return hashlib.pbkdf2_hmac(name, password, salt, iterations)

    app.hasher = todo_wsgi.Hasher(app.settings.pbkdf2_iterations, 1, blocking_kdf)
    first: dict[str, Any] = {}
    holder = threading.Thread(
        target=lambda: first.update(response=attempt(TestApp(validator(app)), "alice", USER_PASSWORD, HERE))
    )
    holder.start()
    try:
        assert entered.wait(10), "the first login never reached the kdf"
        counted = throttle_rows(app)
        started = time.monotonic()
        response = attempt(TestApp(validator(app)), "admin", ADMIN_PASSWORD, THERE, status=503)
        assert time.monotonic() - started < 0.5
        assert throttle_rows(app) == counted  # nothing counted for admin or for THERE
    finally:
        release.set()
        holder.join(30)
    assert int(response.headers["Retry-After"]) > 0
    assert first["response"].status_int == 200
    by_name, by_address = throttle_rows(app)
    assert [row for row in by_name if row[0] == "admin"] == []
    assert [row for row in by_address if row[0] == THERE] == []
