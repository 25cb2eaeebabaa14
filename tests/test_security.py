"""Token attacks, mass assignment, and secrets that must never leave the server.

Issue 3, points 1 and 2. Every forged token below is one a careless verifier
would accept (the right key under another algorithm label, a valid signature
over a stale or incomplete claim set, ...); each must answer
``401 {"message": "Token is invalid!"}``. A control test shows that a token
crafted the same way, but honestly, is accepted, so the rejections are not an
accident of the crafting helper.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
import waitress

import store
import todo_wsgi_cli
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, add_account, basic, challenge, login, session_of
from tests.live import LiveServer

ANOTHER_KEY = "another-key-that-is-long-enough-for-hs256-0123456789"


def b64url(data: bytes) -> str:
    """RFC 7515 2: base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def craft(header: dict[str, Any], claims: dict[str, Any], key: str | None = None, signature: bytes = b"") -> str:
    """A JWS compact token by hand; with ``key``, an HMAC-SHA256 signature over it."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if key is not None:
        signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def without(claims: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k != name}


def retarget(token: str, claims: dict[str, Any]) -> str:
    """Swap a signed token's payload for another, keeping the old signature."""
    header, _, signature = token.split(".")
    return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"


Forge = Callable[[str, dict[str, Any]], str]

# Each row: (key of the app, valid claims for the admin) -> a token that must be refused.
FORGERIES: dict[str, Forge] = {
    "alg none, no signature": lambda key, c: craft({"alg": "none", "typ": "JWT"}, c),
    "alg None, no signature": lambda key, c: craft({"alg": "None", "typ": "JWT"}, c),
    "alg none, a valid HS256 signature kept": lambda key, c: craft({"alg": "none"}, c, key),
    "HS256 with another key": lambda key, c: jwt.encode(c, ANOTHER_KEY, algorithm="HS256"),
    "HS256 with an empty key": lambda key, c: craft({"alg": "HS256", "typ": "JWT"}, c, ""),
    "right key but HS384": lambda key, c: jwt.encode(c, key, algorithm="HS384"),
    "right key but HS512": lambda key, c: jwt.encode(c, key, algorithm="HS512"),
    "alg hs256 in lower case": lambda key, c: craft({"alg": "hs256", "typ": "JWT"}, c, key),
    # Algorithm confusion: an asymmetric label over an HMAC made with the
    # server's own key, as if that key were the RSA/EC public key.
    "RS256 header, HMAC signature with the right key": lambda key, c: craft({"alg": "RS256"}, c, key),
    "RS256 header, 256-byte signature": lambda key, c: craft({"alg": "RS256"}, c, signature=os.urandom(256)),
    "ES256 header, HMAC signature with the right key": lambda key, c: craft({"alg": "ES256"}, c, key),
    "ES256 header, 64-byte signature": lambda key, c: craft({"alg": "ES256"}, c, signature=os.urandom(64)),
    "exp in the past": lambda key, c: jwt.encode({**c, "exp": c["iat"] - 1}, key, algorithm="HS256"),
    "exp exactly now": lambda key, c: jwt.encode({**c, "exp": c["iat"]}, key, algorithm="HS256"),
    "exp not a number": lambda key, c: craft({"alg": "HS256"}, {**c, "exp": "9999999999"}, key),
    "no exp": lambda key, c: jwt.encode(without(c, "exp"), key, algorithm="HS256"),
    "no iat": lambda key, c: jwt.encode(without(c, "iat"), key, algorithm="HS256"),
    "no public_id": lambda key, c: jwt.encode(without(c, "public_id"), key, algorithm="HS256"),
    "public_id an object": lambda key, c: jwt.encode({**c, "public_id": {"$ne": ""}}, key, algorithm="HS256"),
    "sid a list": lambda key, c: jwt.encode({**c, "sid": ["a"]}, key, algorithm="HS256"),
    "no sid": lambda key, c: jwt.encode(without(c, "sid"), key, algorithm="HS256"),
    "unknown sid": lambda key, c: jwt.encode({**c, "sid": "no-such-session"}, key, algorithm="HS256"),
    # Whoever signed it: a token from the future, or living longer than the service issues.
    "iat more than a minute ahead": lambda key, c: jwt.encode(
        {**c, "iat": c["iat"] + 61, "exp": c["iat"] + 600}, key, algorithm="HS256"
    ),
    "a lifetime longer than token_ttl": lambda key, c: jwt.encode(
        {**c, "exp": c["iat"] + 1800 + 1}, key, algorithm="HS256"
    ),
    "unknown public_id": lambda key, c: jwt.encode({**c, "public_id": str(uuid.uuid4())}, key, algorithm="HS256"),
    "payload swapped under a valid signature": lambda key, c: retarget(
        jwt.encode({**c, "public_id": str(uuid.uuid4())}, key, algorithm="HS256"), c
    ),
    "empty": lambda key, c: "",
    "truncated signature": lambda key, c: jwt.encode(c, key, algorithm="HS256")[:-4],
    "truncated to two segments": lambda key, c: jwt.encode(c, key, algorithm="HS256").rsplit(".", 1)[0],
    "one segment": lambda key, c: jwt.encode(c, key, algorithm="HS256").split(".")[0],
    "non-base64": lambda key, c: "!!!.@@@.###",
    "not a JWT at all": lambda key, c: "hello",
}


def valid_claims(app: Any, public_id: str, sid: str) -> dict[str, Any]:
    now = int(app.clock())
    return {"public_id": public_id, "sid": sid, "iat": now, "exp": now + 600}


def carry(token: str, how: str) -> dict[str, str]:
    return {"x-access-token": token} if how == "x-access-token" else {"Authorization": f"Bearer {token}"}


# -- point 1: token attacks ------------------------------------------------------


def test_a_token_crafted_by_hand_with_the_right_key_is_accepted(client, app, admin):
    sid = session_of(login(client, "admin", ADMIN_PASSWORD))
    token = craft({"alg": "HS256", "typ": "JWT"}, valid_claims(app, admin["public_id"], sid), app.secret_key)
    assert client.get("/me", headers={"x-access-token": token}, status=200).json["user"]["name"] == "admin"


@pytest.mark.parametrize("how", ["x-access-token", "bearer"])
@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_token_is_invalid(client, app, admin, forge, how):
    sid = session_of(login(client, "admin", ADMIN_PASSWORD))
    token = forge(app.secret_key, valid_claims(app, admin["public_id"], sid))
    response = client.get("/me", headers=carry(token, how), status=401)
    assert response.json == {"message": "Token is invalid!"}
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token", error_description="')


def test_token_expires_with_the_clock(client, app, admin, admin_headers, clock):
    client.get("/me", headers=admin_headers, status=200)
    clock.advance(app.settings.token_ttl)
    assert client.get("/me", headers=admin_headers, status=401).json == {"message": "Token is invalid!"}


def test_deleted_accounts_token_is_invalid(client, admin_headers, user, user_headers):
    client.get("/me", headers=user_headers, status=200)
    client.delete(f"/user/{user['public_id']}", headers=admin_headers, status=200)
    assert client.get("/me", headers=user_headers, status=401).json == {"message": "Token is invalid!"}
    assert client.get("/todo", headers=user_headers, status=401).json == {"message": "Token is invalid!"}


def end_token(
    how: str, client: Any, user: dict[str, Any], user_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    """End the user's token the way ``how`` names (API.md, "Authentication")."""
    if how == "logout":
        client.post("/logout", headers=user_headers, status=200)
    elif how == "password change":
        change = {"old_password": USER_PASSWORD, "new_password": "another-password-2"}
        client.put_json("/me/password", change, headers=user_headers, status=200)
    else:
        client.delete(f"/user/{user['public_id']}", headers=admin_headers, status=200)


@pytest.mark.parametrize("how", ["logout", "password change", "account deleted"])
@pytest.mark.parametrize("path", ["/todo", "/todo?complete=false&limit=1", "/todo/{id}"])
def test_a_token_the_database_refuses_reads_no_todo(client, user, user_headers, admin_headers, how, path):
    # GET /todo and /todo/<id> read the account check and the to-dos in one
    # statement: the check must still decide before any of them is shown.
    todo = client.post_json("/todo", {"text": "private"}, headers=user_headers, status=201).json["todo"]
    url = path.format(id=todo["id"])
    client.get(url, headers=user_headers, status=200)  # the token works, and its claims are cached
    end_token(how, client, user, user_headers, admin_headers)
    response = client.get(url, headers=user_headers, status=401)
    assert response.json == {"message": "Token is invalid!"}
    assert response.headers["WWW-Authenticate"] == challenge("revoked")


@pytest.mark.parametrize("parameter", ["token", "x-access-token", "access_token", "jwt"])
def test_token_in_the_query_string_is_not_accepted(client, admin_headers, parameter):
    token = admin_headers["x-access-token"]
    response = client.get(f"/todo?{parameter}={token}", status=401)
    assert response.json == {"message": "Token is missing!"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


# -- point 2: mass assignment and secrets --------------------------------------------


def test_admin_field_on_create_user_is_refused_and_creates_nobody(client, admin_headers):
    body = {"name": "mallory", "password": "mallory-password", "admin": True}
    response = client.post_json("/user", body, headers=admin_headers, status=400)
    assert "admin" in response.json["message"]
    names = [u["name"] for u in client.get("/user", headers=admin_headers, status=200).json["users"]]
    assert names == ["admin"]


@pytest.mark.parametrize(
    "path, body",
    [
        ("/todo", {"text": "x", "owner_id": 1}),
        ("/todo", {"text": "x", "complete": True}),
        ("/todo", {"text": "x", "id": 99}),
        ("/user", {"name": "m", "password": "mallory-password", "public_id": str(uuid.uuid4())}),
        ("/user", {"name": "m", "password": "mallory-password", "password_hash": "pbkdf2_sha256$1$a$b"}),
    ],
    ids=["todo owner_id", "todo complete", "todo id", "user public_id", "user password_hash"],
)
def test_fields_a_route_does_not_take_are_refused_by_name(client, admin_headers, path, body):
    extra = next(name for name in body if name not in ("text", "name", "password"))
    response = client.post_json(path, body, headers=admin_headers, status=400)
    assert response.json == {"message": f"Field '{extra}' is not accepted here"}


@pytest.mark.sqlite_only
def test_no_response_header_or_log_line_carries_a_password_hash_or_token(client, app, admin, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    passwords = [ADMIN_PASSWORD, "wrong-password-42", "ghost-password-7", "bob-password-1", "bob-password-2"]
    passwords += ["bob-password-3", "shortpw", "mallory-password"]
    tokens: list[str] = []
    seen: list[Any] = []

    def saw(response: Any) -> Any:
        seen.append(response)
        if "token" in (response.json or {}):
            tokens.append(response.json["token"])
        return response

    admin_token = login(client, "admin", ADMIN_PASSWORD)
    tokens.append(admin_token)
    a = {"x-access-token": admin_token}
    saw(client.post("/login", headers=basic("admin", "wrong-password-42"), status=401))
    saw(client.post("/login", headers=basic("ghost", "ghost-password-7"), status=401))
    bob = saw(client.post_json("/user", {"name": "bob", "password": "bob-password-1"}, headers=a, status=201))
    bob_id = bob.json["user"]["public_id"]
    saw(client.post_json("/user", {"name": "eve", "password": "shortpw"}, headers=a, status=400))
    body = {"name": "mallory", "password": "mallory-password", "admin": True}
    saw(client.post_json("/user", body, headers=a, status=400))
    saw(client.get("/user", headers=a, status=200))
    saw(client.get(f"/user/{bob_id}", headers=a, status=200))
    b1 = {
        "x-access-token": saw(client.post("/login", headers=basic("bob", "bob-password-1"), status=200)).json["token"]
    }
    saw(client.patch_json(f"/user/{bob_id}", {"password": "bob-password-2"}, headers=a, status=200))
    saw(client.get("/me", headers=b1, status=401))
    b2 = {
        "Authorization": "Bearer "
        + saw(client.get("/login", headers=basic("bob", "bob-password-2"), status=200)).json["token"]
    }
    wrong_old = {"old_password": "wrong-password-42", "new_password": "bob-password-3"}
    saw(client.put_json("/me/password", wrong_old, headers=b2, status=403))
    saw(client.get(f"/todo?token={b2['Authorization'][7:]}", status=401))
    saw(client.post_json("/todo", {"text": "secret plans"}, headers=b2, status=201))
    # An unexpected failure while a password and a token are in flight.
    with monkeypatch.context() as patch:
        patch.setattr(store, "update_user", _explode)
        right_old = {"old_password": "bob-password-2", "new_password": "bob-password-3"}
        failed = saw(client.put_json("/me/password", right_old, headers=b2, status=500))
    assert failed.json == {"message": "Internal server error"}
    saw(client.post("/logout", headers=b2, status=200))
    saw(client.get("/me", headers=b2, status=401))

    assert "RuntimeError: the disk is on fire" in caplog.text  # the traceback went to the log
    secrets = passwords + tokens + [app.secret_key, "pbkdf2_sha256$"]
    secrets += [basic(n, p)["Authorization"][6:] for n in ("admin", "bob", "ghost") for p in passwords]
    with app.db.connection() as conn:
        hashes = [row[0] for row in conn.execute("SELECT password_hash FROM users")]
    secrets += [h.split("$", 2)[2] for h in hashes]  # salt and digest
    log_text = caplog.text + "".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    for response in seen:
        text = response.body.decode("ascii") + repr(response.headerlist)
        assert "Traceback" not in text
        issued = (response.json or {}).get("token")  # a login answer carries its own token, only
        for secret in secrets:
            assert secret == issued or secret not in text, (response.request.path, secret)
    for secret in secrets:
        assert secret not in log_text, secret


def _explode(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("the disk is on fire")


def test_user_password_is_never_in_an_account_view(client, admin_headers, user):
    listed = client.get("/user", headers=admin_headers, status=200)
    one = client.get(f"/user/{user['public_id']}", headers=admin_headers, status=200)
    for body in (listed.body, one.body):
        assert USER_PASSWORD.encode() not in body
        assert b"pbkdf2" not in body and b"password" not in body


# -- point 8: the waitress settings of `make run` (python -m todo_wsgi serve) -----------


@pytest.fixture
def serve_settings(monkeypatch, database):
    """The keyword arguments ``python -m todo_wsgi serve`` gives waitress.serve."""
    captured: dict[str, Any] = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **kwargs: captured.update(kwargs))
    monkeypatch.delenv("TODO_TRUSTED_PROXY", raising=False)

    def run(*args: str) -> dict[str, Any]:
        captured.clear()
        assert todo_wsgi_cli.main(["--database", database, "serve", *args]) == 0
        return dict(captured)

    return run


def test_serve_bounds_what_one_client_can_take(serve_settings):
    settings = serve_settings()
    assert settings["listen"] == "127.0.0.1:8080"  # loopback unless the operator says otherwise
    assert settings["threads"] == 4
    assert settings["connection_limit"] <= 100
    assert settings["channel_timeout"] <= 30
    assert settings["max_request_header_size"] <= 16384
    # waitress buffers a whole body before the app sees it: stop it near the app's own limit.
    assert 65536 < settings["max_request_body_size"] <= 65536 + 4096
    assert settings.get("expose_tracebacks", False) is False
    # No proxy is trusted unless named: forwarding headers are dropped, REMOTE_ADDR is the peer.
    assert "trusted_proxy" not in settings
    assert settings["clear_untrusted_proxy_headers"] is True


def test_serve_trusts_only_the_proxy_the_operator_names(serve_settings, monkeypatch):
    monkeypatch.setenv("TODO_TRUSTED_PROXY", "10.1.2.3")
    settings = serve_settings()
    assert settings["trusted_proxy"] == "10.1.2.3"
    assert settings["trusted_proxy_headers"] == "x-forwarded-for"
    assert settings.get("trusted_proxy_count", 1) == 1


class ServedApp(LiveServer):
    """A live server with the serve command's own waitress settings."""

    def __init__(self, app: Any, settings: dict[str, Any]) -> None:
        super().__init__(app, **{k: v for k, v in settings.items() if k != "listen"})

    def raw(self, request: bytes) -> int:
        """Send raw bytes; return the status code of the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(request)
            return int(sock.makefile("rb").readline().split()[1])

    def post_login(self, name: str, password: str, **headers: str) -> int:
        conn = self.connect()
        try:
            conn.request("POST", "/login", headers={**basic(name, password), **headers})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()


@pytest.fixture
def live(make_app, serve_settings):
    servers: list[ServedApp] = []

    def start() -> ServedApp:
        servers.append(ServedApp(make_app(), serve_settings()))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_served_body_over_the_limit_is_refused_before_it_is_sent(live):
    server = live()
    head = b"POST /todo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    # Not a byte of the body is sent: the answer comes from the headers alone.
    assert server.raw(head) == 413


def test_served_answers_name_no_server_software(live):
    server = live()
    conn = server.connect()
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 200 and response.getheader("Server") is None
    assert response.getheader("Date")  # RFC 9110 6.6.1: an origin server with a clock sends one


def test_served_headers_over_16_kib_are_refused(live):
    server = live()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
    assert server.raw(head) == 431


def test_served_forwarding_headers_from_an_untrusted_peer_do_not_dodge_throttling(live, app):
    add_account(app, "alice", USER_PASSWORD)
    server = live()
    for n in range(5):
        spoof = {"X-Forwarded-For": f"10.0.0.{n}", "Forwarded": f"for=10.0.1.{n}"}
        assert server.post_login("alice", "wrong-password", **spoof) == 401
    assert server.post_login("alice", USER_PASSWORD, **{"X-Forwarded-For": "10.9.9.9"}) == 429


def test_served_behind_a_named_proxy_the_forwarded_address_counts(live, app, monkeypatch):
    monkeypatch.setenv("TODO_TRUSTED_PROXY", "127.0.0.1")  # the test itself is the proxy
    add_account(app, "alice", USER_PASSWORD)
    server = live()
    for n in range(5):
        assert server.post_login("alice", "wrong-password", **{"X-Forwarded-For": "192.0.2.1"}) == 401
    assert server.post_login("alice", USER_PASSWORD, **{"X-Forwarded-For": "192.0.2.1"}) == 429
    assert server.post_login("alice", USER_PASSWORD, **{"X-Forwarded-For": "192.0.2.2"}) == 200
