"""todo-wsgi: a multi-user to-do REST API as one plain WSGI application.

The request path and nothing else, in the order a request flows: settings and
``create_app``; the edge (request, body, errors, the one response path, the
access line); tokens and passwords; validation; handlers; the route table.
SQL lives in ``store.py`` (or ``store_pg.py``), path matching in ``router.py``,
the operator's commands and serving in ``todo_wsgi_cli.py``, which this module
never imports (``python -m todo_wsgi`` hands over to it at run time).

No module-level mutable state: everything a request touches hangs off the
``TodoApp`` that ``create_app`` returns, so two apps in one process are apart.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import importlib.resources
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import sys
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from http import HTTPStatus
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jwt

import store
from router import HTTPError, Router

__all__ = ["HTTPError", "Settings", "TodoApp", "create_app"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Body = dict[str, Any]
# A handler answers a body to encode, or bytes already encoded (the OpenAPI document).
Result = tuple[int, Body | bytes] | tuple[int, Body | bytes, list[tuple[str, str]]]
# The key-derivation function: hashlib.pbkdf2_hmac's signature (tests pass a slow one).
KDF = Callable[[str, bytes, bytes, int], bytes]

# Shipped beside this module: in the checkout, and in the wheel by setup.py's build_py.
OPENAPI_PATH = Path(__file__).with_name("todo_wsgi_openapi.json")


# -- settings and create_app ---------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Every setting of the API, resolved from arguments, environment, defaults."""

    database: str = "todo.db"
    secret_key: str | None = None
    token_ttl: int = 1800
    pbkdf2_iterations: int = 600_000
    max_body_bytes: int = 65536
    login_max_failures: int = 5
    login_window: int = 900
    login_max_failures_per_address: int = 50
    cors_origins: tuple[str, ...] = ()
    pool_size: int = 4
    max_todos_per_account: int = 10000
    refresh_ttl: int = 1_209_600
    audit_retention_days: int = 365
    web_client: bool = True

    @classmethod
    def resolve(cls, environ: dict[str, str] | None = None, **given: Any) -> Settings:
        """Take each setting from ``given``, else its environment variable, else the default."""
        environ = dict(os.environ) if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            name, default = field.name, field.default
            value = given.get(name)
            if value is None:
                value = environ.get(ENV_NAMES.get(name, f"TODO_{name.upper()}")) or None
            if value is None:
                continue
            if isinstance(default, bool):  # before int: bool is an int in Python
                value = _on_off(name, value)
            elif isinstance(default, int):
                value = _positive_int(name, value)
            elif name == "cors_origins":
                value = _origins(value)
            else:
                value = str(value)
            values[name] = value
        return cls(**values)


# Where a setting's variable is not TODO_ and its name in capitals.
ENV_NAMES = MappingProxyType({"max_todos_per_account": "TODO_MAX_TODOS"})


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1 or (isinstance(value, float) and not value.is_integer()):
        variable = ENV_NAMES.get(name, f"TODO_{name.upper()}")
        raise ValueError(f"setting {name} ({variable}) must be a positive integer, got {value!r}")
    return number


def _on_off(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() not in ("on", "off"):
        raise ValueError(f"setting {name} (TODO_{name.upper()}) must be on or off, got {value!r}")
    return str(value).strip().lower() == "on"


def _origins(value: str | Iterable[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(origin.strip().rstrip("/") for origin in items if origin.strip())


def create_app(
    database: str | None = None,
    secret_key: str | None = None,
    token_ttl: int | None = None,
    pbkdf2_iterations: int | None = None,
    max_body_bytes: int | None = None,
    login_max_failures: int | None = None,
    login_window: int | None = None,
    login_max_failures_per_address: int | None = None,
    cors_origins: str | Iterable[str] | None = None,
    pool_size: int | None = None,
    max_todos_per_account: int | None = None,
    refresh_ttl: int | None = None,
    audit_retention_days: int | None = None,
    web_client: bool | None = None,
    *,
    clock: Callable[[], float] = time.time,
    kdf: KDF = hashlib.pbkdf2_hmac,
) -> TodoApp:
    """Build the WSGI application; each setting not given is read from its TODO_ variable.

    ``clock`` returns the current Unix time and ``kdf`` derives password
    hashes: tests pass a fake clock to move through lifetimes and windows
    without sleeping, and a blocking kdf to hold a request inside its hashing.
    """
    settings = Settings.resolve(
        database=database,
        secret_key=secret_key,
        token_ttl=token_ttl,
        pbkdf2_iterations=pbkdf2_iterations,
        max_body_bytes=max_body_bytes,
        login_max_failures=login_max_failures,
        login_window=login_window,
        login_max_failures_per_address=login_max_failures_per_address,
        cors_origins=cors_origins,
        pool_size=pool_size,
        max_todos_per_account=max_todos_per_account,
        refresh_ttl=refresh_ttl,
        audit_retention_days=audit_retention_days,
        web_client=web_client,
    )
    return TodoApp(settings, clock, kdf)


def backend_for(database: str) -> ModuleType:
    """Return the store module for a database setting: PostgreSQL URL or SQLite path."""
    if database.startswith(("postgresql://", "postgres://")):
        try:
            import store_pg
        except ImportError as exc:
            raise RuntimeError(
                "TODO_DATABASE is a PostgreSQL URL, but the PostgreSQL driver is not installed: "
                "pip install 'todo-wsgi[postgres]' (psycopg 3 and psycopg_pool)"
            ) from exc
        return store_pg
    return store


class TodoApp:
    """The WSGI callable: settings, database, signing key, hasher and router of one app."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time, kdf: KDF = hashlib.pbkdf2_hmac):
        self.settings = settings
        self.clock = clock
        self.log = logging.getLogger("todo_wsgi")
        self.access_log = logging.getLogger("todo_wsgi.access")
        # As waitress-serve does for its own logger: a default level only when
        # the operator set none, so the access log reaches whatever handler
        # the host configured (waitress.serve installs one on stderr).
        if self.access_log.level == logging.NOTSET:
            self.access_log.setLevel(logging.INFO)
        # Where each finished access line goes: a record of the access logger, made on the
        # request's thread. A host with a cheaper way sets its own (serve: its log handler's
        # queue, no record made per request); the logger's level still decides whether a line is made.
        self.write_access_line: Callable[[str], None] = self.log_access_line
        if settings.secret_key is not None and len(settings.secret_key.encode()) < 32:
            raise ValueError(
                "TODO_SECRET_KEY must be at least 32 bytes (RFC 7518 3.2: an HS256 key "
                "as long as the hash); generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        self.store = backend_for(settings.database)
        self.router = Router(ROUTES)
        # Parsed once to fail at start on a broken file, then served as these bytes.
        self.encode = json_encoder()
        self.openapi_document = self.encode(json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))).encode("ascii")
        self.web_files = load_web_files() if settings.web_client else {}
        self.tokens = TokenCache(TOKEN_CACHE_SIZE)
        self.stamps = Stamps()
        self.hasher = Hasher(settings.pbkdf2_iterations, HASH_SLOTS, kdf)
        self.cors_origins = frozenset(settings.cors_origins)
        # Opened last, and closed again if the start fails after it (a PostgreSQL pool is open by then).
        self.db = self.store.open_database(settings.database, settings.pool_size)
        try:
            with self.db.connection() as conn:
                # Read once: a rotated key is taken up when the server next starts.
                self.secret_key = settings.secret_key or self.store.get_or_create_secret(
                    conn, SIGNING_KEY_NAME, secrets.token_urlsafe(48)
                )
                # The key rotate-key replaced: a token signed with it is "revoked", not "malformed".
                self.retired_key = (
                    None if settings.secret_key else self.store.get_secret(conn, SIGNING_KEY_NAME + ".previous")
                )
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        """Release the database connections."""
        self.db.close()

    # -- the WSGI edge: request, errors, response --------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        """Route, run the handler, and turn its result or error into JSON."""
        started = time.perf_counter()
        req = Request(self, environ)
        origin = environ.get("HTTP_ORIGIN")
        cors = origin is not None and origin in self.cors_origins
        body: Body | bytes
        headers: list[tuple[str, str]]
        try:
            if cors and req.method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ:
                status, body, headers = self.preflight(req)
            else:
                handler, params = self.router.match(req.method, req.path)
                with self.db.connection() as conn:
                    req.conn = conn
                    result = handler(req, **params)
                status, body = result[0], result[1]
                headers = result[2] if len(result) > 2 else []
        except store.Refused as refused:
            status, body, headers = refusal(refused)
        except HTTPError as error:
            status, body, headers = error.status, {"message": error.message}, error.headers
        except Exception as error:
            if self.store.unavailable(error):
                self.log.exception("database unavailable on %s %s", req.method, req.log_path)
                status, body, headers = 503, {"message": "Database unavailable"}, [("Retry-After", "5")]
            else:
                # The traceback goes to the log only; the client learns nothing of it.
                self.log.exception("unhandled error on %s %s", req.method, req.log_path)
                status, body, headers = 500, {"message": "Internal server error"}, []
        if self.cors_origins:
            # Fetch standard, "CORS protocol and HTTP caches": whether the CORS
            # headers come depends on Origin, so every answer varies on it,
            # including those to no or an unlisted origin.
            headers = headers + [("Vary", "Origin")] + (cors_headers(origin or "") if cors else [])
        # Each branch makes the list the edge then adds to: never the handler's own.
        if status == 204 or status == 304:
            # No content, so no Content-Type (RFC 9110 15.4.5: nor a Content-Length but the 200's, on a 304).
            payload, headers = b"", [header for header in headers if header[0] != "Content-Type"]
        elif isinstance(body, bytes):
            # Bytes come encoded, with their Content-Type (the browser client's files,
            # the OpenAPI document, a list page already encoded for its ETag).
            payload, headers = body, [*headers]
        else:
            # Every other body is a dict to encode as JSON (ASCII only, so any text survives any proxy).
            payload = self.encode(body).encode("ascii")
            headers = [JSON_TYPE, *headers]
        # Tokens and private data are never kept by a cache (the client's files say otherwise).
        if not (isinstance(body, bytes) and any(name == "Cache-Control" for name, _ in headers)):
            headers.append(("Cache-Control", "no-store"))
        if status != 304:
            headers.insert(0, ("Content-Length", str(len(payload))))
        start_response(STATUS_LINES[status], headers)
        if self.access_log.isEnabledFor(logging.INFO):
            who = req.account["public_id"] if req.account else "-"
            self.write_access_line(access_line(environ, req.method, req.path, status, started, who, self.stamps.now()))
        # RFC 9110 9.3.2: HEAD answers as GET, headers included, without content.
        return [] if req.method == "HEAD" else [payload]

    def log_access_line(self, line: str) -> None:
        """Hand a request's access line to the ``todo_wsgi.access`` logger, as an INFO record."""
        log = self.access_log
        # What log.info does, less its walk up the stack to find the caller (the caller is
        # always the edge), and with the line as the message: no arguments to format into it.
        log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, line, (), None))

    def preflight(self, req: Request) -> tuple[int, Body, list[tuple[str, str]]]:
        """Answer a CORS preflight (Fetch standard 3.2.2) for a listed origin."""
        methods = self.router.allowed_methods(req.path)
        if not methods:
            raise HTTPError(404, "Not found")
        return (
            204,
            {},
            [
                ("Access-Control-Allow-Methods", ", ".join(methods)),
                (
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, Idempotency-Key, If-Match, If-None-Match, x-access-token",
                ),
                ("Access-Control-Max-Age", "600"),
            ],
        )


def json_encoder() -> Callable[[Any], str]:
    """Compact JSON, ASCII only, with no circular-reference check (a body is a tree made for it).

    json.JSONEncoder.encode builds CPython's C encoder anew on every call; built
    once here it saves about 2 µs a request, which is what holds list and get at
    their speed target (README, "Dependencies"; docs/performance.md).
    Where that C function is missing (another Python), the public encoder.
    """
    public = json.JSONEncoder(separators=(",", ":"), check_circular=False)
    try:
        # The arguments json.JSONEncoder.iterencode gives it for these settings.
        encoder = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
            None, public.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
        )
    except (AttributeError, TypeError):  # missing, or no longer taking these arguments
        return public.encode
    return lambda body: "".join(encoder(body, 0))


def refusal(refused: store.Refused) -> tuple[int, Body, list[tuple[str, str]]]:
    """The answer to a write the store refused (each refusal type has one)."""
    why = TOKEN_REFUSALS.get(type(refused))
    if why is not None:  # the caller's session: answered as a refused token
        error = token_refused(why)
        return error.status, {"message": error.message}, error.headers
    status, message = REFUSALS[type(refused)]
    return (
        status,
        {"message": message},
        [] if refused.retry_after is None else [("Retry-After", str(refused.retry_after))],
    )


TOKEN_REFUSALS = MappingProxyType({store.SessionEnded: "revoked", store.SessionEnding: "expired"})


REFUSALS = MappingProxyType(
    {
        store.NotAdmin: (403, "Cannot perform that function!"),
        store.NameTaken: (409, "Name already taken!"),
        store.LastAdmin: (409, "Cannot remove the last admin!"),
        store.TooManyTodos: (409, "Too many todos"),
        store.PasswordChanged: (409, "The password was changed meanwhile; try again"),
        store.KeyReused: (422, "Idempotency-Key reused with another request"),
        store.TooManyKeys: (429, "Too many Idempotency-Keys within a day; send this create without one, or later"),
    }
)

JSON_TYPE = ("Content-Type", "application/json")

STATUS_LINES = MappingProxyType({status.value: f"{status.value} {status.phrase}" for status in HTTPStatus})


# What quote() leaves as it is under path_for_log's safe set: most paths are only this.
_LOG_SAFE = re.compile(r"[A-Za-z0-9_.~/:@!$&'()*+,;=-]*")


def path_for_log(path: str) -> str:
    """A request path as a log shows it: re-percent-encoded (RFC 3986 2.1), so
    a decoded newline or space cannot forge a second line; never the query."""
    if _LOG_SAFE.fullmatch(path):  # quote() would give it back unchanged
        return path
    return quote(path, safe="/:@!$&'()*+,;=~", encoding="latin-1", errors="backslashreplace")


def iso_utc(moment: float) -> str:
    """A Unix time as ISO 8601 in UTC to the millisecond, ending Z."""
    seconds, milliseconds = divmod(int(moment * 1000), 1000)
    return f"{utc_second(seconds)}.{milliseconds:03d}Z"


def utc_second(seconds: int) -> str:
    """A whole Unix second as ISO 8601 in UTC, without zone."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


class Stamps:
    """The access lines' UTC times: a second's text is made once, not per line
    (formatting a time costs more than the rest of the line)."""

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def now(self) -> str:
        """The current time as ISO 8601 in UTC to the millisecond, ending Z."""
        seconds, milliseconds = divmod(int(time.time() * 1000), 1000)
        second = self._second  # one read: another thread may replace it meanwhile
        if second[0] != seconds:
            second = self._second = (seconds, utc_second(seconds))
        return f"{second[1]}.{milliseconds:03d}Z"


def access_line(environ: Environ, method: str, path: str, status: int, started: float, who: str, stamp: str) -> str:
    """The access-log line of one request: UTC time (``stamp``), client address,
    method, path (``path_for_log``), status, ms since ``started`` (a perf_counter
    reading) and the account's public id or "-"; never a token, a password,
    a body or the query."""
    ms = (time.perf_counter() - started) * 1000
    address = path_for_log(environ.get("REMOTE_ADDR") or "-")
    return f"{stamp} {address} {method} {path_for_log(path)} {status} {ms:.1f}ms {who}"


def cors_headers(origin: str) -> list[tuple[str, str]]:
    """Headers every answer to a listed origin carries, errors included (and Vary)."""
    return [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Expose-Headers", "ETag, Link, Location, Retry-After, WWW-Authenticate"),
    ]


class Request:
    """What a handler needs of one request, built once per call."""

    __slots__ = ("account", "app", "claims", "conn", "environ", "method", "now", "path")

    def __init__(self, app: TodoApp, environ: Environ) -> None:
        self.app = app
        self.environ = environ
        self.method: str = environ["REQUEST_METHOD"]
        # An empty PATH_INFO is the app's root, "/", unless the app is mounted below a
        # prefix: then it names the prefix without its slash, which web_redirect answers.
        self.path: str = environ.get("PATH_INFO") or ("" if environ.get("SCRIPT_NAME") else "/")
        self.conn: Any = None
        self.account: dict[str, Any] | None = None
        self.claims: dict[str, Any] = {}  # the token's, once authenticate() accepted it
        self.now = 0.0  # the clock's reading when it did

    @property
    def caller(self) -> store.Caller:
        """Who this request's writes act for: its session, account, address and time.
        Made only when a write asks (a read needs none of it)."""
        if not self.claims:
            raise RuntimeError("no signed-in caller: authenticate() first")
        return store.Caller(self.claims["session"], self.claims["public_id"], client_address(self.environ), self.now)

    @property
    def store(self) -> ModuleType:
        """The store module for this app's backend."""
        return self.app.store

    @property
    def log_path(self) -> str:
        """The path as a log shows it (``path_for_log``)."""
        return path_for_log(self.path)

    @property
    def client(self) -> str | None:
        """The client's address (REMOTE_ADDR) for the audit trail, if it is one: a forwarding
        header passed through a trusted proxy cannot write other text there."""
        return client_address(self.environ)

    @property
    def address(self) -> str:
        """The client's address as login throttling counts it (``throttle_key``)."""
        return throttle_key(str(self.environ.get("REMOTE_ADDR") or ""))

    def url(self, path: str) -> str:
        """An absolute path for ``path`` below the mount point (SCRIPT_NAME)."""
        return str(self.environ.get("SCRIPT_NAME", "")).rstrip("/") + path

    def query(self) -> dict[str, str]:
        """The query string as single values; a name given twice is a 400."""
        if not self.environ.get("QUERY_STRING"):
            return {}
        parsed = parse_qs(self.environ.get("QUERY_STRING", ""), keep_blank_values=True)
        for name, values in parsed.items():
            if len(values) > 1:
                raise HTTPError(400, f"Query parameter '{name}' is given more than once")
        return {name: values[0] for name, values in parsed.items()}

    def json(self, required: dict[str, type], optional: dict[str, type] | None = None) -> Body:
        """Read the body as a JSON object with exactly these fields and types."""
        optional = optional or {}
        data = parse_json(self.environ, self.app.settings.max_body_bytes)
        if not isinstance(data, dict):
            raise HTTPError(400, "Body must be a JSON object")
        for name in data:
            if name not in required and name not in optional:
                raise HTTPError(400, f"Field '{name}' is not accepted here")
        for name in required:
            if name not in data:
                raise HTTPError(400, f"Field '{name}' is required")
        for name, value in data.items():
            kind = required.get(name) or optional[name]
            # bool is a subclass of int in Python, but not in JSON.
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise HTTPError(400, f"Field '{name}' must be {TYPE_NAMES[kind]}")
        return data

    def no_body(self) -> None:
        """For a route that takes no body: none, or an empty JSON object. Any field is one the
        route does not take (400 naming it), and a body declared otherwise is a 415, so
        ``{"admin": false}`` sent to a promotion is refused, not ignored."""
        if str(self.environ.get("CONTENT_LENGTH", "")).lstrip("0"):
            self.json({})


# What an IPv4 or IPv6 address is made of (no zone): a cheap guard, run on every request.
_ADDRESS = re.compile(r"[0-9A-Fa-f:.]{2,45}")


def client_address(environ: Environ) -> str | None:
    """REMOTE_ADDR if it reads as an IP address, else None: a forwarding header passed
    through a trusted proxy cannot write other text into the audit trail."""
    address = environ.get("REMOTE_ADDR")
    return address if address and _ADDRESS.fullmatch(address) else None


def throttle_name(name: str) -> str:
    """A login name as login throttling counts it: its NFC form, since login finds an account
    by the name given or its NFC form (so the failures of every spelling that reaches one
    account are that name's), and at most 100 characters: no real name is longer, and a
    client must not grow the table by sending huge names."""
    return unicodedata.normalize("NFC", name)[:100]


def throttle_key(address: str) -> str:
    """A client address as login throttling counts it: IPv6 by its /64 network."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


TYPE_NAMES = MappingProxyType({str: "a string", bool: "true or false", int: "an integer"})


def read_body(environ: Environ, limit: int) -> bytes:
    """Read at most ``limit`` bytes of body, as declared by CONTENT_LENGTH."""
    declared = environ.get("CONTENT_LENGTH", "")
    if not declared:  # PEP 3333: empty or absent means no body
        return b""
    if not declared.isascii() or not declared.isdigit():
        raise HTTPError(400, "Content-Length must be a non-negative integer")
    # Leading zeros are read, not counted: int() of thousands of digits raises.
    digits = declared.lstrip("0") or "0"
    length = int(digits) if len(digits) <= 19 else limit + 1
    if length > limit:
        # Refused before reading a byte of it.
        raise HTTPError(413, f"Body is larger than {limit} bytes")
    return bytes(environ["wsgi.input"].read(length)) if length else b""


def parse_json(environ: Environ, limit: int) -> Any:
    """Parse the request body as UTF-8 JSON; 415 for a body declared otherwise."""
    content_type = environ.get("CONTENT_TYPE", "")
    if content_type:
        media_type, *parameters = content_type.split(";")
        # RFC 9110 8.3.1: parameters are name=value pairs; only a charset other than UTF-8 refuses JSON.
        charsets = [
            value for name, _, value in (p.strip().partition("=") for p in parameters) if name.lower() == "charset"
        ]
        if media_type.strip().lower() != "application/json" or any(
            c.strip('"').lower() not in ("utf-8", "utf8") for c in charsets
        ):
            raise HTTPError(415, "Body must be application/json")
    raw = read_body(environ, limit)
    if not raw:
        raise HTTPError(400, "Body must be a JSON object")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise HTTPError(400, "Body must be UTF-8") from None
    except (ValueError, RecursionError):
        raise HTTPError(400, "Body is not valid JSON") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# -- tokens and passwords ------------------------------------------------------

PASSWORD_SCHEME = "pbkdf2_sha256"
SIGNING_KEY_NAME = "jwt_signing_key"

# PBKDF2 runs one process does at once: all cores but one, so reads keep a core
# while logins hash (docs/security.md, "Hashing is bounded").
HASH_SLOTS = max(1, (os.cpu_count() or 1) - 1)
# How long a login waits for a hashing slot before it answers 503 (API: about 0.1 s),
# and how long a signed-in request (a password change, an admin's edit) waits.
LOGIN_HASH_WAIT = 0.1
SIGNED_IN_HASH_WAIT = 10.0


class Hasher:
    """PBKDF2-HMAC-SHA256 for one app, at most ``slots`` runs at once.

    Every run happens inside ``slot()``. A login meets a busy hasher with a
    503 at once when its predicted wait (the runs queued ahead of it times
    their average length) is past its bound, so a flood of logins is answered
    in microseconds instead of holding the server's threads.
    """

    def __init__(self, iterations: int, slots: int, kdf: KDF = hashlib.pbkdf2_hmac) -> None:
        self.iterations = iterations
        self.slots = slots
        self.kdf = kdf
        self._free = threading.Semaphore(slots)
        self._lock = threading.Lock()
        self._running = 0
        self._waiting = 0
        self._average = 0.0  # seconds per run, a moving average
        # A well-formed hash at today's cost that no password matches, for unknown
        # names: random bytes, so making it costs no run.
        salt, digest = secrets.token_bytes(16), secrets.token_bytes(32)
        self.dummy_hash = "$".join((PASSWORD_SCHEME, str(iterations), _b64(salt), _b64(digest)))

    @contextlib.contextmanager
    def slot(self, wait: float, predict: bool = False) -> Iterator[None]:
        """Hold a hashing slot for the block; 503 when none is free within ``wait`` seconds
        (at once, when ``predict`` and the runs queued ahead would take longer)."""
        with self._lock:
            ahead = self._waiting + self._running - self.slots + 1
            if predict and ahead > 0 and ahead * self._average / self.slots > wait:
                raise too_busy()
            self._waiting += 1
        try:
            acquired = self._free.acquire(timeout=wait)
        finally:
            with self._lock:
                self._waiting -= 1
                self._running += acquired
        if not acquired:
            raise too_busy()
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
            self._free.release()

    def hash(self, password: str) -> str:
        """A new self-describing hash of ``password`` with a 16-byte salt."""
        salt = secrets.token_bytes(16)
        digest = self._run(password.encode(), salt, self.iterations)
        return "$".join((PASSWORD_SCHEME, str(self.iterations), _b64(salt), _b64(digest)))

    def derive(self, secret: str, salt: bytes) -> str:
        """PBKDF2 of ``secret`` with the given ``salt`` at today's cost, as hex: the same
        text for the same inputs (to compare a secret later without keeping it)."""
        return self._run(secret.encode(), salt, self.iterations).hex()

    def verify(self, password: str, stored: str) -> bool:
        """Check ``password`` against ``stored`` in constant time, at today's cost at least.

        A hash made with fewer iterations is padded to today's count, so a
        failed login costs the same for an old account as for an unknown name.
        """
        try:
            scheme, count, salt, digest = stored.split("$")
            iterations, expected, salt_bytes = int(count), base64.b64decode(digest), base64.b64decode(salt)
        except (ValueError, binascii.Error):
            scheme, iterations, expected, salt_bytes = "", 0, b"", b""
        actual = self._run(password.encode(), salt_bytes, iterations) if iterations > 0 else b""
        if iterations < self.iterations:
            self._run(b"", b"padding", self.iterations - max(iterations, 0))
        return scheme == PASSWORD_SCHEME and bool(expected) and hmac.compare_digest(actual, expected)

    def _run(self, password: bytes, salt: bytes, iterations: int) -> bytes:
        started = time.perf_counter()
        digest = self.kdf("sha256", password, salt, iterations)
        with self._lock:
            self._average += (time.perf_counter() - started - self._average) / 4
        return digest


def hash_iterations(stored: str) -> int:
    """The iteration count a stored hash was made with (0 if unreadable)."""
    parts = stored.split("$")
    return int(parts[1]) if len(parts) == 4 and parts[1].isdigit() and len(parts[1]) < 10 else 0


def hash_password(password: str, iterations: int) -> str:
    """Hash ``password`` at ``iterations`` (for the operator's commands and tests)."""
    return Hasher(iterations, 1).hash(password)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def too_busy() -> HTTPError:
    """The answer when the hasher is busy past a request's bound."""
    return HTTPError(503, "Too many password checks at once; try again shortly", [("Retry-After", "1")])


# A token's iat may lie this far in the future (clock skew between servers), no more.
ALLOWED_SKEW = 60


def issue_token(app: TodoApp, public_id: str, session_id: str, issued: float, ends: float = math.inf) -> str:
    """Sign an access token of a session: public_id, sid, iat (``issued``) and exp (never past ``ends``)."""
    claims = {
        "public_id": public_id,
        "sid": session_id,
        "iat": int(issued),
        "exp": int(min(issued + app.settings.token_ttl, ends)),
    }
    return jwt.encode(claims, app.secret_key, algorithm="HS256")


def read_token(environ: Environ) -> str | None:
    """The token from ``x-access-token`` or ``Authorization: Bearer``, if any."""
    # A header that is present but empty carries a bad token, not none.
    token = environ.get("HTTP_X_ACCESS_TOKEN")
    if token is not None:
        return str(token).strip()
    scheme, _, credentials = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    return None


# Verified tokens remembered per app; beyond this many, the oldest is forgotten.
TOKEN_CACHE_SIZE = 4096


class TokenCache:
    """Verified claims by exact token string, bounded, first in first out.

    Checking an HS256 signature with a fixed key is deterministic: the same
    string always verifies the same way, so remembering the claims of one that
    did cannot let through a token the full check would refuse. Only what the
    signature proves is kept; expiry is checked on every use, and everything
    that can end a token early (its session ending) is in the
    database, read on every request. Reads take no lock (a dict lookup is
    atomic under the GIL); inserts do, since eviction iterates the dict.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._claims: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> dict[str, Any] | None:
        """The verified claims of ``token``, if it was verified before."""
        return self._claims.get(token)

    def put(self, token: str, claims: dict[str, Any]) -> None:
        """Remember ``claims`` as verified for ``token``, forgetting the oldest if full."""
        with self._lock:
            while len(self._claims) >= self.size:
                del self._claims[next(iter(self._claims))]
            self._claims[token] = claims

    def __len__(self) -> int:
        return len(self._claims)


def decode_token(app: TodoApp, token: str, now: float) -> dict[str, Any]:
    """The token's claims if its signature and shape hold and it is live by the clock; else 401.

    Signature and shape are remembered per token string (TokenCache); the
    clock checks run on every use, against the app's clock rather than
    PyJWT's own, so the whole service shares one notion of "now".
    """
    claims = app.tokens.get(token)
    if claims is None:
        claims = verify_token(app, token)
        # The store knows a session by the digest of its id (a copy of the database
        # holds no id): made once per token, with what the signature proved.
        claims["session"] = digest(claims["sid"])
        app.tokens.put(token, claims)
    if claims["iat"] > now + ALLOWED_SKEW:
        raise token_refused("malformed")
    if claims["exp"] <= now:
        raise token_refused("expired")
    return claims


def verify_token(app: TodoApp, token: str) -> dict[str, Any]:
    """Verify the signature (HS256 only) and the claims' shape; raise 401 if bad."""
    try:
        claims = jwt.decode(
            token,
            app.secret_key,
            algorithms=["HS256"],
            options={"require": ["exp", "iat", "public_id", "sid"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError:
        raise token_refused("revoked" if signed_with_retired_key(app, token) else "malformed") from None
    except jwt.PyJWTError:
        raise token_refused("malformed") from None
    exp, iat = claims["exp"], claims["iat"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (exp, iat)):
        raise token_refused("malformed")
    if not isinstance(claims["public_id"], str) or not isinstance(claims["sid"], str):
        raise token_refused("malformed")
    # Whoever signed it: a lifetime longer than ours is not one we issue.
    if exp - iat > app.settings.token_ttl:
        raise token_refused("malformed")
    return claims


def signed_with_retired_key(app: TodoApp, token: str) -> bool:
    """Whether ``token`` carries a good signature by the key that rotate-key replaced."""
    if app.retired_key is None:
        return False
    try:
        jwt.decode(
            token,
            app.retired_key,
            algorithms=["HS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError:
        return False
    return True


def authenticate(req: Request, read: Callable[..., Any] | None = None, *args: Any) -> tuple[dict[str, Any], Any]:
    """The one token decision of every handler: return (the signed-in account, what ``read`` read).

    The token must verify (``decode_token``) and its session must still be in
    the database. ``read(conn, session_id, public_id, now, *args)`` reads the
    account together with a route's data in one statement, answering
    (account or None, data); without it only the account is read. Writes check
    the session again inside their own transaction (``req.caller``).
    """
    token = read_token(req.environ)
    if token is None:
        raise HTTPError(401, "Token is missing!", [("WWW-Authenticate", "Bearer")])
    now = req.app.clock()
    claims = decode_token(req.app, token, now)
    session, public_id = claims["session"], claims["public_id"]
    req.claims, req.now = claims, now
    if read is None:
        account, data = req.store.session_account(req.conn, session, public_id, now), None
    else:
        account, data = read(req.conn, session, public_id, now, *args)
    if account is None:
        raise token_refused("revoked")
    req.account = account
    return account, data


def require_admin(req: Request) -> dict[str, Any]:
    """Return the signed-in account if it is an admin; else 401 or 403."""
    account, _ = authenticate(req)
    if not account["admin"]:
        raise HTTPError(403, "Cannot perform that function!")
    return account


def token_refused(why: str) -> HTTPError:
    """The one answer for a token that fails a check, saying why (RFC 6750 3): expired, revoked or malformed."""
    challenge = f'Bearer error="invalid_token", error_description="{why}"'
    return HTTPError(401, "Token is invalid!", [("WWW-Authenticate", challenge)])


def could_not_verify() -> HTTPError:
    """The one answer for missing credentials, an unknown name, a wrong password."""
    return HTTPError(401, "Could not verify", [("WWW-Authenticate", 'Basic realm="Login required!"')])


def basic_credentials(environ: Environ) -> tuple[str, str] | None:
    """(name, password) from ``Authorization: Basic`` (RFC 7617), or None."""
    scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text given to b64decode
        return None
    name, colon, password = decoded.partition(":")
    return (name, password) if colon and name else None


# -- validation of names, passwords and text ------------------------------------

# Unicode categories a name may not hold: control, format (zero-width,
# bidirectional overrides, soft hyphen), surrogate, line and paragraph separators.
FORBIDDEN_IN_NAMES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def account_name(name: str) -> str:
    """``name`` in the form it is stored (NFC), or 400 saying why it cannot be an account name."""
    name = unicodedata.normalize("NFC", name)
    if not 1 <= len(name) <= 50:
        raise HTTPError(400, "Field 'name' must be 1 to 50 characters")
    if ":" in name:
        # RFC 7617 2: a Basic user-id cannot contain a colon, so such an account could never log in.
        raise HTTPError(400, "Field 'name' must not contain ':'")
    if any(unicodedata.category(ch) in FORBIDDEN_IN_NAMES for ch in name):
        raise HTTPError(
            400, "Field 'name' must not contain control characters, format characters or line or paragraph separators"
        )
    if name != name.strip():
        raise HTTPError(400, "Field 'name' must not begin or end with white space")
    return name


def password_problem(password: str, field: str = "password") -> str | None:
    """Why ``password`` cannot be a password, or None if it can."""
    if not 8 <= len(password) <= 1024:
        return f"Field '{field}' must be 8 to 1024 characters"
    if not _encodable(password):
        return f"Field '{field}' must be valid Unicode"
    return None


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a to-do's text, or None if it can."""
    if not 1 <= len(text) <= 500:
        return "Field 'text' must be 1 to 500 characters"
    if "\x00" in text:
        return "Field 'text' must not contain NUL"
    if not _encodable(text):
        return "Field 'text' must be valid Unicode"
    return None


def _encodable(text: str) -> bool:
    # JSON can carry a lone surrogate (\ud800), which no UTF-8 store can hold.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(problem: str | None) -> None:
    if problem is not None:
        raise HTTPError(400, problem)


# -- versions (RFC 9110 8.8.3, 13.1) and retry-safe creates --------------------------------

# An entity-tag in a list (RFC 9110 8.8.3): optional W/, then a quoted opaque string.
_ETAG = re.compile(r'\s*(?:(W/)?("[\x21\x23-\x7e\x80-\xff]*")|(\*))\s*(?:,|$)')


def version_tag(state: str) -> str:
    """A strong ETag of a resource's stored state (as text): it changes when the state does, and only then."""
    return '"' + hashlib.blake2b(state.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest() + '"'


def todo_tag(todo: dict[str, Any]) -> str:
    """A to-do's ETag: of all it is (the text last, so no two states read alike)."""
    return version_tag(f"{todo['id']}\x1f{todo['complete']:d}\x1f{todo['text']}")


def account_tag(account: dict[str, Any]) -> str:
    """An account's ETag: of its name, admin flag and password (by its count of changes)."""
    a = account
    return version_tag(f"{a['public_id']}\x1f{a['admin']:d}\x1f{a['password_changes']}\x1f{a['name']}")


def etags(header: str) -> tuple[set[str], set[str]]:
    """The strong and the weak entity-tags of an If-Match or If-None-Match list; "*" counts as strong."""
    strong: set[str] = set()
    weak: set[str] = set()
    for found in _ETAG.finditer(header):
        (weak if found[1] else strong).add(found[2] or found[3])
    return strong, weak


def precondition(req: Request, tag_of: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], None] | None:
    """The If-Match check for a write (RFC 9110 13.1.1), run by the store on the resource as it
    stands, inside the write's transaction: 412 with the current ETag unless one matches.
    Strong comparison: a weak tag never matches. None without If-Match."""
    header = req.environ.get("HTTP_IF_MATCH")
    if header is None:
        return None
    strong, _ = etags(header)

    def check(current: dict[str, Any]) -> None:
        tag = tag_of(current)
        if tag not in strong and "*" not in strong:
            raise HTTPError(412, "Precondition failed", [("ETag", tag)])

    return check


def versioned(req: Request, tag: str, body: Body | bytes, headers: Iterable[tuple[str, str]] = ()) -> Result:
    """A GET's answer with its ETag, or 304 without content when If-None-Match names it
    (RFC 9110 13.1.2: weak comparison, or "*")."""
    header = req.environ.get("HTTP_IF_NONE_MATCH")
    if header is not None:
        strong, weak = etags(header)
        if tag.removeprefix("W/") in strong | weak or "*" in strong:
            return 304, b"", [("ETag", tag), *headers]
    return 200, body, [("ETag", tag), *headers]


def page_answer(req: Request, body: Body, headers: list[tuple[str, str]]) -> Result:
    """A list page with a weak ETag of its encoded content (and 304 on a match)."""
    payload = req.app.encode(body).encode("ascii")
    digest = hashlib.blake2b(payload, digest_size=12)
    for _, value in headers:  # the next page's Link: a page that gains or loses one has changed
        digest.update(value.encode("utf-8", "surrogatepass"))
    tag = 'W/"' + digest.hexdigest() + '"'
    return versioned(req, tag, payload, [JSON_TYPE, *headers])


def retry_safe(
    req: Request, data: Body, answer: Callable[[dict[str, Any]], Result], secret_field: str | None = None
) -> store.Once | None:
    """The Idempotency-Key of a create, if any: its key, a fingerprint of this request
    (method, path and the body as parsed JSON), and the answer to keep for its retries.

    The fingerprint is kept a day, in backups too: a ``secret_field`` (a password)
    enters it only through a PBKDF2 run at today's cost, salted by the account and
    the key, so a copy of the database holds it no weaker than the account's own hash.
    """
    key = req.environ.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all(" " <= ch <= "~" for ch in key):
        raise HTTPError(400, "Header 'Idempotency-Key' must be 1 to 255 printable ASCII characters")
    if secret_field is not None:
        salt = hashlib.sha256(f"{req.claims['public_id']}\x1f{key}".encode()).digest()[:16]
        with req.app.hasher.slot(SIGNED_IN_HASH_WAIT):
            data = {**data, secret_field: req.app.hasher.derive(data[secret_field], salt)}
    request = json.dumps([req.method, req.url(req.path), data], sort_keys=True, separators=(",", ":"))
    now = req.app.clock()

    def kept(created: dict[str, Any]) -> str:
        return json.dumps(answer(created))

    return store.Once(key, hashlib.sha256(request.encode("utf-8", "surrogatepass")).hexdigest(), now, now - 86400, kept)


def replayed(kept: str) -> Result:
    """The first answer of an Idempotency-Key, as kept: status, body and headers."""
    status, body, headers = json.loads(kept)
    return status, body, [(name, value) for name, value in headers]


# -- handlers ---------------------------------------------------------------------------


def healthz(req: Request) -> Result:
    """200 when the database answers; a failing database is a 503 at the edge."""
    req.store.ping(req.conn)
    return 200, {"status": "ok"}


def openapi(req: Request) -> Result:
    """This API's OpenAPI 3.1 document, read and encoded once per app; no token."""
    return 200, req.app.openapi_document, [JSON_TYPE]


def login(req: Request) -> Result:
    """Exchange HTTP Basic credentials for a token of a new session, throttled per name and address.

    Check, hash, then decide again: the session starts only if the password has
    not changed since it was read, in the same transaction as the write.
    """
    app, credentials = req.app, basic_credentials(req.environ)
    if credentials is None:
        raise could_not_verify()  # at once, without hashing
    name, password = credentials
    name_key, address = throttle_name(name), req.address
    # Refused before it may even wait for a hashing slot: a client past its limit
    # must not keep others' logins from hashing. A read first, so a login within its
    # limits is counted once, below. One throttled by its name's count is counted and
    # recorded here (its rows exist: nothing grows); past the address's limit, the
    # audit trail has had its budget, and invented names must not grow the table.
    now = app.clock()
    counts: tuple[int, float, int, float] = req.store.login_failures(
        req.conn, name_key, address, now - app.settings.login_window
    )
    try:
        refuse_if_throttled(req, *counts, now)
    except HTTPError:
        if counts[2] <= app.settings.login_max_failures_per_address:
            check_throttle(req, name_key, address, now)  # counts, records, 429
        raise
    with app.hasher.slot(LOGIN_HASH_WAIT, predict=True):  # busy: 503 at once, nothing counted
        issued = app.clock()  # before the hash is read: the token is never newer than what it saw
        by_address = check_throttle(req, name_key, address, issued)
        account = req.store.get_login(req.conn, name)
        # An unknown name costs one hash too, so timing does not tell names apart.
        stored = account["password_hash"] if account else app.hasher.dummy_hash
        if not app.hasher.verify(password, stored) or account is None:
            record_refusal(req, "login.failed", account["public_id"] if account else None, by_address, issued)
            raise could_not_verify()
        stronger = app.hasher.hash(password) if hash_iterations(stored) < app.settings.pbkdf2_iterations else None
    session_id = secrets.token_urlsafe(16)
    caller = store.Caller(digest(session_id), account["public_id"], req.client, issued)
    refresh_token, ends = new_refresh_token(session_id), issued + app.settings.refresh_ttl
    # Expired sessions and old events are pruned in the same write: nothing can fail after it.
    started = req.store.start_session(
        req.conn,
        account,
        caller,
        digest(refresh_token),
        ends,
        stronger_hash=stronger,
        name=name_key,
        address=address,
        events_before=issued - app.settings.audit_retention_days * 86400,
    )
    if not started:  # the password changed while this login was hashing
        record_refusal(req, "login.failed", account["public_id"], by_address, issued)
        raise could_not_verify()
    req.account = account  # for the access log
    return 200, session_answer(app, account, session_id, refresh_token, issued, ends)


def session_answer(
    app: TodoApp, account: dict[str, Any], session_id: str, refresh_token: str, now: float, ends: float
) -> Body:
    """A login's or a refresh's answer: an access token of the session (``session_id``, as the
    client holds it) and its next refresh token; neither outlives the session."""
    token = issue_token(app, account["public_id"], session_id, now, ends)
    return {
        "token": token,
        "expires_in": int(min(app.settings.token_ttl, ends - int(now))),
        "refresh_token": refresh_token,
        "refresh_expires_in": max(0, int(ends - now)),
    }


def digest(secret: str) -> str:
    """What the store keeps of a secret the client holds (a session id, a refresh token): its
    SHA-256, so a copy of the database holds none usable."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_refresh_token(session_id: str) -> str:
    """A session's next refresh token: its id, then 256 random bits. Opaque to clients; the id
    lets a token spent before be known as one of the session's, so a replay ends it."""
    return f"{session_id}.{secrets.token_urlsafe(32)}"


def max_rotations(settings: Settings) -> int:
    """How many refresh tokens one session may spend: twice as many as a client refreshing
    only when its access token expires needs over the session's life (1,344 by default).
    Past it the session is refreshed no more and its client signs in again, so a client
    refreshing in a loop cannot grow the spent tokens, kept to catch replays, without bound."""
    return 2 * math.ceil(settings.refresh_ttl / settings.token_ttl)


def refresh(req: Request) -> Result:
    """Spend a refresh token for a new access token and its successor (rotation, RFC 9700 4.14.2).

    No access token needed. A spent token presented again ends its whole
    session; every bad token answers the same 401. A session in its last
    second is not refreshed (an access token of it would be born expired),
    and its token stays unspent: the store refuses it inside the rotation.
    """
    data = req.json({"refresh_token": str})
    spent, now = data["refresh_token"], req.app.clock()
    session_id, _, secret = spent.partition(".")
    found = None
    if session_id and secret and len(spent) <= 200 and _encodable(spent):
        successor = new_refresh_token(session_id)
        # Tokens' times are whole seconds: a session must last past this one.
        found = req.store.refresh_session(
            req.conn,
            digest(session_id),
            digest(spent),
            digest(successor),
            now,
            req.client,
            int(now) + 1,
            max_rotations=max_rotations(req.app.settings),
        )
    if found is None:
        raise token_refused("revoked")
    account, ends = found
    req.account = account
    return 200, session_answer(req.app, account, session_id, successor, now, ends)


def check_throttle(req: Request, name: str, address: str, now: float) -> int:
    """Count a password attempt of ``name`` from ``address``; 429 once either is past its limit.

    Return the address's count in the window, which bounds how many refused
    logins from there the audit trail records (``record_refusal``).
    """
    window = req.app.settings.login_window
    counts: tuple[int, float, int, float] = req.store.count_login_attempt(req.conn, name, address, now, window)
    try:
        refuse_if_throttled(req, *counts, now)
    except HTTPError:
        req.app.log.warning("login throttled: name %s from %s", path_for_log(name), path_for_log(address))
        record_refusal(req, "login.throttled", None, counts[2], now)
        raise
    return counts[2]


def refuse_if_throttled(
    req: Request, by_name: int, name_start: float, by_address: int, address_start: float, now: float
) -> None:
    """429 with Retry-After when the name (from this address) or the address is past its limit."""
    settings = req.app.settings
    over = []
    if by_name > settings.login_max_failures:
        over.append(name_start)
    if by_address > settings.login_max_failures_per_address:
        over.append(address_start)
    if over:
        retry_after = max(1, math.ceil(max(over) + settings.login_window - now))
        raise HTTPError(429, "Too many failed logins; try again later", [("Retry-After", str(retry_after))])


def record_refusal(req: Request, action: str, target: str | None, by_address: int, now: float) -> None:
    """Record a refused login in its own transaction: at most the address's budget plus one
    per window, so one client cannot grow the audit trail without bound."""
    if by_address <= req.app.settings.login_max_failures_per_address + 1:
        # No one is signed in: an empty caller, so the event's actor is null.
        req.store.record_event(req.conn, store.Caller("", "", req.client, now), action, target)


def logout(req: Request) -> Result:
    """End this token's session: every token issued in it stops working."""
    authenticate(req)
    req.no_body()
    req.store.end_session(req.conn, req.caller)
    return 200, {"message": "Logged out!"}


def public(account: dict[str, Any]) -> Body:
    """An account as shown to clients: never its internal id or its hash."""
    return {"public_id": account["public_id"], "name": account["name"], "admin": account["admin"]}


def page(req: Request, *, with_complete: bool = False) -> tuple[int, int, bool | None]:
    """Read ``limit``, ``offset`` (and ``complete``) from the query string."""
    query = req.query()
    limit = _query_int(query, "limit", 100, 1, 1000)
    offset = _query_int(query, "offset", 0, 0, store.MAX_ID)
    complete = None
    if with_complete and "complete" in query:
        if query["complete"] not in ("true", "false"):
            raise HTTPError(400, "Query parameter 'complete' must be true or false")
        complete = query["complete"] == "true"
    return limit, offset, complete


def _query_int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    # Leading zeros are read, not counted: int() of thousands of digits raises before any range check.
    digits = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit()) or len(digits) > 19 or not low <= int(digits) <= high:
        raise HTTPError(400, f"Query parameter '{name}' must be an integer from {low} to {high}")
    return int(digits)


def next_link(req: Request, limit: int, offset: int, extra: dict[str, str]) -> list[tuple[str, str]]:
    """A ``Link: <...>; rel="next"`` header (RFC 8288) for the following page."""
    query = urlencode({"limit": limit, "offset": offset + limit, **extra})
    return [("Link", f'<{req.url(req.path)}?{query}>; rel="next"')]


def list_users(req: Request) -> Result:
    """Every account, a page at a time."""
    require_admin(req)
    limit, offset, _ = page(req)
    users = req.store.list_users(req.conn, limit + 1, offset)
    headers = next_link(req, limit, offset, {}) if len(users) > limit else []
    return page_answer(req, {"users": [public(u) for u in users[:limit]]}, headers)


def get_user(req: Request, public_id: str) -> Result:
    """One account by its public id."""
    require_admin(req)
    user = req.store.get_user(req.conn, public_id)
    if user is None:
        raise HTTPError(404, "No user found!")
    return versioned(req, account_tag(user), {"user": public(user)})


def create_user(req: Request) -> Result:
    """A new, non-admin account."""
    require_admin(req)
    data = req.json({"name": str, "password": str})
    name = account_name(data["name"])
    _check(password_problem(data["password"]))
    with req.app.hasher.slot(SIGNED_IN_HASH_WAIT):
        password_hash = req.app.hasher.hash(data["password"])

    def answer(user: dict[str, Any]) -> Result:
        headers = [("Location", req.url(f"/user/{user['public_id']}")), ("ETag", account_tag(user))]
        return 201, {"message": "New user created!", "user": public(user)}, headers

    once = retry_safe(req, data, answer, secret_field="password")
    created = req.store.create_user(req.conn, req.caller, str(uuid.uuid4()), name, password_hash, False, once)
    return replayed(created) if isinstance(created, str) else answer(created)


def promote_user(req: Request, public_id: str) -> Result:
    """Make an account an admin."""
    require_admin(req)
    req.no_body()
    user = req.store.update_user(req.conn, req.caller, public_id, admin=True, check=precondition(req, account_tag))
    if user is None:
        raise HTTPError(404, "No user found!")
    return 200, {"message": "The user has been promoted!"}, [("ETag", account_tag(user))]


def patch_user(req: Request, public_id: str) -> Result:
    """Rename, reset the password of (ending its sessions), or (de)promote an account."""
    require_admin(req)
    data = req.json({}, {"name": str, "password": str, "admin": bool})
    name = account_name(data["name"]) if "name" in data else None
    password_hash = None
    if "password" in data:
        _check(password_problem(data["password"]))
        with req.app.hasher.slot(SIGNED_IN_HASH_WAIT):
            password_hash = req.app.hasher.hash(data["password"])
    change = {"name": name, "password_hash": password_hash, "admin": data.get("admin")}
    user = req.store.update_user(req.conn, req.caller, public_id, **change, check=precondition(req, account_tag))
    if user is None:
        raise HTTPError(404, "No user found!")
    return 200, {"user": public(user)}, [("ETag", account_tag(user))]


def delete_user(req: Request, public_id: str) -> Result:
    """Delete an account, its to-dos and its sessions; never the last admin."""
    require_admin(req)
    req.no_body()
    if not req.store.delete_user(req.conn, req.caller, public_id, precondition(req, account_tag)):
        raise HTTPError(404, "No user found!")
    return 200, {"message": "The user has been deleted!"}


def get_me(req: Request) -> Result:
    """The signed-in account."""
    account, _ = authenticate(req)
    return versioned(req, account_tag(account), {"user": public(account)})


def change_my_password(req: Request) -> Result:
    """Change one's own password; every session of the account ends.

    A wrong old password counts as a failed login. The new hash is written
    only if the stored one is still the hash the old password was checked
    against (compare and swap), and only while this session lives.
    """
    account, _ = authenticate(req)
    data = req.json({"old_password": str, "new_password": str})
    _check(password_problem(data["new_password"], "new_password"))
    if not _encodable(data["old_password"]):
        raise HTTPError(400, "Field 'old_password' must be valid Unicode")
    hasher, name, address = req.app.hasher, throttle_name(account["name"]), req.address
    with hasher.slot(SIGNED_IN_HASH_WAIT):
        now = req.app.clock()
        by_address = check_throttle(req, name, address, now)
        login_row = req.store.get_login(req.conn, account["name"])
        if login_row is None or login_row["public_id"] != account["public_id"]:
            # Renamed or deleted since authenticate() read it: the old password is
            # never checked against whichever account holds the name now.
            raise HTTPError(409, "The account changed meanwhile; try again")
        stored = login_row["password_hash"]
        if not hasher.verify(data["old_password"], stored):
            record_refusal(req, "login.failed", account["public_id"], by_address, now)
            raise HTTPError(403, "Wrong password!")
        new_hash = hasher.hash(data["new_password"])
    changed = req.store.update_user(
        req.conn,
        req.caller,
        account["public_id"],
        password_hash=new_hash,
        verified_hash=stored,
        forgive=(name, address),
    )
    if changed is None:
        raise token_refused("revoked")
    return 200, {"message": "Password changed!"}


def list_todos(req: Request) -> Result:
    """The account's own to-dos in id order, a page at a time."""
    # A bad query is answered after the token's decision (a refused token is
    # a 401 before a 400): the first page is read meanwhile and not shown.
    try:
        limit, offset, complete = page(req, with_complete=True)
        bad_query = None
    except HTTPError as error:
        (limit, offset, complete), bad_query = (100, 0, None), error
    _, todos = authenticate(req, req.store.session_account_with_todos, limit + 1, offset, complete)
    if bad_query is not None:
        raise bad_query
    headers = []
    if len(todos) > limit:
        extra = {} if complete is None else {"complete": "true" if complete else "false"}
        headers = next_link(req, limit, offset, extra)
    return page_answer(req, {"todos": todos[:limit]}, headers)


def get_todo(req: Request, todo_id: int) -> Result:
    """One of the account's to-dos; another's is answered as missing."""
    _, todo = authenticate(req, req.store.session_account_with_todo, todo_id)
    if todo is None:
        raise HTTPError(404, "No todo found!")
    return versioned(req, todo_tag(todo), {"todo": todo})


def create_todo(req: Request) -> Result:
    """A new, incomplete to-do."""
    authenticate(req)
    data = req.json({"text": str})
    _check(text_problem(data["text"]))

    def answer(todo: dict[str, Any]) -> Result:
        headers = [("Location", req.url(f"/todo/{todo['id']}")), ("ETag", todo_tag(todo))]
        return 201, {"message": "Todo created!", "todo": todo}, headers

    once = retry_safe(req, data, answer)
    created = req.store.create_todo(req.conn, req.caller, data["text"], req.app.settings.max_todos_per_account, once)
    return replayed(created) if isinstance(created, str) else answer(created)


def complete_todo(req: Request, todo_id: int) -> Result:
    """Mark a to-do complete."""
    authenticate(req)
    req.no_body()
    todo = req.store.update_todo(req.conn, req.caller, todo_id, complete=True, check=precondition(req, todo_tag))
    if todo is None:
        raise HTTPError(404, "No todo found!")
    return 200, {"message": "Todo item has been completed!"}, [("ETag", todo_tag(todo))]


def patch_todo(req: Request, todo_id: int) -> Result:
    """Edit a to-do's text and/or completion; ``{}`` changes nothing."""
    authenticate(req)
    data = req.json({}, {"text": str, "complete": bool})
    if "text" in data:
        _check(text_problem(data["text"]))
    change = {"text": data.get("text"), "complete": data.get("complete")}
    todo = req.store.update_todo(req.conn, req.caller, todo_id, **change, check=precondition(req, todo_tag))
    if todo is None:
        raise HTTPError(404, "No todo found!")
    return 200, {"todo": todo}, [("ETag", todo_tag(todo))]


def delete_todo(req: Request, todo_id: int) -> Result:
    """Delete a to-do."""
    authenticate(req)
    req.no_body()
    if not req.store.delete_todo(req.conn, req.caller, todo_id, precondition(req, todo_tag)):
        raise HTTPError(404, "No todo found!")
    return 200, {"message": "Todo item deleted!"}


def list_audit(req: Request) -> Result:
    """The audit trail, newest first, a page at a time, filtered by action, actor and target."""
    require_admin(req)
    limit, offset, _ = page(req)
    query = req.query()
    filters: dict[str, str] = {name: query[name] for name in ("action", "actor", "target") if name in query}
    events = req.store.list_events(req.conn, limit + 1, offset, **filters)
    headers = next_link(req, limit, offset, filters) if len(events) > limit else []
    return 200, {"events": [{**event, "time": iso_utc(event["time"])} for event in events[:limit]]}, headers


# -- the browser client's files (todo_wsgi_web; API.md, "Browser client") -----------

# Path -> file of the package todo_wsgi_web; relative URLs in the files, so any mount prefix works.
WEB_FILES = MappingProxyType({"/": "index.html", "/client.js": "client.js", "/client.css": "client.css"})
WEB_TYPES = MappingProxyType(
    {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
)
WEB_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-cache"),  # RFC 9111 5.2.2.4: kept, but revalidated (ETag) before each use
)


def load_web_files() -> dict[str, tuple[bytes, str, str]]:
    """Each client file by path: its bytes, Content-Type and strong ETag, read once per app."""
    package = importlib.resources.files("todo_wsgi_web")
    files = {}
    for path, name in WEB_FILES.items():
        data = package.joinpath(name).read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        files[path] = (data, WEB_TYPES[name.rpartition(".")[2]], etag)
    return files


def web_file(req: Request) -> Result:
    """One of the client's files as it is; 304 when If-None-Match names its ETag."""
    if req.path not in req.app.web_files:  # web_client off
        raise HTTPError(404, "Not found")
    data, content_type, etag = req.app.web_files[req.path]
    headers = [("ETag", etag), *WEB_HEADERS]
    # RFC 9110 13.1.2: weak comparison, a list of tags or "*".
    wanted = {tag.strip().removeprefix("W/") for tag in req.environ.get("HTTP_IF_NONE_MATCH", "").split(",")}
    if etag in wanted or "*" in wanted:
        return 304, b"", headers
    return 200, data, [("Content-Type", content_type), *headers]


def web_redirect(req: Request) -> Result:
    """The mount prefix without its slash: 308 to the prefix with one, where the client's page is."""
    if not req.app.web_files:
        raise HTTPError(404, "Not found")
    location = req.url("/")
    return 308, {"message": f"Moved to {location}"}, [("Location", location)]


# -- the route table ----------------------------------------------------------------------

ROUTES: tuple[tuple[str, str, Callable[..., Result]], ...] = (
    ("GET", "", web_redirect),  # only below a mount prefix: Request.path
    ("GET", "/", web_file),
    ("GET", "/client.js", web_file),
    ("GET", "/client.css", web_file),
    ("GET", "/healthz", healthz),
    ("GET", "/openapi.json", openapi),
    ("GET", "/login", login),
    ("POST", "/login", login),
    ("POST", "/logout", logout),
    ("POST", "/refresh", refresh),
    ("GET", "/me", get_me),
    ("PUT", "/me/password", change_my_password),
    ("GET", "/user", list_users),
    ("POST", "/user", create_user),
    ("GET", "/user/<public_id>", get_user),
    ("PUT", "/user/<public_id>", promote_user),
    ("PATCH", "/user/<public_id>", patch_user),
    ("DELETE", "/user/<public_id>", delete_user),
    ("GET", "/todo", list_todos),
    ("POST", "/todo", create_todo),
    ("GET", "/todo/<int:todo_id>", get_todo),
    ("PUT", "/todo/<int:todo_id>", complete_todo),
    ("PATCH", "/todo/<int:todo_id>", patch_todo),
    ("DELETE", "/todo/<int:todo_id>", delete_todo),
    ("GET", "/audit", list_audit),
)


if __name__ == "__main__":
    # python -m todo_wsgi: hand over to the operator's module, at run time only.
    from todo_wsgi_cli import main

    sys.exit(main())
