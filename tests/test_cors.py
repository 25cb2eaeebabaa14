"""Beyond the seed, CORS: off by default; for listed origins, the Fetch standard (API.md)."""

from __future__ import annotations

from wsgiref.validate import validator

import pytest
from webtest import TestApp

from tests.conftest import ADMIN_PASSWORD, basic

LISTED = "https://app.example"
OTHER_LISTED = "http://localhost:3000"
UNLISTED = "https://evil.example"
EXPOSED = "ETag, Link, Location, Retry-After, WWW-Authenticate"


def cors_headers(response):
    return {name: value for name, value in response.headers.items() if name.lower().startswith("access-control-")}


def vary(response):
    return [item.strip().lower() for value in response.headers.getall("Vary") for item in value.split(",")]


def preflight(client, path, origin, method="POST", headers="content-type, x-access-token", status=204):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
        status=status,
    )


@pytest.fixture
def cors_client(make_app):
    return TestApp(validator(make_app(cors_origins=f"{LISTED}, {OTHER_LISTED}/")))


@pytest.fixture
def cors_token(cors_client, admin):
    response = cors_client.post("/login", headers=basic("admin", ADMIN_PASSWORD), status=200)
    return {"x-access-token": response.json["token"]}


# -- off by default ------------------------------------------------------------------------


def test_cors_is_off_by_default_even_for_a_request_with_an_origin(client, admin_headers):
    response = client.get("/todo", headers={**admin_headers, "Origin": LISTED}, status=200)
    assert cors_headers(response) == {}
    assert "Vary" not in response.headers


def test_cors_off_answers_a_preflight_as_any_options_request(client):
    response = preflight(client, "/todo", LISTED, status=405)
    assert cors_headers(response) == {}
    assert "OPTIONS" not in response.headers["Allow"]


# -- preflight -------------------------------------------------------------------------------


def test_preflight_from_a_listed_origin_needs_no_token_and_allows_the_paths_methods(cors_client):
    response = preflight(cors_client, "/todo", LISTED)
    assert response.body == b""
    assert response.headers["Access-Control-Allow-Origin"] == LISTED
    assert "Origin" in response.headers["Vary"]
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST"} <= methods
    assert not methods & {"PUT", "PATCH", "DELETE"}


def test_preflight_allows_the_token_authorization_content_type_and_conditional_headers(cors_client):
    response = preflight(cors_client, "/todo/1", LISTED, method="PATCH")
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"x-access-token", "authorization", "content-type"} <= allowed
    assert {"idempotency-key", "if-match", "if-none-match"} <= allowed
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "PUT", "PATCH", "DELETE"} <= methods


def test_preflight_answers_each_listed_origin_with_itself(cors_client):
    response = preflight(cors_client, "/me", OTHER_LISTED, method="GET")
    assert response.headers["Access-Control-Allow-Origin"] == OTHER_LISTED


def test_preflight_from_an_unlisted_origin_gets_no_access_control_header(cors_client):
    response = preflight(cors_client, "/todo", UNLISTED, status=405)
    assert cors_headers(response) == {}
    assert "origin" in vary(response)


def test_preflight_to_an_unknown_path_fails_without_allowing_methods(cors_client):
    response = preflight(cors_client, "/nowhere", LISTED, status=404)
    assert "Access-Control-Allow-Methods" not in response.headers


# -- actual requests ----------------------------------------------------------------------------


def test_answer_to_a_listed_origin_carries_allow_origin_vary_and_expose_headers(cors_client, cors_token):
    response = cors_client.get("/todo", headers={**cors_token, "Origin": LISTED}, status=200)
    assert response.headers["Access-Control-Allow-Origin"] == LISTED
    assert response.headers["Access-Control-Expose-Headers"] == EXPOSED
    assert "origin" in vary(response)


def test_error_to_a_listed_origin_carries_the_cors_headers_too(cors_client):
    response = cors_client.get("/todo", headers={"Origin": LISTED}, status=401)
    assert response.headers["Access-Control-Allow-Origin"] == LISTED
    assert response.headers["Access-Control-Expose-Headers"] == EXPOSED
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "origin" in vary(response)


def test_created_answer_to_a_listed_origin_exposes_location(cors_client, cors_token):
    response = cors_client.post_json("/todo", {"text": "x"}, headers={**cors_token, "Origin": LISTED}, status=201)
    assert response.headers["Access-Control-Allow-Origin"] == LISTED
    assert "Location" in response.headers["Access-Control-Expose-Headers"]


def test_unlisted_origin_gets_no_access_control_header(cors_client, cors_token):
    for headers, status in ((cors_token, 200), ({}, 401)):
        response = cors_client.get("/todo", headers={**headers, "Origin": UNLISTED}, status=status)
        assert cors_headers(response) == {}


def test_origin_is_matched_exactly(cors_client, cors_token):
    for origin in (LISTED + "/", LISTED.upper(), LISTED + ":443", "null", LISTED + ".evil.example"):
        response = cors_client.get("/todo", headers={**cors_token, "Origin": origin}, status=200)
        assert cors_headers(response) == {}


def test_every_answer_varies_on_origin_when_cors_is_on(cors_client, cors_token):
    """A shared cache must not hand one origin's answer (with or without CORS headers) to another."""
    for headers in ({"Origin": UNLISTED}, {}, {"Origin": LISTED}):
        response = cors_client.get("/todo", headers={**cors_token, **headers}, status=200)
        assert vary(response).count("origin") == 1


def test_cors_origins_are_read_from_the_environment(make_app, monkeypatch):
    monkeypatch.setenv("TODO_CORS_ORIGINS", f"{UNLISTED},{OTHER_LISTED}")
    client = TestApp(validator(make_app()))
    for origin in (UNLISTED, OTHER_LISTED):
        response = client.get("/healthz", headers={"Origin": origin}, status=200)
        assert response.headers["Access-Control-Allow-Origin"] == origin
    assert cors_headers(client.get("/healthz", headers={"Origin": LISTED}, status=200)) == {}
