"""The response encoder: compact ASCII JSON, the same bytes from CPython's C encoder
built once as from the public json.JSONEncoder it stands in for."""

from __future__ import annotations

import json
from typing import Any

import pytest

import todo_wsgi

BODIES: tuple[dict[str, Any], ...] = (
    {"todo": {"id": 1, "text": 'é ☃ 😀 \ud800 "quoted" \\ \n\t\x00', "complete": False}},
    {"todos": []},
    {"none": None, "true": True, "float": 1.5, "big": 2**63, "nested": [1, [2, {}], {"k": "v"}]},
)


def public(body: dict[str, Any]) -> str:
    return json.JSONEncoder(separators=(",", ":"), check_circular=False).encode(body)


@pytest.mark.parametrize("body", BODIES)
def test_the_encoder_writes_what_the_public_encoder_writes(body):
    encoded = todo_wsgi.json_encoder()(body)
    assert encoded == public(body)
    assert encoded.isascii()
    assert json.loads(encoded) == body


@pytest.mark.parametrize("body", BODIES)
def test_without_the_c_encoder_the_public_one_serves(monkeypatch, body):
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    assert todo_wsgi.json_encoder()(body) == public(body)


def test_a_value_json_cannot_hold_raises_rather_than_writing_something():
    with pytest.raises(TypeError):
        todo_wsgi.json_encoder()({"when": object()})
