"""Beyond the seed, the access log: one line per request, never a secret (API.md)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from wsgiref.validate import validator

import pytest
from webtest import TestApp

import todo_wsgi
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, basic

LOGGER = "todo_wsgi.access"
LINE = re.compile(
    r"(?P<time>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z) (?P<address>\S+)"
    r" (?P<method>\S+) (?P<path>\S+) (?P<status>[0-9]{3}) (?P<ms>[0-9]+\.[0-9])ms (?P<who>\S+)"
)


@pytest.fixture
def access(caplog):
    """The access-log messages of the requests made after the fixture starts."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    caplog.clear()

    def messages():
        return [r.getMessage() for r in caplog.records if r.name == LOGGER]

    return messages


def test_access_log_writes_one_line_per_request(client, admin_headers, access):
    client.get("/healthz", status=200)
    client.get("/todo", headers=admin_headers, status=200)
    client.get("/nowhere", status=404)
    client.delete("/healthz", status=405)
    assert len(access()) == 4
    assert all("\n" not in message for message in access())


def test_access_log_line_has_method_path_status_duration_and_public_id(client, admin, admin_headers, access):
    client.post_json("/todo", {"text": "buy milk"}, headers=admin_headers, status=201)
    (line,) = access()
    found = LINE.fullmatch(line)
    assert found, line
    assert (found["method"], found["path"], found["status"], found["who"]) == (
        "POST",
        "/todo",
        "201",
        admin["public_id"],
    )
    assert float(found["ms"]) >= 0


def test_access_log_writes_a_dash_when_no_account_is_known(client, access):
    client.get("/todo", status=401)
    client.get("/todo", headers={"x-access-token": "not-a-token"}, status=401)
    client.get("/healthz", status=200)
    assert [LINE.fullmatch(line)["who"] for line in access()] == ["-", "-", "-"]


def test_access_log_names_a_forbidden_account(client, user, user_headers, access):
    client.get("/user", headers=user_headers, status=403)
    (line,) = access()
    assert LINE.fullmatch(line)["who"] == user["public_id"]


def test_access_log_names_the_account_that_logged_in(client, user, access):
    client.post("/login", headers=basic("alice", USER_PASSWORD), status=200)
    client.post("/login", headers=basic("alice", "wrong-password"), status=401)
    assert [LINE.fullmatch(line)["who"] for line in access()] == [user["public_id"], "-"]


def test_access_log_never_holds_a_token_password_body_or_query_value(client, admin, access):
    token = client.post("/login", headers=basic("admin", ADMIN_PASSWORD), status=200).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    client.post_json("/todo", {"text": "body-secret"}, headers=headers, status=201)
    client.post_json("/user", {"name": "bob", "password": "password-secret"}, headers=headers, status=201)
    client.put_json(
        "/me/password", {"old_password": ADMIN_PASSWORD, "new_password": "another-secret"}, headers=headers, status=200
    )
    client.get("/todo?token=query-secret&limit=7", headers=headers, status=401)
    client.get("/healthz?password=query-secret", status=200)
    logged = "\n".join(access())
    assert len(access()) == 6
    for secret in (token, token.split(".")[2], ADMIN_PASSWORD, "body-secret", "password-secret", "another-secret"):
        assert secret not in logged
    assert "query-secret" not in logged
    assert "?" not in logged


def test_access_log_cannot_be_forged_with_a_newline_in_the_path(client, access):
    client.get("/todo%0a127.0.0.1%20GET%20/forged%20200", status=404)
    (line,) = access()
    assert "\n" not in line and "\r" not in line
    assert LINE.fullmatch(line), line


def test_access_log_logs_a_failing_request_once(make_app, access, monkeypatch):
    def broken(req):
        raise RuntimeError("boom")

    app = make_app()
    monkeypatch.setattr(app, "router", todo_wsgi.Router([("GET", "/boom", broken)]))
    TestApp(validator(app)).get("/boom", status=500)
    (line,) = access()
    assert LINE.fullmatch(line)["status"] == "500"


@pytest.fixture
def served(tmp_path):
    """``python -m todo_wsgi serve`` on an ephemeral port; yields (base URL, process); stopped at the end."""
    env = {**os.environ, "TODO_DATABASE": str(tmp_path / "served.db")}
    env.pop("TODO_TRUSTED_PROXY", None)
    command = [sys.executable, "-m", "todo_wsgi", "serve", "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(30, process.kill)  # never hang the suite on a server that did not start
    watchdog.start()
    try:
        for line in process.stderr:
            found = re.search(r"Serving on (http://127\.0\.0\.1:[0-9]+)", line)
            if found:
                yield found[1], process
                break
        else:
            pytest.fail("the server exited before serving")
    finally:
        watchdog.cancel()
        process.kill()
        process.wait(timeout=10)


def test_serve_command_writes_one_access_line_per_request_without_query_values(served):
    base, process = served
    with urllib.request.urlopen(f"{base}/healthz?token=query-secret", timeout=10) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/me?password=query-secret", timeout=10)
    assert refused.value.code == 401
    process.terminate()
    _, rest = process.communicate(timeout=10)
    lines = [line for line in rest.splitlines() if line.startswith("INFO:todo_wsgi.access:")]
    assert [line.split(" ")[2:5] for line in lines] == [
        ["GET", "/healthz", "200"],
        ["GET", "/me", "401"],
    ]
    assert "query-secret" not in rest
    assert "Traceback" not in rest and "Exception ignored" not in rest, rest
