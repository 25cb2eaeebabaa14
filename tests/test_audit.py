"""The audit trail (API.md, "Audit trail"): who did what, recorded with the change itself."""

from __future__ import annotations

import re
from typing import Any
from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, add_account, basic, login

ISO_Z = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
ADDRESS = "192.0.2.7"


@pytest.fixture
def audited(app):
    """A client whose requests come from ADDRESS."""
    return TestApp(validator(app), extra_environ={"REMOTE_ADDR": ADDRESS})


def events(client: Any, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    return list(client.get("/audit", params=query, headers=headers, status=200).json["events"])


def actions(client: Any, headers: dict[str, str], **query: Any) -> list[str]:
    return [event["action"] for event in events(client, headers, **query)]


def test_an_event_says_when_who_what_to_whom_and_from_where(audited, admin, user):
    headers = {"x-access-token": login(audited, "admin", ADMIN_PASSWORD)}
    audited.put(f"/user/{user['public_id']}", headers=headers, status=200)
    (event,) = events(audited, headers, action="account.promoted")
    assert set(event) == {"id", "time", "actor", "action", "target", "address"}
    assert ISO_Z.fullmatch(event["time"])
    assert (event["actor"], event["target"], event["address"]) == (admin["public_id"], user["public_id"], ADDRESS)


def test_every_account_change_is_recorded_once_per_change(audited, admin):
    headers = {"x-access-token": login(audited, "admin", ADMIN_PASSWORD)}
    created = audited.post_json("/user", {"name": "bob", "password": "bob-password-1"}, headers=headers, status=201)
    bob = created.json["user"]["public_id"]
    change = {"name": "robert", "password": "bob-password-2", "admin": True}
    audited.patch_json(f"/user/{bob}", change, headers=headers, status=200)
    audited.patch_json(f"/user/{bob}", {"admin": False}, headers=headers, status=200)
    audited.patch_json(f"/user/{bob}", {"admin": False}, headers=headers, status=200)  # no change, no event
    audited.delete(f"/user/{bob}", headers=headers, status=200)
    assert actions(audited, headers, target=bob) == [
        "account.deleted",
        "account.demoted",
        "account.promoted",
        "account.password_reset",
        "account.renamed",
        "account.created",
    ]


def test_logins_logouts_and_own_password_changes_are_recorded(audited, admin, user):
    audited.post("/login", headers=basic("alice", "wrong-password"), status=401)
    alice = {"x-access-token": login(audited, "alice", USER_PASSWORD)}
    change = {"old_password": USER_PASSWORD, "new_password": "new-password-2"}
    audited.put_json("/me/password", change, headers=alice, status=200)
    alice = {"x-access-token": login(audited, "alice", "new-password-2")}
    audited.post("/logout", headers=alice, status=200)
    headers = {"x-access-token": login(audited, "admin", ADMIN_PASSWORD)}
    assert actions(audited, headers, target=user["public_id"]) == [
        "logout",
        "login.succeeded",
        "account.password_changed",
        "login.succeeded",
        "login.failed",
        "account.created",  # by the operator (add_account, as the command line does)
    ]
    (failed,) = events(audited, headers, action="login.failed")
    assert failed["actor"] is None and failed["address"] == ADDRESS
    assert events(audited, headers, action="account.created", target=user["public_id"])[0]["actor"] == "cli"


def test_a_throttled_login_is_recorded(make_app, admin):
    app = make_app(login_max_failures=1)
    client = TestApp(validator(app), extra_environ={"REMOTE_ADDR": ADDRESS})
    add_account(app, "carol", USER_PASSWORD)
    client.post("/login", headers=basic("carol", "wrong-password"), status=401)
    client.post("/login", headers=basic("carol", "wrong-password"), status=429)
    headers = {"x-access-token": login(TestApp(validator(app)), "admin", ADMIN_PASSWORD)}
    assert "login.throttled" in actions(TestApp(validator(app)), headers)


def test_a_replayed_refresh_token_is_recorded_as_session_revoked(audited, admin, user):
    pair = audited.post("/login", headers=basic("alice", USER_PASSWORD), status=200).json
    audited.post_json("/refresh", {"refresh_token": pair["refresh_token"]}, status=200)
    audited.post_json("/refresh", {"refresh_token": pair["refresh_token"]}, status=401)
    headers = {"x-access-token": login(audited, "admin", ADMIN_PASSWORD)}
    (event,) = events(audited, headers, action="session.revoked")
    assert event["target"] == user["public_id"] and event["address"] == ADDRESS


def test_a_refused_change_records_nothing(audited, admin):
    headers = {"x-access-token": login(audited, "admin", ADMIN_PASSWORD)}
    before = events(audited, headers)
    audited.delete(f"/user/{admin['public_id']}", headers=headers, status=409)
    audited.post_json("/user", {"name": "admin", "password": "password-1"}, headers=headers, status=409)
    assert events(audited, headers) == before


def test_the_audit_trail_is_for_admins_only(audited, user_headers):
    audited.get("/audit", headers=user_headers, status=403)
    audited.get("/audit", status=401)


def test_events_come_newest_first_and_page_with_a_link(audited, admin):
    headers = {"x-access-token": login(audited, "admin", ADMIN_PASSWORD)}
    for n in range(3):
        audited.post_json("/user", {"name": f"user{n}", "password": "password-1"}, headers=headers, status=201)
    everything = events(audited, headers)
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    first = audited.get("/audit", params={"limit": 2}, headers=headers, status=200)
    assert first.json["events"] == everything[:2]
    assert 'rel="next"' in first.headers["Link"] and "offset=2" in first.headers["Link"]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("offset=-1", "offset"),
        ("action=a&action=b", "action"),
    ],
)
def test_the_audit_trail_refuses_a_bad_paging_value_naming_the_parameter(audited, admin, query, name):
    headers = {"x-access-token": login(audited, "admin", ADMIN_PASSWORD)}
    response = audited.get(f"/audit?{query}", headers=headers, status=400)
    assert f"'{name}'" in response.json["message"]
    assert set(response.json) == {"message"}


def test_filters_combine_and_a_filter_nothing_matches_gives_an_empty_list(audited, admin, user):
    headers = {"x-access-token": login(audited, "admin", ADMIN_PASSWORD)}
    audited.put(f"/user/{user['public_id']}", headers=headers, status=200)
    found = events(audited, headers, action="account.promoted", actor=admin["public_id"], target=user["public_id"])
    assert len(found) == 1
    assert events(audited, headers, action="no.such.action") == []
    assert events(audited, headers, actor="") == []


def test_deleting_an_account_keeps_its_events(audited, admin, user, user_headers):
    headers = {"x-access-token": login(audited, "admin", ADMIN_PASSWORD)}
    audited.delete(f"/user/{user['public_id']}", headers=headers, status=200)
    assert "login.succeeded" in actions(audited, headers, target=user["public_id"])


def test_no_event_ever_holds_a_password_hash_or_token(app, audited, admin, user):
    pair = audited.post("/login", headers=basic("alice", USER_PASSWORD), status=200).json
    refreshed = audited.post_json("/refresh", {"refresh_token": pair["refresh_token"]}, status=200).json
    alice = {"x-access-token": refreshed["token"]}
    audited.put_json("/me/password", {"old_password": USER_PASSWORD, "new_password": "new-password-2"}, headers=alice)
    audited.post("/login", headers=basic("alice", "wrong-guess-1"), status=401)
    headers = {"x-access-token": login(audited, "admin", ADMIN_PASSWORD)}
    bob = audited.post_json("/user", {"name": "bob", "password": "bob-password-1"}, headers=headers, status=201)
    bob_id = bob.json["user"]["public_id"]
    # The rest of an account's life: a session replayed, a logout, an admin's reset and
    # rename, a promotion, throttled guesses, the command line, the deletion.
    bobs = audited.post("/login", headers=basic("bob", "bob-password-1"), status=200).json
    audited.post_json("/refresh", {"refresh_token": bobs["refresh_token"]}, status=200)
    audited.post_json("/refresh", {"refresh_token": bobs["refresh_token"]}, status=401)  # replayed
    bob_again = audited.post("/login", headers=basic("bob", "bob-password-1"), status=200).json
    audited.post("/logout", headers={"x-access-token": bob_again["token"]}, status=200)
    change = {"password": "reset-password-3", "name": "robert"}
    audited.patch_json(f"/user/{bob_id}", change, headers=headers, status=200)
    audited.put(f"/user/{bob_id}", headers=headers, status=200)
    for _ in range(7):
        audited.post("/login", headers=basic("robert", "guess-robert-4"), expect_errors=True)
    import todo_wsgi_cli

    todo_wsgi_cli.main(["--database", app.settings.database, "unlock", "robert"])
    audited.delete(f"/user/{bob_id}", headers=headers, status=200)
    with app.db.connection() as conn:
        rows = conn.execute("SELECT * FROM audit_events").fetchall()
        hashes = [row[0] for row in conn.execute("SELECT password_hash FROM users").fetchall()]
    text = repr([tuple(row) for row in rows])
    secrets = [USER_PASSWORD, "new-password-2", "wrong-guess-1", "bob-password-1", ADMIN_PASSWORD, "pbkdf2"]
    secrets += ["reset-password-3", "guess-robert-4"]
    secrets += [pair["token"], pair["refresh_token"], refreshed["token"], refreshed["refresh_token"], *hashes]
    secrets += [bobs["token"], bobs["refresh_token"], bob_again["token"], bob_again["refresh_token"]]
    actions_seen = {row[3] for row in rows}
    assert {
        "session.revoked",
        "logout",
        "account.password_reset",
        "account.renamed",
        "account.promoted",
    } <= actions_seen
    assert {"login.throttled", "account.unlocked", "account.deleted"} <= actions_seen
    for secret in secrets:
        assert secret not in text


def test_events_older_than_the_retention_are_pruned(make_app, clock, admin):
    app = make_app(audit_retention_days=1)
    client = TestApp(validator(app))
    login(client, "admin", ADMIN_PASSWORD)
    clock.advance(86400 + 1)
    headers = {"x-access-token": login(client, "admin", ADMIN_PASSWORD)}
    assert actions(client, headers) == ["login.succeeded"]


def test_one_address_records_at_most_its_budget_plus_one_refused_logins_per_window(make_app, admin):
    app = make_app(login_max_failures_per_address=3)
    client = TestApp(validator(app), extra_environ={"REMOTE_ADDR": ADDRESS})
    for n in range(10):
        client.post("/login", headers=basic(f"invented-{n}", "any-password"), expect_errors=True)
    with app.db.connection() as conn:
        (recorded,) = conn.execute(
            "SELECT count(*) FROM audit_events WHERE action IN ('login.failed', 'login.throttled')"
        ).fetchone()
    assert recorded == 3 + 1


def recorded(app: Any, *names: str) -> int:
    """How many events of these actions the trail holds."""
    with app.db.connection() as conn:
        marks = ", ".join("?" if app.store.BACKEND == "sqlite" else "%s" for _ in names)
        return int(conn.execute(f"SELECT count(*) FROM audit_events WHERE action IN ({marks})", names).fetchone()[0])


def test_every_throttled_login_is_recorded_within_the_addresss_budget(make_app, user):
    app = make_app(login_max_failures=2, login_max_failures_per_address=50)
    client = TestApp(validator(app), extra_environ={"REMOTE_ADDR": ADDRESS})
    statuses = [
        client.post("/login", headers=basic("alice", "wrong-password"), expect_errors=True).status_int for _ in range(8)
    ]
    assert statuses == [401, 401] + [429] * 6
    assert (recorded(app, "login.failed"), recorded(app, "login.throttled")) == (2, 6)


def test_wrong_old_passwords_record_at_most_the_addresss_budget_plus_one(make_app):
    app = make_app(login_max_failures=100, login_max_failures_per_address=3)
    client = TestApp(validator(app), extra_environ={"REMOTE_ADDR": ADDRESS})
    from tests.conftest import add_account as add

    add(app, "alice", USER_PASSWORD)
    headers = {"x-access-token": login(client, "alice", USER_PASSWORD)}
    change = {"old_password": "not-the-password", "new_password": "another-password-1"}
    for _ in range(12):
        client.put_json("/me/password", change, headers=headers, expect_errors=True)
    assert recorded(app, "login.failed", "login.throttled") == 3 + 1


@pytest.mark.parametrize(
    ("change", "action"),
    [
        (
            lambda c, admin, user, mine: c.delete(f"/user/{user['public_id']}", headers=admin, status=500),
            "account.deleted",
        ),
        (
            lambda c, admin, user, mine: c.put(f"/user/{user['public_id']}", headers=admin, status=500),
            "account.promoted",
        ),
        (
            lambda c, admin, user, mine: c.patch_json(
                f"/user/{user['public_id']}", {"name": "al"}, headers=admin, status=500
            ),
            "account.renamed",
        ),
        (
            lambda c, admin, user, mine: c.put_json(
                "/me/password",
                {"old_password": USER_PASSWORD, "new_password": "changed-password-1"},
                headers=mine,
                status=500,
            ),
            "account.password_changed",
        ),
        (lambda c, admin, user, mine: c.post("/logout", headers=mine, status=500), "logout"),
    ],
)
def test_an_event_that_cannot_be_written_undoes_its_change(
    app, client, admin_headers, user, user_headers, monkeypatch, change, action
):
    # The event is written in the change's own transaction: if it fails, so does the change.
    real_record = app.store._record

    def failing_record(conn, caller, recorded_action, target):
        real_record(conn, caller, recorded_action, target)
        if recorded_action == action:
            raise RuntimeError("the audit trail cannot be written")

    def snapshot() -> dict[str, Any]:
        with app.db.connection() as conn:
            return {
                table: sorted(map(tuple, conn.execute(f"SELECT * FROM {table}").fetchall()), key=repr)
                for table in ("users", "todos", "sessions", "audit_events")
            }

    before = snapshot()
    monkeypatch.setattr(app.store, "_record", failing_record)
    change(client, admin_headers, user, user_headers)
    monkeypatch.undo()
    assert snapshot() == before
