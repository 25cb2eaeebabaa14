"""The OpenAPI document: valid 3.1, the same operations as the route table, served without a token."""

from __future__ import annotations

import importlib.metadata
import json
import re
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from webtest import TestApp

import todo_wsgi

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
CONVERTER_TYPES = {"int": "integer", "str": "string"}
PLACEHOLDER = re.compile(r"<(?:(?P<type>[a-z]+):)?(?P<name>\w+)>")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(todo_wsgi.OPENAPI_PATH.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow local references (``#/components/...``) to what they name."""
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Each operation by (METHOD, path with ``{name}`` written as the router's ``<name>``)."""
    found = {}
    for path, item in document["paths"].items():
        router_path = re.sub(r"\{(\w+)\}", r"<\1>", path)
        for method, operation in item.items():
            if method in HTTP_METHODS:
                found[(method.upper(), router_path)] = {**operation, "shared_parameters": item.get("parameters", [])}
    return found


# The browser client's files are served by the app but are not API: the document leaves them out.
API_ROUTES = [route for route in todo_wsgi.ROUTES if route[2] not in (todo_wsgi.web_file, todo_wsgi.web_redirect)]


def route_table() -> set[tuple[str, str]]:
    """(METHOD, path) of every API route, converters dropped; HEAD is the router's own addition."""
    return {(method, PLACEHOLDER.sub(r"<\g<name>>", pattern)) for method, pattern, _ in API_ROUTES}


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_document_and_route_table_list_the_same_method_and_path_pairs(document: dict[str, Any]) -> None:
    assert ("HEAD", "/todo") not in route_table()
    assert set(operations(document)) == route_table()


def test_path_parameters_have_the_router_converters_types(document: dict[str, Any]) -> None:
    by_operation = operations(document)
    for method, pattern, _ in API_ROUTES:
        key = (method, PLACEHOLDER.sub(r"<\g<name>>", pattern))
        declared = [resolve(document, p) for p in by_operation[key]["shared_parameters"]]
        types = {p["name"]: p["schema"]["type"] for p in declared if p["in"] == "path"}
        expected = {m["name"]: CONVERTER_TYPES[m["type"] or "str"] for m in PLACEHOLDER.finditer(pattern)}
        assert types == expected, key


def test_every_operation_documents_the_errors_it_can_answer(document: dict[str, Any]) -> None:
    for (method, path), operation in operations(document).items():
        statuses = set(operation["responses"])
        needs_token = operation.get("security", document["security"]) == document["security"]
        expected = {"500", "503"}
        if needs_token:
            expected |= {"401"}
        if "requestBody" in operation:
            expected |= {"400", "413", "415"}
        if path.startswith("/user"):
            expected |= {"403"}
        if "<" in path:
            expected |= {"404"}
        if any(resolve(document, p)["in"] == "query" for p in operation.get("parameters", [])):
            expected |= {"400"}
        assert expected <= statuses, (method, path, sorted(expected - statuses))


def test_bodies_refuse_fields_the_routes_do_not_take(document: dict[str, Any]) -> None:
    for (method, path), operation in operations(document).items():
        if "requestBody" in operation:
            schema = resolve(document, operation["requestBody"]["content"]["application/json"]["schema"])
            assert schema["additionalProperties"] is False, (method, path)


def test_openapi_json_is_served_without_a_token_as_the_file(client: TestApp, document: dict[str, Any]) -> None:
    response = client.get("/openapi.json", status=200)
    assert response.content_type == "application/json"
    assert response.json == document


def test_document_version_is_the_package_version(document: dict[str, Any]) -> None:
    assert document["info"]["version"] == importlib.metadata.version("todo-wsgi")
