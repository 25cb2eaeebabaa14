"""Promises an outside attack on the service tested, each held by a test of its own.

Each test is named after the promise; together they are what a reviewer who
tried to break sessions, throttling, tokens and stored secrets found held.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from wsgiref.validate import validator

import jwt
import pytest
from webtest import TestApp

import todo_wsgi
from tests.conftest import USER_PASSWORD, add_account, basic, login, session_of, stored_rows
from tests.test_races import Gate, held_while, rogue_admin


def test_an_admin_demoted_while_editing_its_own_account_gets_nothing_back(app, client, admin):
    rogue, admin_headers, rogue_id = rogue_admin(app, client)
    gate = Gate("rogue-password-2")
    app.hasher = todo_wsgi.Hasher(app.settings.pbkdf2_iterations, 4, gate)
    change = {"password": "rogue-password-2", "admin": True, "name": "still-admin"}
    response, before = held_while(
        app,
        gate,
        lambda c: c.patch_json(f"/user/{rogue_id}", change, headers=rogue, expect_errors=True),
        lambda: client.patch_json(f"/user/{rogue_id}", {"admin": False}, headers=admin_headers, status=200),
    )
    assert response.status_int == 403
    assert stored_rows(app) == before


def test_a_client_past_its_address_limit_is_refused_before_it_waits_for_hashing(make_app, admin):
    app = make_app(login_max_failures_per_address=2)
    flooder = TestApp(validator(app), extra_environ={"REMOTE_ADDR": "198.51.100.66"})
    for n in range(3):
        flooder.post("/login", headers=basic(f"new-{n}", "wrong-password"), expect_errors=True)
    # Every hashing slot taken: a refused client must not need one to be refused.
    gate = Gate("never-used")
    app.hasher = todo_wsgi.Hasher(app.settings.pbkdf2_iterations, 0, gate)
    response = flooder.post("/login", headers=basic("new-9", "wrong-password"), status=429)
    assert int(response.headers["Retry-After"]) >= 1
    with app.db.connection() as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM login_failures").fetchall()}
    assert "new-9" not in names  # refused without growing the table


def test_a_copy_of_the_database_holds_no_usable_session_id(app, client, user):
    token = login(client, "alice", USER_PASSWORD)
    with app.db.connection() as conn:
        (stored,) = conn.execute("SELECT id FROM sessions").fetchone()
    assert stored != session_of(token)
    claims = {"public_id": user["public_id"], "sid": stored, "iat": int(app.clock()), "exp": int(app.clock()) + 600}
    forged = jwt.encode(claims, app.secret_key, algorithm="HS256")
    client.get("/me", headers={"x-access-token": forged}, status=401)


def test_no_access_token_outlives_its_session(make_app, clock):
    app = make_app(refresh_ttl=3600)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    pair = client.post("/login", headers=basic("alice", USER_PASSWORD), status=200).json
    clock.advance(3000)
    pair = client.post_json("/refresh", {"refresh_token": pair["refresh_token"]}, status=200).json
    assert pair["expires_in"] == 600  # the session ends before token_ttl would
    clock.advance(600)
    client.get("/me", headers={"x-access-token": pair["token"]}, status=401)


def test_a_session_past_its_end_refuses_even_a_token_that_has_not_expired(make_app, clock):
    app = make_app(refresh_ttl=3600)
    client = TestApp(validator(app))
    add_account(app, "alice", USER_PASSWORD)
    token = login(client, "alice", USER_PASSWORD)
    claims = jwt.decode(token, options={"verify_signature": False})
    clock.advance(3601)
    longer = jwt.encode(
        {**claims, "iat": int(clock()) - 10, "exp": int(clock()) + 60}, app.secret_key, algorithm="HS256"
    )
    client.get("/me", headers={"x-access-token": longer}, status=401)


@pytest.mark.parametrize("field", ["iat", "exp"])
def test_a_token_with_a_number_that_is_not_finite_is_malformed(app, client, user, field):
    token = login(client, "alice", USER_PASSWORD)
    claims = jwt.decode(token, options={"verify_signature": False})
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = jwt.utils.base64url_encode(json.dumps({**claims, field: float("nan")}).encode())
    signing_input = header + b"." + payload
    signature = jwt.utils.base64url_encode(hmac.new(app.secret_key.encode(), signing_input, hashlib.sha256).digest())
    forged = (signing_input + b"." + signature).decode()
    response = client.get("/me", headers={"x-access-token": forged}, status=401)
    assert response.headers["WWW-Authenticate"].endswith('error_description="malformed"')


def test_basic_credentials_that_are_not_ascii_are_could_not_verify_not_500(client):
    response = client.post("/login", headers={"Authorization": "Basic \u00e9\u00e9\u00e9"}, status=401)
    assert response.json == {"message": "Could not verify"}


def test_an_old_password_that_is_not_valid_unicode_is_400_and_counts_nothing(client, user_headers):
    body = b'{"old_password": "\\ud800xxxxxxxx", "new_password": "new-password-9"}'
    headers = {**user_headers, "Content-Type": "application/json"}
    response = client.put("/me/password", body, headers=headers, status=400)
    assert "old_password" in response.json["message"]


def test_an_audit_event_holds_only_a_real_client_address(app, admin):
    forged = TestApp(validator(app), extra_environ={"REMOTE_ADDR": "1.2.3.4\tlogin.succeeded\tFAKE"})
    forged.post("/login", headers=basic("admin", "wrong-password"), status=401)
    with app.db.connection() as conn:
        addresses = [row[0] for row in conn.execute("SELECT address FROM audit_events WHERE action = 'login.failed'")]
    assert addresses == [None]
