"""The benchmark's ceiling (bench/ceiling.py) stays a fair yardstick for todo-wsgi."""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path
from wsgiref.validate import validator

import jwt
import pytest
from webtest import TestApp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import ceiling
import common


def test_the_ceiling_answers_as_long_a_body_as_a_three_item_list(client, user_headers):
    for text in common.TEXTS:
        client.post_json("/todo", {"text": text}, headers=user_headers, status=201)
    listed = client.get("/todo", headers=user_headers, status=200)
    answered = TestApp(validator(ceiling.make_ceiling())).get("/todo", status=200)
    assert len(answered.body) == len(listed.body)
    assert answered.headers["Content-Type"] == listed.headers["Content-Type"] == "application/json"


@pytest.mark.sqlite_only  # the floor reads through store.py, as todo-wsgi on SQLite does
def test_the_floor_answers_the_ceilings_body_after_reading_the_account_from_the_database(database, app, user):
    floor = TestApp(validator(ceiling.make_floor(database, user["public_id"])))
    assert floor.get("/todo", status=200).body == ceiling.DEFAULT_BODY
    assert floor.get("/todo/1", status=200).body == ceiling.DEFAULT_BODY
    with app.db.connection() as conn:
        app.store.delete_user(conn, None, user["public_id"])
    with pytest.raises(AssertionError, match="the floor's account is missing"):
        floor.get("/todo")


@pytest.mark.sqlite_only  # the first cut reads SQLite, as the did
def test_the_first_cut_answers_what_todo_wsgi_answers_for_a_list_and_a_get(database, app, client, user, user_headers):
    for text in common.TEXTS:
        client.post_json("/todo", {"text": text}, headers=user_headers, status=201)
    first_cut = TestApp(validator(ceiling.make_first_cut(database, app.secret_key)))
    # PyJWT checks exp and iat on the real clock, not the tests' settable one.
    now = time.time()
    claims = {"public_id": user["public_id"], "iat": now, "exp": now + 60, "jti": "first-cut"}
    headers = {"x-access-token": jwt.encode(claims, app.secret_key, algorithm="HS256")}
    listed = client.get("/todo", headers=user_headers, status=200).json
    assert first_cut.get("/todo", headers=headers, status=200).json == listed
    one = listed["todos"][1]
    assert first_cut.get(f"/todo/{one['id']}", headers=headers, status=200).json == {"todo": one}
    first_cut.get("/todo", headers={"x-access-token": "forged"}, status=401)


@pytest.mark.sqlite_only
def test_the_floor_with_the_access_log_writes_todo_wsgis_line(database, app, user, caplog):
    floor = TestApp(validator(ceiling.make_floor(database, user["public_id"], access_log=True)))
    with caplog.at_level(logging.INFO, logger="todo_wsgi.access"):
        floor.get("/todo/7", status=200)
    [line] = [r.getMessage() for r in caplog.records if r.name == "todo_wsgi.access"]
    assert re.fullmatch(rf"\S+Z - GET /todo/7 200 \d+\.\dms {user['public_id']}", line)
