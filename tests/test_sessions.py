"""Sessions that need no password: refresh tokens (API.md, "Sessions: refresh tokens").

One test per promise, through WebTest on both backends; the races with both
refreshes in flight run on a live waitress server.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, HeldWrite, basic, challenge, session_of, stored_rows
from tests.live import LiveServer

NEW_PASSWORD = "a-new-password-2"


def log_in(client: Any, name: str = "alice", password: str = USER_PASSWORD) -> dict[str, Any]:
    return dict(client.post("/login", headers=basic(name, password), status=200).json)


def refresh(client: Any, refresh_token: str, status: int = 200) -> Any:
    return client.post_json("/refresh", {"refresh_token": refresh_token}, status=status)


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['token']}"}


def test_a_login_answers_a_refresh_token_and_its_session_lifetime(app, client, user):
    pair = log_in(client)
    assert set(pair) == {"token", "expires_in", "refresh_token", "refresh_expires_in"}
    assert pair["refresh_expires_in"] == app.settings.refresh_ttl
    assert (
        len(pair["refresh_token"]) >= 43
        and pair["refresh_token"].replace("-", "").replace("_", "").replace(".", "").isalnum()
    )


def test_a_refresh_answers_a_new_pair_that_works(client, user):
    first = log_in(client)
    second = refresh(client, first["refresh_token"]).json
    assert set(second) == {"token", "expires_in", "refresh_token", "refresh_expires_in"}
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/me", headers=bearer(second), status=200).json["user"]["name"] == "alice"


def test_a_session_in_its_last_second_is_not_refreshed(make_app, clock):
    # Its access token would be born expired (expires_in 0).
    from wsgiref.validate import validator

    from webtest import TestApp

    from tests.conftest import add_account

    app = make_app(refresh_ttl=3600)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    clock.advance(0.7)  # a login in the middle of a second: the session ends in the middle of one
    pair = log_in(client)
    clock.advance(3599.6)
    before = stored_rows(app)
    response = refresh(client, pair["refresh_token"], status=401)
    assert response.headers["WWW-Authenticate"] == challenge("expired")
    # Refused, so nothing spent: the same token presented again is no replay.
    assert stored_rows(app) == before
    refresh(client, pair["refresh_token"], status=401)
    assert stored_rows(app) == before


def test_a_refresh_that_loses_its_session_to_a_logout_is_no_replay(app, client, user, monkeypatch):
    # The logout is held inside its transaction (its session deleted, not yet committed)
    # while the refresh arrives: the refresh must wait, find no session, and record
    # nothing: a lost race is not a stolen token.
    pair = log_in(client)
    hold = HeldWrite(app, monkeypatch, "logout")
    answers: list[Any] = []
    logging_out = threading.Thread(target=lambda: answers.append(client.post("/logout", headers=bearer(pair))))
    logging_out.start()
    assert hold.inside.wait(10)
    refreshing = threading.Thread(
        target=lambda: answers.append(
            client.post_json("/refresh", {"refresh_token": pair["refresh_token"]}, expect_errors=True)
        )
    )
    refreshing.start()
    refreshing.join(0.5)
    hold.go_on.set()
    logging_out.join(10)
    refreshing.join(10)
    assert sorted(answer.status_int for answer in answers) == [200, 401]
    with app.db.connection() as conn:
        revoked = conn.execute("SELECT count(*) FROM audit_events WHERE action = 'session.revoked'").fetchone()[0]
    assert revoked == 0


def test_a_refresh_needs_no_access_token(client, user):
    pair = log_in(client)
    client.post_json("/refresh", {"refresh_token": pair["refresh_token"]}, status=200)


def test_a_refresh_leaves_the_access_tokens_issued_before_it_working(client, user):
    first = log_in(client)
    refresh(client, first["refresh_token"])
    client.get("/me", headers=bearer(first), status=200)


def test_a_spent_refresh_token_presented_again_ends_the_whole_session(client, user):
    first = log_in(client)
    second = refresh(client, first["refresh_token"]).json
    response = refresh(client, first["refresh_token"], status=401)
    assert response.json == {"message": "Token is invalid!"}
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    for pair in (first, second):
        assert client.get("/me", headers=bearer(pair), status=401).headers["WWW-Authenticate"] == challenge("revoked")
    refresh(client, second["refresh_token"], status=401)


def test_a_token_spent_two_rotations_ago_presented_again_ends_the_whole_session(app, client, user):
    first = log_in(client)
    second = refresh(client, first["refresh_token"]).json
    third = refresh(client, second["refresh_token"]).json
    assert refresh(client, first["refresh_token"], status=401).json == {"message": "Token is invalid!"}
    for pair in (first, second, third):
        assert client.get("/me", headers=bearer(pair), status=401).headers["WWW-Authenticate"] == challenge("revoked")
    refresh(client, third["refresh_token"], status=401)
    assert revocations(app) == 1


def revocations(app: Any) -> int:
    with app.db.connection() as conn:
        return int(conn.execute("SELECT count(*) FROM audit_events WHERE action = 'session.revoked'").fetchone()[0])


@pytest.mark.parametrize("rotations", [0, 2])
def test_an_unknown_token_naming_a_live_session_is_401_and_changes_nothing(app, client, user, rotations):
    # The session id is in every access token's payload: whoever saw one can make up
    # "<sid>.<anything>". Only a token really issued and spent is a replay.
    pairs = [log_in(client)]
    for _ in range(rotations):
        pairs.append(refresh(client, pairs[-1]["refresh_token"]).json)
    forged = f"{session_of(pairs[0]['token'])}.{'A' * 43}"
    assert forged.partition(".")[0] == pairs[-1]["refresh_token"].partition(".")[0]
    response = refresh(client, forged, status=401)
    assert response.json == {"message": "Token is invalid!"}
    assert response.headers["WWW-Authenticate"] == challenge("revoked")
    assert revocations(app) == 0
    for pair in pairs:
        client.get("/me", headers=bearer(pair), status=200)
    following = refresh(client, pairs[-1]["refresh_token"]).json
    client.get("/me", headers=bearer(following), status=200)
    refresh(client, pairs[-1]["refresh_token"], status=401)  # now spent: a replay still ends the session
    client.get("/me", headers=bearer(following), status=401)
    assert revocations(app) == 1


def test_a_replay_ends_only_its_own_session(client, user):
    stolen, other = log_in(client), log_in(client)
    refresh(client, stolen["refresh_token"])
    refresh(client, stolen["refresh_token"], status=401)
    client.get("/me", headers=bearer(other), status=200)
    refresh(client, other["refresh_token"], status=200)


@pytest.mark.parametrize("token", ["", "x", "not-a-token-we-issued-0123456789012345678901234567", "é" * 300])
def test_an_unknown_refresh_token_is_401(client, user, token):
    assert refresh(client, token, status=401).json == {"message": "Token is invalid!"}


@pytest.mark.parametrize("body", [{}, {"refresh_token": 5}, {"refresh_token": "x", "extra": 1}])
def test_a_refresh_body_of_the_wrong_shape_is_400(client, body):
    client.post_json("/refresh", body, status=400)


def test_a_session_ends_refresh_ttl_after_its_login_however_often_it_is_refreshed(make_app, clock):
    from wsgiref.validate import validator

    from webtest import TestApp

    from tests.conftest import add_account

    app = make_app(refresh_ttl=3600)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    pair = log_in(client)
    for _ in range(3):
        clock.advance(1000)
        pair = refresh(client, pair["refresh_token"]).json
    assert pair["refresh_expires_in"] == 600
    clock.advance(600)
    refresh(client, pair["refresh_token"], status=401)


def test_an_expired_refresh_token_is_401(app, client, clock, user):
    pair = log_in(client)
    clock.advance(app.settings.refresh_ttl)
    refresh(client, pair["refresh_token"], status=401)


def test_logout_ends_the_session_and_its_refresh_token(client, user):
    pair = log_in(client)
    refreshed = refresh(client, pair["refresh_token"]).json
    client.post("/logout", headers=bearer(pair), status=200)
    client.get("/me", headers=bearer(refreshed), status=401)
    refresh(client, refreshed["refresh_token"], status=401)


@pytest.mark.parametrize("how", ["owner", "admin", "command line"])
def test_a_password_change_ends_every_session_of_the_account(client, database, user, admin_headers, how, run_command):
    pairs = [log_in(client), log_in(client)]
    if how == "owner":
        change = {"old_password": USER_PASSWORD, "new_password": NEW_PASSWORD}
        client.put_json("/me/password", change, headers=bearer(pairs[0]), status=200)
    elif how == "admin":
        client.patch_json(f"/user/{user['public_id']}", {"password": NEW_PASSWORD}, headers=admin_headers, status=200)
    else:
        assert run_command(database, "set-password", "alice", stdin=NEW_PASSWORD + "\n").returncode == 0
    for pair in pairs:
        client.get("/me", headers=bearer(pair), status=401)
        refresh(client, pair["refresh_token"], status=401)
    log_in(client, password=NEW_PASSWORD)


def test_deleting_an_account_ends_every_session_of_it(client, user, admin_headers):
    pair = log_in(client)
    client.delete(f"/user/{user['public_id']}", headers=admin_headers, status=200)
    refresh(client, pair["refresh_token"], status=401)


def spent_hashes(app: Any) -> list[str]:
    with app.db.connection() as conn:
        return [row[0] for row in conn.execute("SELECT hash FROM spent_refresh_tokens ORDER BY hash").fetchall()]


@pytest.mark.parametrize("how", ["logout", "password change", "account deletion", "replay", "expiry"])
def test_the_spent_refresh_tokens_of_an_ended_session_are_gone(app, client, clock, user, admin_headers, how):
    other = log_in(client)
    kept = refresh(client, other["refresh_token"]).json
    first = log_in(client)
    second = refresh(client, first["refresh_token"]).json
    third = refresh(client, second["refresh_token"]).json
    ours = sorted(hashlib.sha256(p["refresh_token"].encode()).hexdigest() for p in (first, second))
    theirs = [hashlib.sha256(other["refresh_token"].encode()).hexdigest()]
    assert spent_hashes(app) == sorted(ours + theirs)
    if how == "logout":
        client.post("/logout", headers=bearer(third), status=200)
    elif how == "password change":
        change = {"password": NEW_PASSWORD}
        client.patch_json(f"/user/{user['public_id']}", change, headers=admin_headers, status=200)
        theirs = []
    elif how == "account deletion":
        client.delete(f"/user/{user['public_id']}", headers=admin_headers, status=200)
        theirs = []
    elif how == "replay":
        refresh(client, first["refresh_token"], status=401)
    else:
        clock.advance(app.settings.refresh_ttl + 1)
        log_in(client, "admin", ADMIN_PASSWORD)  # a login prunes the sessions past their end
        theirs = []
    assert spent_hashes(app) == theirs
    if theirs:
        refresh(client, kept["refresh_token"], status=200)


def test_refresh_tokens_and_session_ids_are_stored_only_as_hashes(app, client, user):
    pair = log_in(client)
    refreshed = refresh(client, pair["refresh_token"]).json
    with app.db.connection() as conn:
        rows = conn.execute("SELECT id, refresh_hash FROM sessions").fetchall()
        rows += conn.execute("SELECT session_id, hash FROM spent_refresh_tokens").fetchall()
    stored = repr([tuple(row) for row in rows])
    for token in (pair["refresh_token"], refreshed["refresh_token"], pair["token"], refreshed["token"]):
        assert token not in stored and token.partition(".")[0] not in stored
    assert [tuple(row)[1] for row in rows] == [
        hashlib.sha256(token.encode()).hexdigest() for token in (refreshed["refresh_token"], pair["refresh_token"])
    ]


def test_expired_sessions_are_pruned_at_the_next_login(app, client, clock, user):
    log_in(client)
    clock.advance(app.settings.refresh_ttl + 1)
    log_in(client)
    with app.db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1


# -- races, with both requests in flight on a live server ---------------------------------------------


@pytest.fixture
def live(make_app: Callable[..., Any]) -> Iterator[tuple[Any, LiveServer]]:
    app = make_app(pool_size=8)
    server = LiveServer(app, threads=8)
    try:
        yield app, server
    finally:
        server.close()


def post(server: LiveServer, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = server.connect()
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def get(server: LiveServer, path: str, token: str) -> int:
    conn: http.client.HTTPConnection = server.connect()
    try:
        conn.request("GET", path, headers={"x-access-token": token})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_two_refreshes_of_one_token_at_once_one_succeeds_and_the_other_ends_the_session(live, monkeypatch):
    app, server = live
    from tests.conftest import add_account

    add_account(app, "alice", USER_PASSWORD)
    status, pair = post(server, "/login", headers=basic("alice", USER_PASSWORD))
    assert status == 200
    # Both refreshes reach the store before either spends the token.
    barrier = threading.Barrier(2, timeout=10)
    real = app.store.refresh_session

    def refresh_together(*args: Any, **kwargs: Any) -> Any:
        barrier.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(app.store, "refresh_session", refresh_together)
    answers: list[tuple[int, Any]] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(post(server, "/refresh", {"refresh_token": pair["refresh_token"]}))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    monkeypatch.setattr(app.store, "refresh_session", real)
    assert sorted(status for status, _ in answers) == [200, 401]
    (winner,) = [body for status, body in answers if status == 200]
    # The loser was a replay: the session is over, the winner's new tokens included.
    assert get(server, "/me", winner["token"]) == 401
    assert get(server, "/me", pair["token"]) == 401
    assert post(server, "/refresh", {"refresh_token": winner["refresh_token"]})[0] == 401


@pytest.mark.parametrize("ending", ["logout", "password change"])
def test_a_refresh_racing_a_logout_or_password_change_yields_no_working_token(live, monkeypatch, ending):
    app, server = live
    from tests.conftest import add_account

    add_account(app, "alice", USER_PASSWORD)
    status, pair = post(server, "/login", headers=basic("alice", USER_PASSWORD))
    arrived, go_on = threading.Event(), threading.Event()
    real = app.store.refresh_session

    def refresh_when_told(*args: Any, **kwargs: Any) -> Any:
        arrived.set()
        assert go_on.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(app.store, "refresh_session", refresh_when_told)
    answer: list[tuple[int, Any]] = []
    thread = threading.Thread(
        target=lambda: answer.append(post(server, "/refresh", {"refresh_token": pair["refresh_token"]}))
    )
    thread.start()
    assert arrived.wait(10)
    headers = {"x-access-token": pair["token"]}
    if ending == "logout":
        assert post(server, "/logout", headers=headers)[0] == 200
    else:
        change = {"old_password": USER_PASSWORD, "new_password": NEW_PASSWORD}
        conn = server.connect()
        conn.request(
            "PUT", "/me/password", body=json.dumps(change), headers={**headers, "Content-Type": "application/json"}
        )
        assert conn.getresponse().status == 200
        conn.close()
    go_on.set()
    thread.join(30)
    ((status, body),) = answer
    assert status == 401 or get(server, "/me", body["token"]) == 401


def test_an_admins_session_survives_refreshes_with_its_rights_read_fresh(client, admin, user):
    pair = log_in(client, "admin", ADMIN_PASSWORD)
    pair = refresh(client, pair["refresh_token"]).json
    client.get("/user", headers=bearer(pair), status=200)


# -- bounded cost: a refresh loop, a login flood ----------------------------------


def test_a_session_spends_at_most_twice_the_refresh_tokens_its_lifetime_needs(make_app, clock):
    from wsgiref.validate import validator

    from webtest import TestApp

    from tests.conftest import add_account

    # 2 x 120 s / 60 s: four refreshes, then the loop is refused and grows nothing.
    app = make_app(token_ttl=60, refresh_ttl=120)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    pair = log_in(client)
    spent = [pair]
    for _ in range(4):
        spent.append(refresh(client, spent[-1]["refresh_token"]).json)
    before = stored_rows(app)
    response = refresh(client, spent[-1]["refresh_token"], status=401)
    assert response.headers["WWW-Authenticate"] == challenge("revoked")
    assert stored_rows(app) == before
    # The session lives on to its end: its last access token works, and a replay still ends it.
    client.get("/me", headers=bearer(spent[-1]), status=200)
    refresh(client, spent[0]["refresh_token"], status=401)
    client.get("/me", headers=bearer(spent[-1]), status=401)


def test_a_login_past_the_accounts_session_limit_ends_its_oldest_session(app, client, user, clock, monkeypatch):
    import store

    monkeypatch.setattr(store, "SESSIONS_PER_ACCOUNT", 3)
    if app.store is not store:
        monkeypatch.setattr(app.store, "SESSIONS_PER_ACCOUNT", 3)
    pairs = []
    for _ in range(4):
        pairs.append(log_in(client))
        clock.advance(1)
    # The oldest ended with every token of it; the three newest live.
    client.get("/me", headers=bearer(pairs[0]), status=401)
    refresh(client, pairs[0]["refresh_token"], status=401)
    for pair in pairs[1:]:
        client.get("/me", headers=bearer(pair), status=200)
    with app.db.connection() as conn:
        (count,) = conn.execute("SELECT count(*) FROM sessions").fetchone()
    assert count == 3
