"""router.Router on its own: a route table in, (target, params) or HTTPError out."""

import pytest

from router import HTTPError, Router

ROUTES = [
    ("GET", "/todo", "list_todos"),
    ("POST", "/todo", "create_todo"),
    ("GET", "/todo/<int:todo_id>", "get_todo"),
    ("PUT", "/todo/<int:todo_id>", "complete_todo"),
    ("DELETE", "/todo/<int:todo_id>", "delete_todo"),
    ("GET", "/user/<public_id>", "get_user"),
    ("POST", "/login", "login"),
]


@pytest.fixture
def router():
    return Router(ROUTES)


def miss(router, method, path):
    """The HTTPError a match raises."""
    with pytest.raises(HTTPError) as caught:
        router.match(method, path)
    return caught.value


def test_static_route_matches_with_no_params(router):
    assert router.match("GET", "/todo") == ("list_todos", {})
    assert router.match("POST", "/todo") == ("create_todo", {})


def test_typed_route_matches_and_converts_int(router):
    target, params = router.match("GET", "/todo/42")
    assert target == "get_todo"
    assert params == {"todo_id": 42}
    assert type(params["todo_id"]) is int


def test_untyped_placeholder_is_a_string_segment(router):
    assert router.match("GET", "/user/abc-123") == ("get_user", {"public_id": "abc-123"})


def test_untyped_placeholder_does_not_cross_a_slash(router):
    assert miss(router, "GET", "/user/a/b").status == 404


def test_int_placeholder_refuses_non_digits(router):
    assert miss(router, "GET", "/todo/abc").status == 404
    assert miss(router, "GET", "/todo/-1").status == 404
    assert miss(router, "GET", "/todo/1.5").status == 404


def test_int_placeholder_takes_ascii_digits_only(router):
    # [0-9], not \d: Arabic-Indic digits are not an id.
    assert miss(router, "GET", "/todo/\u0661\u0662").status == 404


def test_whole_path_must_match(router):
    assert miss(router, "GET", "/todo/1/extra").status == 404
    assert miss(router, "GET", "/todos").status == 404
    assert miss(router, "GET", "/todo/").status == 404


def test_unknown_path_is_404(router):
    error = miss(router, "GET", "/nowhere")
    assert (error.status, error.message, error.headers) == (404, "Not found", [])


def test_known_static_path_with_another_method_is_405_with_sorted_allow(router):
    error = miss(router, "DELETE", "/todo")
    assert error.status == 405
    assert error.headers == [("Allow", "GET, HEAD, POST")]


def test_known_typed_path_with_another_method_is_405_with_sorted_allow(router):
    error = miss(router, "PATCH", "/todo/1")
    assert error.status == 405
    assert error.headers == [("Allow", "DELETE, GET, HEAD, PUT")]


def test_path_without_get_does_not_allow_head(router):
    error = miss(router, "HEAD", "/login")
    assert error.status == 405
    assert error.headers == [("Allow", "POST")]


def test_head_is_mapped_to_get(router):
    assert router.match("HEAD", "/todo") == ("list_todos", {})
    assert router.match("HEAD", "/todo/7") == ("get_todo", {"todo_id": 7})


def test_explicit_head_route_is_kept():
    router = Router([("GET", "/x", "get"), ("HEAD", "/x", "head")])
    assert router.match("HEAD", "/x") == ("head", {})


def test_duplicate_route_is_rejected():
    with pytest.raises(ValueError, match="declared twice"):
        Router([("GET", "/todo", "a"), ("GET", "/todo", "b")])


def test_unknown_converter_is_rejected():
    with pytest.raises(ValueError, match="unknown converter 'uuid'"):
        Router([("GET", "/user/<uuid:public_id>", "get_user")])


def test_pattern_literals_are_escaped():
    router = Router([("GET", "/a.b", "dot")])
    assert router.match("GET", "/a.b") == ("dot", {})
    assert miss(router, "GET", "/axb").status == 404


def test_allowed_methods_lists_a_path_s_methods(router):
    assert router.allowed_methods("/todo/3") == ["DELETE", "GET", "HEAD", "PUT"]
    assert router.allowed_methods("/nowhere") == []


def test_table_keeps_the_declared_rows_in_order(router):
    assert router.table == ROUTES
