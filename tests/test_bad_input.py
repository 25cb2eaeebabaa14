"""Bad input, one case a row: refused with the right status, and nothing changed.

Every rejected request is followed by a snapshot of every stored row, of every
table, that must equal the one taken before it (both backends), and by a valid
request that must succeed. Accepted oddities (SQL-injection strings, emoji,
right-to-left text) must round-trip exactly, as the SQLite file itself shows.
"""

from __future__ import annotations

import io
import json
import sqlite3
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

from tests.conftest import ADMIN_PASSWORD, basic, stored_rows

HUGE = "9" * 30  # far above SQLite's 64-bit integers
TWO_TO_63 = str(2**63)


def J(value: Any) -> bytes:
    """A JSON body; ASCII escapes, so a lone surrogate travels as ``\\ud800``."""
    return json.dumps(value).encode("ascii")


def snapshot(database: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every account and to-do row, as stored."""
    with sqlite3.connect(database) as conn:
        return {
            "users": conn.execute("SELECT * FROM users ORDER BY id").fetchall(),
            "todos": conn.execute("SELECT * FROM todos ORDER BY id").fetchall(),
        }


@pytest.fixture
def world(client, admin, admin_headers, user):
    """An admin (signed in), a second account and one to-do of the admin's."""
    todo = client.post_json("/todo", {"text": "original"}, headers=admin_headers, status=201).json["todo"]
    return {"headers": admin_headers, "todo": todo["id"], "user": user["public_id"]}


def assert_next_valid_request_succeeds(client, headers):
    created = client.post_json("/todo", {"text": "after"}, headers=headers, status=201).json["todo"]
    assert client.get(f"/todo/{created['id']}", headers=headers, status=200).json["todo"]["text"] == "after"


def row(method, path, body, status, message, content_type="application/json", id=None):
    return pytest.param(method, path, body, content_type, status, message, id=id)


S = "application/json"
NAME, PASSWORD = "bob", "bob-password-1"
CTRL = {"newline": "bad\nname", "tab": "bad\tname", "NUL": "bad\x00name", "escape": "bad\x1bname", "DEL": "bad\x7f"}

CASES = [
    # The body as a whole.
    row("POST", "/todo", b'{"text": ', 400, "not valid JSON", id="malformed JSON"),
    row("POST", "/todo", b'{"text": "a"} trailing', 400, "not valid JSON", id="JSON with trailing garbage"),
    row("POST", "/todo", b'{"text": NaN}', 400, "not valid JSON", id="NaN is not JSON"),
    row("POST", "/todo", b"[" * 10_000 + b"]" * 10_000, 400, "", id="deeply nested JSON"),
    row("POST", "/todo", b"", 400, "JSON object", id="empty body"),
    row("POST", "/todo", J(["text"]), 400, "JSON object", id="array body"),
    row("POST", "/todo", J("text"), 400, "JSON object", id="string body"),
    row("POST", "/todo", J(None), 400, "JSON object", id="null body"),
    row("POST", "/todo", J(42), 400, "JSON object", id="number body"),
    row("POST", "/todo", b'{"text": "caf\xe9"}', 400, "UTF-8", id="Latin-1 bytes"),
    row("POST", "/todo", b'{"text": "\xff\xfe"}', 400, "UTF-8", id="invalid UTF-8 bytes"),
    row("POST", "/todo", '{"text": "x"}'.encode("utf-16"), 400, "UTF-8", id="UTF-16 body"),
    row("POST", "/todo", J({"text": "x" * 70_000}), 413, "larger than", id="body over max_body_bytes"),
    # Content-Type.
    row("POST", "/todo", J({"text": "x"}), 415, "application/json", "text/plain", id="text/plain"),
    row("POST", "/todo", b"text=x", 415, "application/json", "application/x-www-form-urlencoded", id="form"),
    row("POST", "/todo", J({"text": "x"}), 415, "application/json", "multipart/form-data; boundary=x", id="multipart"),
    row("POST", "/todo", J({"text": "x"}), 415, "application/json", "application/json; charset=latin-1", id="latin-1"),
    row("POST", "/user", J({"name": NAME, "password": PASSWORD}), 415, "application/json", "text/json", id="text/json"),
    row("PATCH", "/todo/{todo}", J({"text": "x"}), 415, "application/json", "application/xml", id="PATCH xml"),
    # POST /user, each field.
    row("POST", "/user", J({"password": PASSWORD}), 400, "'name' is required", id="user name missing"),
    row("POST", "/user", J({"name": None, "password": PASSWORD}), 400, "'name' must be a string", id="user name null"),
    row("POST", "/user", J({"name": 7, "password": PASSWORD}), 400, "'name' must be a string", id="user name number"),
    row("POST", "/user", J({"name": ["b"], "password": PASSWORD}), 400, "'name' must be a string", id="user name list"),
    row("POST", "/user", J({"name": "", "password": PASSWORD}), 400, "'name' must be 1 to 50", id="user name empty"),
    row("POST", "/user", J({"name": "n" * 51, "password": PASSWORD}), 400, "'name' must be 1 to 50", id="user name 51"),
    *[
        row("POST", "/user", J({"name": n, "password": PASSWORD}), 400, "control characters", id=f"user name {k}")
        for k, n in CTRL.items()
    ],
    row("POST", "/user", J({"name": "b\ud800", "password": PASSWORD}), 400, "'name'", id="user name lone surrogate"),
    row("POST", "/user", J({"name": NAME}), 400, "'password' is required", id="user password missing"),
    row("POST", "/user", J({"name": NAME, "password": None}), 400, "'password' must be a string", id="password null"),
    row(
        "POST", "/user", J({"name": NAME, "password": 12345678}), 400, "'password' must be a string", id="password int"
    ),
    row("POST", "/user", J({"name": NAME, "password": True}), 400, "'password' must be a string", id="password bool"),
    row("POST", "/user", J({"name": NAME, "password": ""}), 400, "'password' must be 8 to 1024", id="password empty"),
    row("POST", "/user", J({"name": NAME, "password": "7chars!"}), 400, "'password' must be 8", id="password 7"),
    row("POST", "/user", J({"name": NAME, "password": "p" * 1025}), 400, "'password' must be 8", id="password 1025"),
    row("POST", "/user", J({"name": NAME, "password": "pass\ud800word"}), 400, "'password'", id="password surrogate"),
    row("POST", "/user", J({"name": "admin", "password": PASSWORD}), 409, "taken", id="user name taken"),
    # POST /todo.
    row("POST", "/todo", J({}), 400, "'text' is required", id="todo text missing"),
    row("POST", "/todo", J({"text": None}), 400, "'text' must be a string", id="todo text null"),
    row("POST", "/todo", J({"text": 1}), 400, "'text' must be a string", id="todo text number"),
    row("POST", "/todo", J({"text": {"a": 1}}), 400, "'text' must be a string", id="todo text object"),
    row("POST", "/todo", J({"text": ""}), 400, "'text' must be 1 to 500", id="todo text empty"),
    row("POST", "/todo", J({"text": "t" * 501}), 400, "'text' must be 1 to 500", id="todo text 501"),
    row("POST", "/todo", J({"text": "a\x00b"}), 400, "NUL", id="todo text NUL"),
    row("POST", "/todo", J({"text": "a\ud800b"}), 400, "'text'", id="todo text lone surrogate"),
    row("POST", "/todo", J({"text": "a", "owner_id": 2}), 400, "'owner_id'", id="todo owner_id"),
    # PATCH /todo/<id>: optional fields, never null; nothing written if any field is bad.
    row("PATCH", "/todo/{todo}", J({"text": None}), 400, "'text' must be a string", id="patch todo text null"),
    row("PATCH", "/todo/{todo}", J({"text": 3}), 400, "'text' must be a string", id="patch todo text number"),
    row("PATCH", "/todo/{todo}", J({"text": ""}), 400, "'text' must be 1 to 500", id="patch todo text empty"),
    row("PATCH", "/todo/{todo}", J({"text": "t" * 501}), 400, "'text' must be 1 to 500", id="patch todo text 501"),
    row("PATCH", "/todo/{todo}", J({"text": "\x00"}), 400, "NUL", id="patch todo text NUL"),
    row("PATCH", "/todo/{todo}", J({"text": "\ud800"}), 400, "'text'", id="patch todo text lone surrogate"),
    row("PATCH", "/todo/{todo}", J({"complete": None}), 400, "'complete' must be true or false", id="complete null"),
    row("PATCH", "/todo/{todo}", J({"complete": "true"}), 400, "'complete' must be true or", id="complete string"),
    row("PATCH", "/todo/{todo}", J({"complete": 1}), 400, "'complete' must be true or", id="complete 1"),
    row("PATCH", "/todo/{todo}", J({"text": "new", "complete": "yes"}), 400, "'complete'", id="good text bad complete"),
    row("PATCH", "/todo/{todo}", J({"complete": True, "text": ""}), 400, "'text'", id="good complete bad text"),
    row("PATCH", "/todo/{todo}", J({"id": 5}), 400, "'id'", id="patch todo id"),
    # PATCH /user/<public_id>.
    row("PATCH", "/user/{user}", J({"name": None}), 400, "'name' must be a string", id="patch user name null"),
    row("PATCH", "/user/{user}", J({"name": 5}), 400, "'name' must be a string", id="patch user name number"),
    row("PATCH", "/user/{user}", J({"name": ""}), 400, "'name' must be 1 to 50", id="patch user name empty"),
    row("PATCH", "/user/{user}", J({"name": "n" * 51}), 400, "'name' must be 1 to 50", id="patch user name 51"),
    row("PATCH", "/user/{user}", J({"name": "a\nb"}), 400, "control characters", id="patch user name newline"),
    row("PATCH", "/user/{user}", J({"name": "admin"}), 409, "taken", id="patch user name taken"),
    row("PATCH", "/user/{user}", J({"password": None}), 400, "'password' must be a string", id="patch password null"),
    row("PATCH", "/user/{user}", J({"password": 1}), 400, "'password' must be a string", id="patch password number"),
    row("PATCH", "/user/{user}", J({"password": ""}), 400, "'password' must be 8", id="patch password empty"),
    row("PATCH", "/user/{user}", J({"password": "p" * 1025}), 400, "'password' must be 8", id="patch password 1025"),
    row("PATCH", "/user/{user}", J({"admin": None}), 400, "'admin' must be true or false", id="patch admin null"),
    row("PATCH", "/user/{user}", J({"admin": "yes"}), 400, "'admin' must be true or false", id="patch admin string"),
    row("PATCH", "/user/{user}", J({"admin": 1}), 400, "'admin' must be true or false", id="patch admin 1"),
    row("PATCH", "/user/{user}", J({"name": "carol", "password": "short"}), 400, "'password'", id="good name bad pw"),
    row("PATCH", "/user/{user}", J({"admin": True, "name": ""}), 400, "'name'", id="good admin bad name"),
    row("PATCH", "/user/{user}", J({"public_id": "x"}), 400, "'public_id'", id="patch user public_id"),
    # PUT /me/password.
    row("PUT", "/me/password", J({"new_password": PASSWORD}), 400, "'old_password' is required", id="old missing"),
    row(
        "PUT", "/me/password", J({"old_password": None, "new_password": PASSWORD}), 400, "'old_password'", id="old null"
    ),
    row(
        "PUT", "/me/password", J({"old_password": 1, "new_password": PASSWORD}), 400, "'old_password'", id="old number"
    ),
    row(
        "PUT", "/me/password", J({"old_password": ADMIN_PASSWORD}), 400, "'new_password' is required", id="new missing"
    ),
    *[
        row("PUT", "/me/password", J({"old_password": ADMIN_PASSWORD, "new_password": v}), 400, "'new_password'", id=k)
        for k, v in {
            "new null": None,
            "new number": 1,
            "new empty": "",
            "new 7": "1234567",
            "new 1025": "p" * 1025,
        }.items()
    ],
    # To-do ids that are not (or cannot be) ids.
    *[
        row(m, f"/todo/{i}", body, 404, msg, id=f"{m} /todo/{i[:12]}")
        for m, body in (("GET", None), ("PUT", None), ("DELETE", None), ("PATCH", J({"text": "x"})))
        for i, msg in (
            ("abc", "Not found"),
            ("-1", "Not found"),
            ("1.0", "Not found"),
            ("0x1", "Not found"),
            ("1e3", "Not found"),
            (HUGE, "No todo found!"),
            (TWO_TO_63, "No todo found!"),
            ("0", "No todo found!"),
        )
    ],
    # Query parameters.
    row("GET", "/todo?limit=0", None, 400, "'limit'", id="limit 0"),
    row("GET", "/todo?limit=1001", None, 400, "'limit'", id="limit 1001"),
    row("GET", "/todo?limit=1;DROP%20TABLE%20todos", None, 400, "'limit'", id="limit injection"),
    row("GET", f"/todo?offset={HUGE}", None, 400, "'offset'", id="offset huge"),
    row("GET", "/todo?offset=-1", None, 400, "'offset'", id="offset negative"),
    row("GET", "/todo?complete=1", None, 400, "'complete'", id="complete query 1"),
    row("GET", "/todo?limit=1&limit=2", None, 400, "'limit'", id="limit twice"),
]


@pytest.mark.parametrize("method, path, body, content_type, status, message", CASES)
def test_bad_request_is_refused_and_changes_nothing(
    app, client, world, method, path, body, content_type, status, message
):
    before = stored_rows(app)
    params: dict[str, Any] = {"method": method, "headers": world["headers"], "expect_errors": True}
    if body is not None:
        params.update(body=body, content_type=content_type)
    response = client.request(path.format(**world), **params)
    assert response.status_int == status, response.body
    assert message in response.json["message"]
    assert stored_rows(app) == before
    assert_next_valid_request_succeeds(client, world["headers"])


@pytest.mark.parametrize("old_password", ["", "p" * 1025], ids=["old empty", "old 1025"])
def test_a_wrong_old_password_is_403_counted_as_a_failed_login_and_changes_nothing_else(
    app, client, world, old_password
):
    before = stored_rows(app)
    change = {"old_password": old_password, "new_password": PASSWORD}
    response = client.put_json("/me/password", change, headers=world["headers"], status=403)
    assert response.json["message"] == "Wrong password!"
    after = stored_rows(app)
    counted = ("login_failures", "address_failures", "audit_events", "sqlite_sequence")
    assert {t: rows for t, rows in after.items() if t not in counted} == {
        t: rows for t, rows in before.items() if t not in counted
    }
    assert [(name, failures) for name, _, failures, _ in after["login_failures"]] == [("admin", 1)]
    assert [event[3] for event in after["audit_events"] if event not in before["audit_events"]] == ["login.failed"]
    assert_next_valid_request_succeeds(client, world["headers"])


def test_values_at_their_limits_are_accepted(client, world):
    h = world["headers"]
    name, password, text = "n" * 50, "p" * 1024, "t" * 500
    created = client.post_json("/user", {"name": name, "password": password}, headers=h, status=201)
    assert created.json["user"]["name"] == name
    client.post("/login", headers=basic(name, password), status=200)
    assert client.post_json("/todo", {"text": text}, headers=h, status=201).json["todo"]["text"] == text
    client.post_json("/user", {"name": "a", "password": "8charpw!"}, headers=h, status=201)


# -- the body reader against wsgi.input itself --------------------------------------


class CountingInput:
    """A wsgi.input that counts what is read and never runs out (as a flood would)."""

    def __init__(self, prefix: bytes = b"") -> None:
        self.stream = io.BytesIO(prefix)
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        assert size is not None and size >= 0, "a bare read() on a client's stream"
        data = self.stream.read(size)
        data += b" " * (size - len(data))
        self.bytes_read += len(data)
        return data

    # PEP 3333 asks for these too; the app must not need them.
    def readline(self, size: int = -1) -> bytes:
        raise AssertionError("the body is read with read(n) only")

    readlines = __iter__ = readline


def call(app: Any, content_length: str, wsgi_input: CountingInput, token: str, validate: bool = True):
    """Call the app directly with a hand-built environ; return (status, body)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/todo",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": content_length,
        "HTTP_X_ACCESS_TOKEN": token,
    }
    setup_testing_defaults(environ)
    environ["wsgi.input"] = wsgi_input
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"] = status
        return lambda data: None

    result = (validator(app) if validate else app)(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return int(seen["status"].split()[0]), json.loads(body)


@pytest.fixture
def small(make_app, client, admin, admin_headers, database):
    """An app with a 1024-byte body limit on the same database."""
    return make_app(max_body_bytes=1024)


@pytest.mark.parametrize("declared", ["1025", "65536", str(10**12), HUGE])
def test_declared_body_over_the_limit_is_413_before_reading_a_byte(small, admin_headers, declared):
    before = stored_rows(small)
    flood = CountingInput()
    status, body = call(small, declared, flood, admin_headers["x-access-token"])
    assert (status, body) == (413, {"message": "Body is larger than 1024 bytes"})
    assert flood.bytes_read == 0
    assert stored_rows(small) == before


def test_body_at_the_limit_is_read_exactly_and_accepted(small, admin_headers):
    body = J({"text": "at the limit"})
    stream = CountingInput(body.ljust(1024))
    status, answer = call(small, "1024", stream, admin_headers["x-access-token"])
    assert (status, answer["todo"]["text"]) == (201, "at the limit")
    assert stream.bytes_read == 1024


def test_body_longer_than_declared_is_not_read_past_content_length(small, admin_headers):
    body = J({"text": "declared"})
    stream = CountingInput(body + b'{"text": "smuggled"}' * 100)
    status, answer = call(small, str(len(body)), stream, admin_headers["x-access-token"])
    assert (status, answer["todo"]["text"]) == (201, "declared")
    assert stream.bytes_read == len(body)


@pytest.mark.parametrize("declared", ["-1", "12abc", "1.5", " 12", "0x10", "\u0661\u0662"])
def test_content_length_that_is_not_a_count_is_400(small, admin_headers, client, declared):
    # wsgiref's validator itself refuses such an environ, so the raw app is called.
    before = stored_rows(small)
    stream = CountingInput(J({"text": "x"}))
    status, body = call(small, declared, stream, admin_headers["x-access-token"], validate=False)
    assert status == 400 and "Content-Length" in body["message"]
    assert stream.bytes_read == 0
    assert stored_rows(small) == before
    assert_next_valid_request_succeeds(client, admin_headers)


# -- accepted oddities round-trip exactly ------------------------------------------------

INJECTIONS = [
    "'; DROP TABLE todos; --",
    "Robert'); DROP TABLE users;--",
    "1 OR 1=1",
    "' OR '1'='1",
    '" OR ""="',
    "%'; SELECT * FROM users WHERE name LIKE '%",
    "\\'; --",
    "$1; ?; :name; @p",
]


@pytest.mark.sqlite_only  # reads the SQLite file with sqlite3
@pytest.mark.parametrize("text", INJECTIONS)
def test_sql_injection_text_is_stored_and_returned_verbatim(client, database, world, text):
    h = world["headers"]
    created = client.post_json("/todo", {"text": text}, headers=h, status=201).json["todo"]
    assert client.get(f"/todo/{created['id']}", headers=h, status=200).json["todo"]["text"] == text
    patched = client.patch_json(f"/todo/{created['id']}", {"text": text + "!"}, headers=h, status=200)
    assert patched.json["todo"]["text"] == text + "!"
    rows = snapshot(database)
    assert [r[2] for r in rows["todos"]] == ["original", text + "!"]
    assert len(rows["users"]) == 2


@pytest.mark.sqlite_only  # reads the SQLite file with sqlite3
@pytest.mark.parametrize("name", ["admin' --", "admin' OR '1'='1", "x'); DELETE FROM users; --"])
def test_sql_injection_name_is_an_ordinary_name(client, database, world, name):
    h = world["headers"]
    created = client.post_json("/user", {"name": name, "password": "injected-pw"}, headers=h, status=201)
    public_id = created.json["user"]["public_id"]
    assert client.get(f"/user/{public_id}", headers=h, status=200).json["user"]["name"] == name
    # Its password opens only itself; another's password does not open it.
    client.post("/login", headers=basic(name, ADMIN_PASSWORD), status=401)
    token = client.post("/login", headers=basic(name, "injected-pw"), status=200).json["token"]
    me = client.get("/me", headers={"x-access-token": token}, status=200).json["user"]
    assert me == {"public_id": public_id, "name": name, "admin": False}
    assert len(snapshot(database)["users"]) == 3


def test_sql_injection_in_a_path_finds_nothing(client, world):
    h = world["headers"]
    for path in ("/user/' OR '1'='1", "/user/x%27%20OR%201=1--"):
        assert client.get(path, headers=h, status=404).json == {"message": "No user found!"}


ROUND_TRIP = {
    "emoji": "📝 buy milk 🥛",
    "family ZWJ sequence": "👩‍👩‍👧‍👦",
    "flag": "🇫🇷",
    "Arabic": "اشترِ الحليب",
    "Hebrew": "קנה חלב",
    "right-to-left override": "abc\u202edef\u202c",
    "combining accent, not normalised": "e\u0301",
    "precomposed accent": "\u00e9",
    "zero-width and BOM": "a\u200bb\ufeffc",
    "astral CJK": "\U00020000\U0002a6d6",
    "line and paragraph separators": "a\u2028b\u2029c",
    "control but not NUL": "tab\tnew\nline\r\x01",
}


@pytest.mark.sqlite_only  # reads the SQLite file with sqlite3
@pytest.mark.parametrize("text", ROUND_TRIP.values(), ids=ROUND_TRIP.keys())
def test_unicode_text_round_trips_exactly(client, database, world, text):
    h = world["headers"]
    created = client.post_json("/todo", {"text": text}, headers=h, status=201)
    todo_id = created.json["todo"]["id"]
    assert created.json["todo"]["text"] == text
    assert client.get(f"/todo/{todo_id}", headers=h, status=200).json["todo"]["text"] == text
    assert client.get("/todo", headers=h, status=200).json["todos"][-1] == {
        "id": todo_id,
        "text": text,
        "complete": False,
    }
    assert snapshot(database)["todos"][-1][2] == text
    # Sent as raw UTF-8 rather than JSON escapes, too.
    raw = json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")
    again = client.post("/todo", raw, headers=h, content_type="application/json; charset=utf-8", status=201)
    assert again.json["todo"]["text"] == text


@pytest.mark.parametrize("name", ["Zoë", "محمد", "😀 smiley", "\u03a9mega"])
def test_unicode_name_round_trips_exactly(client, world, name):
    h = world["headers"]
    created = client.post_json("/user", {"name": name, "password": "unicode-pw-1"}, headers=h, status=201)
    public_id = created.json["user"]["public_id"]
    assert client.get(f"/user/{public_id}", headers=h, status=200).json["user"]["name"] == name
    client.post("/login", headers=basic(name, "unicode-pw-1"), status=200)


@pytest.mark.parametrize(
    "name",
    ["\u202eevil", "zero\u200bwidth", "soft\u00adhyphen", "line\u2028break", "para\u2029graph", "bom\ufeff"],
    ids=["bidi-override", "zero-width-space", "soft-hyphen", "line-separator", "paragraph-separator", "bom"],
)
def test_a_name_with_a_format_or_separator_character_is_refused(client, world, name):
    response = client.post_json(
        "/user", {"name": name, "password": "unicode-pw-1"}, headers=world["headers"], status=400
    )
    assert "'name'" in response.json["message"]


@pytest.mark.parametrize("name", [" leading", "trailing ", "\u00a0nbsp", "ideographic\u3000"])
def test_a_name_with_white_space_at_either_end_is_refused_not_trimmed(client, world, name):
    response = client.post_json(
        "/user", {"name": name, "password": "unicode-pw-1"}, headers=world["headers"], status=400
    )
    assert response.json == {"message": "Field 'name' must not begin or end with white space"}


def test_a_name_is_stored_in_nfc_form(client, world):
    created = client.post_json("/user", {"name": "e\u0301mile", "password": "unicode-pw-1"}, headers=world["headers"])
    assert created.json["user"]["name"] == "\u00e9mile"
    client.post("/login", headers=basic("e\u0301mile", "unicode-pw-1"), status=200)
