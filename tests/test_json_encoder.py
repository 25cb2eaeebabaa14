"""The response encoder: compact ASCII JSON, written by CPython's C encoder built once,
or by the public json.JSONEncoder where that is missing; the same bytes either way."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

import todo_wsgi

# Each body with the exact text JSON gives it: compact, ASCII only (\u escapes,
# a character outside the BMP as its surrogate pair, a lone surrogate kept).
WRITTEN: tuple[tuple[dict[str, Any], str], ...] = (
    (
        {"todo": {"id": 1, "text": 'é ☃ 😀 \ud800 "q" \\ \n\t\x00', "complete": False}},
        r'{"todo":{"id":1,"text":"\u00e9 \u2603 \ud83d\ude00 \ud800 \"q\" \\ \n\t\u0000","complete":false}}',
    ),
    ({"todos": []}, '{"todos":[]}'),
    (
        {"none": None, "true": True, "float": 1.5, "big": 2**63, "nested": [1, [2, {}], {"k": "v"}]},
        '{"none":null,"true":true,"float":1.5,"big":9223372036854775808,"nested":[1,[2,{}],{"k":"v"}]}',
    ),
)


@pytest.mark.parametrize(("body", "text"), WRITTEN)
def test_the_encoder_writes_compact_ascii_json(body, text):
    encode = todo_wsgi.json_encoder()
    assert not hasattr(encode, "__self__")  # CPython: the C encoder, not the public one's method
    assert encode(body) == text


@pytest.mark.parametrize(("body", "text"), WRITTEN)
def test_without_the_c_encoder_the_public_one_writes_the_same(monkeypatch, body, text):
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    encode = todo_wsgi.json_encoder()
    assert isinstance(getattr(encode, "__self__", None), json.JSONEncoder)
    assert encode(body) == text


def test_a_value_json_cannot_hold_is_named_in_the_error():
    with pytest.raises(TypeError, match="Object of type datetime is not JSON serializable"):
        todo_wsgi.json_encoder()({"when": datetime.datetime(2026, 1, 1)})
