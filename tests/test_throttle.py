"""Login throttling: 5 failures per name and client address, then 429 until the window passes.

Issue 3, point 7, as API.md's "Beyond the seed" describes it. Time moves with
the fake clock (conftest's ``clock``), never with sleeps. The client address is
REMOTE_ADDR, set per request through WebTest's ``extra_environ``.
"""

from __future__ import annotations

import unicodedata
from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, add_account, basic

HERE, THERE = "203.0.113.7", "198.51.100.9"


def attempt(client, name, password, address=HERE, status=None, **headers):
    return client.post(
        "/login", headers={**basic(name, password), **headers}, extra_environ={"REMOTE_ADDR": address}, status=status
    )


def fail(client, name, times, address=HERE):
    for _ in range(times):
        attempt(client, name, "wrong-password", address, status=401)


def assert_throttled(response, retry_after):
    assert response.status_int == 429
    assert response.json == {"message": "Too many failed logins; try again later"}
    assert response.headers["Retry-After"] == str(retry_after)
    assert "token" not in response.text


def test_five_failures_then_429_even_for_the_right_password(client, user):
    fail(client, "alice", 5)
    assert_throttled(attempt(client, "alice", USER_PASSWORD, status=429), 900)
    assert_throttled(attempt(client, "alice", "wrong-password", status=429), 900)


def test_four_failures_do_not_throttle(client, user):
    fail(client, "alice", 4)
    attempt(client, "alice", USER_PASSWORD, status=200)


def test_unknown_name_is_throttled_alike(client, user):
    fail(client, "nobody", 5)
    assert_throttled(attempt(client, "nobody", "any-password", status=429), 900)


def test_count_is_per_name_and_address_pair(client, user, admin):
    fail(client, "alice", 5, HERE)
    attempt(client, "alice", USER_PASSWORD, HERE, status=429)
    # The same name from another address, another name from the same address.
    attempt(client, "alice", USER_PASSWORD, THERE, status=200)
    attempt(client, "admin", ADMIN_PASSWORD, HERE, status=200)


def test_every_spelling_of_a_name_that_reaches_its_account_counts_as_that_name(app, client):
    # Login finds an account by the name given or its NFC form: a decomposed spelling must
    # not open a fresh count of guesses against the same account.
    composed = "ren\u00e9e"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    add_account(app, composed, USER_PASSWORD)
    fail(client, composed, 3)
    fail(client, decomposed, 2)
    assert_throttled(attempt(client, decomposed, USER_PASSWORD, status=429), 900)
    assert_throttled(attempt(client, composed, USER_PASSWORD, status=429), 900)


def test_forwarding_headers_do_not_change_the_address(client, user):
    # Only waitress's trusted_proxy may rewrite REMOTE_ADDR; the app ignores these headers.
    for n in range(5):
        spoof = {"X-Forwarded-For": f"10.0.0.{n}", "Forwarded": f"for=10.0.1.{n}", "X-Real-IP": f"10.0.2.{n}"}
        attempt(client, "alice", "wrong-password", status=401, **spoof)
    attempt(client, "alice", USER_PASSWORD, status=429, **{"X-Forwarded-For": "10.9.9.9"})


def test_success_clears_the_count(client, user):
    fail(client, "alice", 4)
    attempt(client, "alice", USER_PASSWORD, status=200)
    fail(client, "alice", 4)
    attempt(client, "alice", USER_PASSWORD, status=200)
    fail(client, "alice", 5)
    attempt(client, "alice", USER_PASSWORD, status=429)


def test_success_clears_only_its_own_address(client, user):
    fail(client, "alice", 5, THERE)
    attempt(client, "alice", USER_PASSWORD, HERE, status=200)
    attempt(client, "alice", USER_PASSWORD, THERE, status=429)


def test_retry_after_counts_down_and_the_window_passes(client, user, clock):
    fail(client, "alice", 5)
    clock.advance(100)
    assert_throttled(attempt(client, "alice", USER_PASSWORD, status=429), 800)
    clock.advance(799.5)
    assert_throttled(attempt(client, "alice", USER_PASSWORD, status=429), 1)  # rounded up, never 0
    clock.advance(0.5)
    attempt(client, "alice", USER_PASSWORD, status=200)


def test_failures_spread_over_more_than_a_window_do_not_throttle(client, user, clock):
    fail(client, "alice", 3)
    clock.advance(901)
    fail(client, "alice", 4)
    attempt(client, "alice", USER_PASSWORD, status=200)


def test_limit_and_window_are_create_app_settings(make_app, clock):
    app = make_app(login_max_failures=2, login_window=60)
    add_account(app, "alice", USER_PASSWORD)
    client = TestApp(validator(app))
    fail(client, "alice", 2)
    assert_throttled(attempt(client, "alice", USER_PASSWORD, status=429), 60)
    clock.advance(60)
    attempt(client, "alice", USER_PASSWORD, status=200)


def test_limit_and_window_are_environment_settings(make_app, clock, monkeypatch):
    monkeypatch.setenv("TODO_LOGIN_MAX_FAILURES", "3")
    monkeypatch.setenv("TODO_LOGIN_WINDOW", "120")
    app = make_app()
    assert (app.settings.login_max_failures, app.settings.login_window) == (3, 120)
    add_account(app, "alice", USER_PASSWORD)
    client = TestApp(validator(app))
    fail(client, "alice", 3)
    assert_throttled(attempt(client, "alice", USER_PASSWORD, status=429), 120)


@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5"])
def test_a_bad_throttle_setting_is_refused_at_start(make_app, monkeypatch, value):
    monkeypatch.setenv("TODO_LOGIN_MAX_FAILURES", value)
    with pytest.raises(ValueError, match="TODO_LOGIN_MAX_FAILURES"):
        make_app()


def test_count_is_kept_in_the_database_and_shared_by_apps(make_app, clock):
    first, second = make_app(), make_app()
    add_account(first, "alice", USER_PASSWORD)
    fail(TestApp(validator(first)), "alice", 5)
    other = TestApp(validator(second))
    assert_throttled(attempt(other, "alice", USER_PASSWORD, status=429), 900)
    # And it survives a restart: a third app opened afterwards sees it too.
    first.close()
    assert_throttled(attempt(TestApp(validator(make_app())), "alice", USER_PASSWORD, status=429), 900)


def test_throttled_attempt_does_not_hash(app, client, user, monkeypatch):
    fail(client, "alice", 5)

    def no_hashing(*args, **kwargs):
        raise AssertionError("a throttled attempt must not spend a PBKDF2 run")

    monkeypatch.setattr(app.hasher, "kdf", no_hashing)
    attempt(client, "alice", USER_PASSWORD, status=429)


def test_rows_of_passed_windows_are_pruned_so_invented_names_cannot_grow_the_table(app, client, clock):
    def rows():
        with app.db.connection() as conn:
            return conn.execute("SELECT count(*) FROM login_failures").fetchone()[0]

    for n in range(20):
        attempt(client, f"invented-{n}", "any-password", status=401)
    assert rows() == 20
    clock.advance(901)
    attempt(client, "one-more", "any-password", status=401)
    assert rows() == 1
