"""The verified-token cache (todo_wsgi.TokenCache) never lets through a token the full check refuses.

Each test first uses a token, so its claims are cached, then does what ends it
(API.md, "Authentication") and checks the cached token is refused all the same.
"""

from __future__ import annotations

from wsgiref.validate import validator

from webtest import TestApp

import todo_wsgi
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, add_account, login

INVALID = {"message": "Token is invalid!"}


def use(client, token, status=200):
    """A request that needs the token (and so caches its claims)."""
    return client.get("/todo", headers={"x-access-token": token}, status=status)


def test_a_used_token_is_remembered_once_verified(app, client, user_headers):
    use(client, user_headers["x-access-token"])
    assert app.tokens.get(user_headers["x-access-token"]) is not None


def test_a_cached_token_is_refused_after_logout(client, user_headers):
    token = user_headers["x-access-token"]
    use(client, token)
    client.post("/logout", headers=user_headers, status=200)
    assert use(client, token, status=401).json == INVALID


def test_a_cached_token_is_refused_after_its_password_changes(client, user_headers):
    token = user_headers["x-access-token"]
    use(client, token)
    client.put_json(
        "/me/password",
        {"old_password": USER_PASSWORD, "new_password": "another-password-2"},
        headers=user_headers,
        status=200,
    )
    assert use(client, token, status=401).json == INVALID


def test_a_cached_token_is_refused_after_its_account_is_deleted(client, user, user_headers, admin_headers):
    token = user_headers["x-access-token"]
    use(client, token)
    client.delete(f"/user/{user['public_id']}", headers=admin_headers, status=200)
    assert use(client, token, status=401).json == INVALID


def test_a_cached_token_is_refused_once_expired_by_the_clock(app, client, clock, user_headers):
    token = user_headers["x-access-token"]
    use(client, token)
    clock.advance(app.settings.token_ttl - 1)
    use(client, token, status=200)  # still valid one second before exp
    clock.advance(1)
    assert use(client, token, status=401).json == INVALID


def test_a_cached_admin_token_loses_admin_rights_at_once(app, client, admin_headers):
    other = add_account(app, "root2", ADMIN_PASSWORD, admin=True)
    other_headers = {"x-access-token": login(client, "root2", ADMIN_PASSWORD)}
    client.get("/user", headers=other_headers, status=200)
    client.patch_json(f"/user/{other['public_id']}", {"admin": False}, headers=admin_headers, status=200)
    client.get("/user", headers=other_headers, status=403)


def test_a_token_differing_from_a_cached_one_by_one_character_is_refused(client, user_headers):
    token = user_headers["x-access-token"]
    use(client, token)
    last = token[-1]
    forged = token[:-1] + ("A" if last != "A" else "B")
    assert use(client, forged, status=401).json == INVALID


def test_a_refused_token_is_not_remembered(app, client, user_headers):
    token = user_headers["x-access-token"]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    use(client, forged, status=401)
    assert app.tokens.get(forged) is None


def test_apps_with_different_keys_do_not_share_cached_tokens(make_app, database, user, user_headers):
    # A second app on the same database but another key: its cache is its own.
    client_a = TestApp(validator(make_app()))
    token = user_headers["x-access-token"]
    use(client_a, token)
    other = make_app(secret_key="another-secret-key-" + "y" * 32)
    client_b = TestApp(validator(other))
    assert use(client_b, token, status=401).json == INVALID
    assert other.tokens.get(token) is None


def test_the_cache_forgets_the_oldest_token_beyond_its_size():
    cache = todo_wsgi.TokenCache(2)
    for name in ("a", "b", "c"):
        cache.put(name, {"jti": name})
    assert len(cache) == 2
    assert cache.get("a") is None
    assert cache.get("b") == {"jti": "b"} and cache.get("c") == {"jti": "c"}


def test_the_app_cache_stays_bounded_however_many_tokens_are_used(app, client, user):
    app.tokens.size = 3
    for _ in range(5):
        use(client, login(client, "alice", USER_PASSWORD))
    assert len(app.tokens) == 3
