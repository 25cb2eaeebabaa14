"""The benchmark's ceiling (bench/ceiling.py) stays a fair yardstick for todo-wsgi."""

from __future__ import annotations

import sys
from pathlib import Path
from wsgiref.validate import validator

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
