"""todo-wsgi: a multi-user to-do REST API as one plain WSGI application.

Owns the application: settings and ``create_app``; the WSGI edge (request,
bounded body reader, the one error-to-JSON place, the one response path);
tokens and passwords; the handlers with their route table; and the
``python -m todo_wsgi`` command line. SQL lives in ``store.py`` (or
``store_pg.py``), path matching in ``router.py``. The contract is API.md.

No module-level mutable state: everything a request touches hangs off the
``TodoApp`` that ``create_app`` returns, so two apps in one process are apart.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import contextlib
import getpass
import hashlib
import hmac
import importlib.resources
import json
import logging
import math
import os
import secrets
import signal
import sys
import threading
import time
import traceback
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import jwt

import store
from router import HTTPError, Router

__all__ = ["HTTPError", "Settings", "TodoApp", "create_app", "main"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Body = dict[str, Any]
# A handler answers a body to encode, or bytes already encoded (the OpenAPI document).
Result = tuple[int, Body | bytes] | tuple[int, Body | bytes, list[tuple[str, str]]]

# Shipped beside this module: in the checkout, and in the wheel by setup.py's build_py.
OPENAPI_PATH = Path(__file__).with_name("openapi.json")


# -- settings and create_app ---------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Every setting of API.md, resolved from arguments, environment, defaults."""

    database: str = "todo.db"
    secret_key: str | None = None
    token_ttl: int = 1800
    pbkdf2_iterations: int = 600_000
    max_body_bytes: int = 65536
    login_max_failures: int = 5
    login_window: int = 900
    cors_origins: tuple[str, ...] = ()
    pool_size: int = 4
    web_client: bool = True

    @classmethod
    def resolve(cls, environ: dict[str, str] | None = None, **given: Any) -> Settings:
        """Take each setting from ``given``, else ``TODO_<NAME>``, else the default."""
        environ = dict(os.environ) if environ is None else environ
        values: dict[str, Any] = {}
        for name, default in cls().__dict__.items():
            value = given.get(name)
            if value is None:
                value = environ.get(f"TODO_{name.upper()}") or None
            if value is None:
                continue
            if isinstance(default, bool):  # before int: bool is an int in Python
                value = _on_off(name, value)
            elif isinstance(default, int):
                value = _positive_int(name, value)
            elif name == "cors_origins":
                value = _origins(value)
            values[name] = str(value) if name in ("database", "secret_key") else value
        return cls(**values)


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1 or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"setting {name} (TODO_{name.upper()}) must be a positive integer, got {value!r}")
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
    cors_origins: str | Iterable[str] | None = None,
    pool_size: int | None = None,
    web_client: bool | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> TodoApp:
    """Build the WSGI application; each setting not given is read from TODO_<NAME>.

    ``clock`` returns the current Unix time; tests pass a fake one to move
    through token lifetimes and throttling windows without sleeping.
    """
    settings = Settings.resolve(
        database=database,
        secret_key=secret_key,
        token_ttl=token_ttl,
        pbkdf2_iterations=pbkdf2_iterations,
        max_body_bytes=max_body_bytes,
        login_max_failures=login_max_failures,
        login_window=login_window,
        cors_origins=cors_origins,
        pool_size=pool_size,
        web_client=web_client,
    )
    return TodoApp(settings, clock)


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
    """The WSGI callable: settings, database, signing key and router of one app."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.log = logging.getLogger("todo_wsgi")
        self.access_log = AccessLog(logging.getLogger("todo_wsgi.access"))
        # As waitress-serve does for its own logger: a default level only when
        # the operator set none, so the access log reaches whatever handler
        # the host configured (waitress.serve installs one on stderr).
        if self.access_log.logger.level == logging.NOTSET:
            self.access_log.logger.setLevel(logging.INFO)
        if settings.secret_key is not None and len(settings.secret_key.encode()) < 32:
            raise ValueError(
                "TODO_SECRET_KEY must be at least 32 bytes (RFC 7518 3.2: an HS256 key "
                "as long as the hash); generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        self.store = backend_for(settings.database)
        self.db = self.store.open_database(settings.database, settings.pool_size)
        with self.db.connection() as conn:
            self.secret_key = settings.secret_key or self.store.get_or_create_secret(
                conn, "jwt_signing_key", secrets.token_urlsafe(48)
            )
        self.router = Router(ROUTES)
        # Parsed once to fail at start on a broken file, then served as these bytes.
        self.openapi_document = json_bytes(json.loads(OPENAPI_PATH.read_text(encoding="utf-8")))
        self.web_files = load_web_files() if settings.web_client else {}
        self.tokens = TokenCache(TOKEN_CACHE_SIZE)
        self.cors_origins = frozenset(settings.cors_origins)
        self._dummy_hash: str | None = None

    def close(self) -> None:
        """Write the access-log lines still waiting, then release the database connections."""
        self.access_log.close()
        self.db.close()

    def dummy_hash(self) -> str:
        """A well-formed hash at the configured cost that no password matches, for unknown names.

        Random bytes, not a hash of anything: building it costs no PBKDF2 run,
        so even the first unknown name costs exactly one, as a wrong password does.
        """
        if self._dummy_hash is None:
            salt, digest = secrets.token_bytes(16), secrets.token_bytes(32)
            self._dummy_hash = "$".join(
                (PASSWORD_SCHEME, str(self.settings.pbkdf2_iterations), _b64(salt), _b64(digest))
            )
        return self._dummy_hash

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
        except HTTPError as error:
            status, body, headers = error.status, {"message": error.message}, error.headers
        except self.store.UNAVAILABLE:
            self.log.exception("database unavailable on %s %s", req.method, req.log_path)
            status, body, headers = 503, {"message": "Database unavailable"}, [("Retry-After", "5")]
        except Exception:
            # The traceback goes to the log only; the client learns nothing of it.
            self.log.exception("unhandled error on %s %s", req.method, req.log_path)
            status, body, headers = 500, {"message": "Internal server error"}, []
        if self.cors_origins:
            # Fetch standard, "CORS protocol and HTTP caches": whether the CORS
            # headers come depends on Origin, so every answer varies on it,
            # including those to no or an unlisted origin.
            headers = headers + [("Vary", "Origin")] + (cors_headers(origin or "") if cors else [])
        if status == 204:
            payload, response_headers = b"", [("Content-Length", "0"), *headers]
        elif status == 304:  # RFC 9110 15.4.5: no content, and no Content-Length but the 200's
            payload, response_headers = b"", headers
        else:
            payload = json_bytes(body)
            response_headers = [("Content-Length", str(len(payload))), *headers]
            # Bytes may come with their own type (the browser client's files); all else is JSON.
            if not any(name.lower() == "content-type" for name, _ in headers):
                response_headers.insert(0, ("Content-Type", "application/json"))
        start_response(STATUS_LINES[status], response_headers)
        self.access_log.write(req.method, req.path, status, started, req.account["public_id"] if req.account else "-")
        # RFC 9110 9.3.2: HEAD answers as GET, headers included, without content.
        return [] if req.method == "HEAD" else [payload]

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
                ("Access-Control-Allow-Headers", "Authorization, Content-Type, x-access-token"),
                ("Access-Control-Max-Age", "600"),
            ],
        )


STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}

_json_encoder = json.JSONEncoder(separators=(",", ":"))
# The C encoder that JSONEncoder.encode builds on every call, built once (a
# third of the encoding time of a short body). No circular-reference markers:
# a response body is a tree of dicts and lists made for it.
_encode_chunks = (
    json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _json_encoder.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )
    if json.encoder.c_make_encoder is not None  # type: ignore[attr-defined]
    else None
)


def path_for_log(path: str) -> str:
    """A request path as a log shows it: re-percent-encoded (RFC 3986 2.1), so
    a decoded newline or space cannot forge a second line; never the query."""
    return quote(path, safe="/:@!$&'()*+,;=~", encoding="latin-1", errors="backslashreplace")


class AccessLog:
    """The access log of one app (API.md): a line per request, through ``logging``.

    Each line is method, path (as ``path_for_log`` gives it), status, ms since
    the request began and the account's public id or "-"; never a token or a
    body. By default a request hands its line to the logger as it ends. After
    ``defer()`` (``python -m todo_wsgi serve`` calls it) a request only queues
    the line's fields, and a thread of this object hands the queued lines to
    the logger every ``interval`` seconds, each record stamped with its
    request's time: under a loaded server, making a log record and running the
    handlers on the request's thread cost far more than their in-process
    time (README, "Performance"). Such records name that thread, not the
    request's. ``close()`` hands over what is left.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._waiting: collections.deque[tuple[float, str, str, int, float, str]] | None = None
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._draining = threading.Lock()  # one drain at a time: lines stay in order

    def write(self, method: str, path: str, status: int, started: float, who: str) -> None:
        """Log (or queue) the line of a request that began at ``started`` (a perf_counter reading)."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        ms = (time.perf_counter() - started) * 1000
        waiting = self._waiting
        if waiting is not None:
            waiting.append((time.time(), method, path, status, ms, who))  # deque.append: thread-safe
        # With no handler anywhere, logging's last resort drops INFO: skip the record.
        elif self.logger.hasHandlers():
            self._hand_over(time.time(), method, path, status, ms, who)

    def defer(self, interval: float = 0.05) -> None:
        """From now on queue the lines and hand them to the logger every ``interval`` seconds."""
        if self._writer is None:
            self._waiting = collections.deque()
            self._writer = threading.Thread(target=self._write_every, args=(interval,), name="access-log", daemon=True)
            self._writer.start()

    def flush(self) -> None:
        """Hand every queued line to the logger now, oldest first."""
        self._drain(self._waiting)

    def close(self) -> None:
        """Stop the writing thread, if any, and hand over what is left; later lines go straight to the logger."""
        waiting, self._waiting = self._waiting, None
        self._stop.set()
        if self._writer is not None:
            self._writer.join()
        self._drain(waiting)

    def _drain(self, waiting: collections.deque[tuple[float, str, str, int, float, str]] | None) -> None:
        with self._draining:
            while waiting:
                line = waiting.popleft()
                if self.logger.isEnabledFor(logging.INFO) and self.logger.hasHandlers():
                    try:
                        self._hand_over(*line)
                    except Exception:
                        # A filter or handler that raises loses its line, as it
                        # would on the request's thread, but must not stop the
                        # rest: the queue would grow for the process's life.
                        traceback.print_exc(file=sys.stderr)

    def _write_every(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.flush()

    def _hand_over(self, created: float, method: str, path: str, status: int, ms: float, who: str) -> None:
        log = self.logger
        args = (method, path_for_log(path), status, ms, who)
        # What log.info does, less its stack walk to find the caller (a fifth
        # of the cost of a line): the caller is always the edge of a request.
        record = log.makeRecord(log.name, logging.INFO, __file__, 0, "%s %s %d %.1fms %s", args, None)
        # The request's time, not the record's making (later, for a queued line),
        # in each of the three fields LogRecord derives from its time.
        record.relativeCreated += (created - record.created) * 1000
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        log.handle(record)


def json_bytes(body: Any) -> bytes:
    """Encode a response body; ASCII-only JSON, so any text survives any proxy."""
    if isinstance(body, bytes):
        return body
    if _encode_chunks is None:
        return _json_encoder.encode(body).encode("ascii")
    return "".join(_encode_chunks(body, 0)).encode("ascii")


def cors_headers(origin: str) -> list[tuple[str, str]]:
    """Headers every answer to a listed origin carries, errors included (and Vary)."""
    return [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Expose-Headers", "Location, Link, Retry-After, WWW-Authenticate"),
    ]


class Request:
    """What a handler needs of one request, built once per call."""

    __slots__ = ("account", "app", "claims", "conn", "environ", "method", "path")

    def __init__(self, app: TodoApp, environ: Environ) -> None:
        self.app = app
        self.environ = environ
        self.method: str = environ["REQUEST_METHOD"]
        # An empty PATH_INFO is the app's root, "/", unless the app is mounted below a
        # prefix: then it names the prefix without its slash, which web_redirect answers.
        self.path: str = environ.get("PATH_INFO") or ("" if environ.get("SCRIPT_NAME") else "/")
        self.conn: Any = None
        self.account: dict[str, Any] | None = None
        self.claims: dict[str, Any] | None = None

    @property
    def store(self) -> ModuleType:
        """The store module for this app's backend."""
        return self.app.store

    @property
    def log_path(self) -> str:
        """The path as a log shows it (``path_for_log``)."""
        return path_for_log(self.path)

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


TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer"}


def read_body(environ: Environ, limit: int) -> bytes:
    """Read at most ``limit`` bytes of body, as declared by CONTENT_LENGTH."""
    declared = environ.get("CONTENT_LENGTH", "")
    if not declared:  # PEP 3333: empty or absent means no body
        return b""
    if not declared.isascii() or not declared.isdigit():
        raise HTTPError(400, "Content-Length must be a non-negative integer")
    length = int(declared)
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


def hash_password(password: str, iterations: int) -> str:
    """Hash with PBKDF2-HMAC-SHA256 and a 16-byte salt, self-describing."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join((PASSWORD_SCHEME, str(iterations), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str) -> bool:
    """Check ``password`` against a stored hash in constant time."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    except (ValueError, binascii.Error):
        return False
    return scheme == PASSWORD_SCHEME and hmac.compare_digest(actual, expected)


def hash_iterations(stored: str) -> int:
    """The iteration count a stored hash was made with (0 if unreadable)."""
    parts = stored.split("$")
    return int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else 0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def issue_token(app: TodoApp, public_id: str, tokens_valid_after: float = 0.0) -> str:
    """Sign a token for the account: public_id, iat, exp and a unique jti.

    ``iat`` keeps microseconds (RFC 7519 allows a non-integer NumericDate) and
    is never before the account's cut-off, so a token issued just after a
    password change works even when the clock has not moved since.
    """
    now = app.clock()
    claims = {
        "public_id": public_id,
        "iat": max(round(now, 6), tokens_valid_after),
        "exp": int(now) + app.settings.token_ttl,
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, app.secret_key, algorithm="HS256")


def token_cutoff(now: float) -> float:
    """The cut-off a password change sets: one microsecond after ``now``.

    Every token issued until then has ``iat`` at most ``round(now, 6)``, below
    it; every token issued after starts at it (``issue_token``). Old and new
    tokens are told apart even when both are issued at the same clock reading.
    """
    return round(now, 6) + 1e-6


def read_token(environ: Environ) -> str | None:
    """The token from ``x-access-token`` or ``Authorization: Bearer``, if any."""
    # A header that is present but empty carries a bad token, not none (issue 3).
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
    that can end a token early (logout, password change, deletion) is in the
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


def decode_token(app: TodoApp, token: str) -> dict[str, Any]:
    """The token's claims if its signature and shape were ever verified, and it has not expired.

    Expiry is checked here, on every use, against the app's clock rather than
    by PyJWT's own, so the whole service shares one notion of "now".
    """
    claims = app.tokens.get(token)
    if claims is None:
        claims = verify_token(app, token)
        app.tokens.put(token, claims)
    if claims["exp"] <= app.clock():
        raise token_invalid()
    return claims


def verify_token(app: TodoApp, token: str) -> dict[str, Any]:
    """Verify the signature (HS256 only) and claims' shape; raise 401 if bad."""
    try:
        claims = jwt.decode(
            token,
            app.secret_key,
            algorithms=["HS256"],
            options={"require": ["exp", "iat", "public_id", "jti"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        raise token_invalid() from None
    exp, iat = claims["exp"], claims["iat"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (exp, iat)):
        raise token_invalid()
    if not isinstance(claims["public_id"], str) or not isinstance(claims["jti"], str):
        raise token_invalid()
    return claims


def token_claims(req: Request) -> dict[str, Any]:
    """The claims of the request's token if its signature and expiry hold; else 401.

    Only half the check: ``accept_account`` does the rest with what the
    database says of the account.
    """
    token = read_token(req.environ)
    if token is None:
        raise HTTPError(401, "Token is missing!", [("WWW-Authenticate", "Bearer")])
    return decode_token(req.app, token)


def accept_account(req: Request, claims: dict[str, Any], found: store.TokenAccount | None) -> dict[str, Any]:
    """The signed-in account, if the database (``found``, as get_token_account
    reads it) still accepts the token: the account exists, the token was not
    logged out, and it was issued after the password's last change. Else 401."""
    if found is None:
        raise token_invalid()
    account, tokens_valid_after, revoked = found
    if revoked or claims["iat"] < tokens_valid_after:
        raise token_invalid()
    req.account, req.claims = account, claims
    return account


def authenticate(req: Request) -> dict[str, Any]:
    """Return the signed-in account, read fresh from the database, or raise 401."""
    claims = token_claims(req)
    return accept_account(req, claims, req.store.get_token_account(req.conn, claims["public_id"], claims["jti"]))


def require_admin(req: Request) -> dict[str, Any]:
    """Return the signed-in account if it is an admin; else 401 or 403."""
    account = authenticate(req)
    if not account["admin"]:
        raise HTTPError(403, "Cannot perform that function!")
    return account


def token_invalid() -> HTTPError:
    """The one answer for every token that fails any check."""
    return HTTPError(401, "Token is invalid!", [("WWW-Authenticate", "Bearer")])


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
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, colon, password = decoded.partition(":")
    return (name, password) if colon and name else None


# -- validation of names, passwords and text ------------------------------------


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an account name, or None if it can."""
    if not 1 <= len(name) <= 50:
        return "Field 'name' must be 1 to 50 characters"
    if ":" in name:
        # RFC 7617 2: a Basic user-id cannot contain a colon, so such an account could never log in.
        return "Field 'name' must not contain ':'"
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        return "Field 'name' must not contain control characters"
    return None


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


# -- handlers and the route table -------------------------------------------------


def healthz(req: Request) -> Result:
    """200 when the database answers; a failing database is a 503 at the edge."""
    req.store.ping(req.conn)
    return 200, {"status": "ok"}


def openapi(req: Request) -> Result:
    """This API's OpenAPI 3.1 document, read and encoded once per app; no token."""
    return 200, req.app.openapi_document


def login(req: Request) -> Result:
    """Exchange HTTP Basic credentials for a token, throttled per name and address."""
    app, credentials = req.app, basic_credentials(req.environ)
    if credentials is None:
        raise could_not_verify()  # at once, without hashing
    name, password = credentials
    address = req.environ.get("REMOTE_ADDR", "")
    now, window = app.clock(), app.settings.login_window
    # Keyed on at most 100 characters: no real name is longer, and a client
    # must not be able to grow the table by sending huge names.
    failures, window_start = req.store.count_login_attempt(req.conn, name[:100], address, now, window)
    if failures > app.settings.login_max_failures:
        retry_after = max(1, math.ceil(window_start + window - now))
        raise HTTPError(429, "Too many failed logins; try again later", [("Retry-After", str(retry_after))])
    account = req.store.get_login(req.conn, name)
    # An unknown name costs one hash too, so timing does not tell names apart.
    stored = account["password_hash"] if account else app.dummy_hash()
    if not verify_password(password, stored) or account is None:
        raise could_not_verify()
    req.store.clear_login_failures(req.conn, name[:100], address)
    req.account = account  # for the access log
    if hash_iterations(stored) < app.settings.pbkdf2_iterations:
        new_hash = hash_password(password, app.settings.pbkdf2_iterations)
        req.store.rehash_password(req.conn, account["id"], stored, new_hash)
    token = issue_token(app, account["public_id"], account["tokens_valid_after"])
    return 200, {"token": token, "expires_in": app.settings.token_ttl}


def logout(req: Request) -> Result:
    """End this token: its jti joins the deny-list until it would expire."""
    authenticate(req)
    assert req.claims is not None
    req.store.revoke_token(req.conn, req.claims["jti"], float(req.claims["exp"]), req.app.clock())
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
    # Length first: int() of thousands of digits raises (and costs) before any range check.
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 19 or not low <= int(text) <= high:
        raise HTTPError(400, f"Query parameter '{name}' must be an integer from {low} to {high}")
    return int(text)


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
    return 200, {"users": [public(u) for u in users[:limit]]}, headers


def get_user(req: Request, public_id: str) -> Result:
    """One account by its public id."""
    require_admin(req)
    user = req.store.get_user(req.conn, public_id)
    if user is None:
        raise HTTPError(404, "No user found!")
    return 200, {"user": public(user)}


def create_user(req: Request) -> Result:
    """A new, non-admin account."""
    require_admin(req)
    data = req.json({"name": str, "password": str})
    _check(name_problem(data["name"]))
    _check(password_problem(data["password"]))
    password_hash = hash_password(data["password"], req.app.settings.pbkdf2_iterations)
    try:
        user = req.store.create_user(req.conn, str(uuid.uuid4()), data["name"], password_hash, False)
    except req.store.NameTaken:
        raise HTTPError(409, "Name already taken!") from None
    location = req.url(f"/user/{user['public_id']}")
    return 201, {"message": "New user created!", "user": public(user)}, [("Location", location)]


def promote_user(req: Request, public_id: str) -> Result:
    """Make an account an admin."""
    require_admin(req)
    if req.store.update_user(req.conn, public_id, admin=True) is None:
        raise HTTPError(404, "No user found!")
    return 200, {"message": "The user has been promoted!"}


def patch_user(req: Request, public_id: str) -> Result:
    """Rename, reset the password of (ending its tokens), or (de)promote an account."""
    require_admin(req)
    data = req.json({}, {"name": str, "password": str, "admin": bool})
    if "name" in data:
        _check(name_problem(data["name"]))
    password_hash = None
    if "password" in data:
        _check(password_problem(data["password"]))
        password_hash = hash_password(data["password"], req.app.settings.pbkdf2_iterations)
    try:
        user = req.store.update_user(
            req.conn,
            public_id,
            name=data.get("name"),
            password_hash=password_hash,
            admin=data.get("admin"),
            now=token_cutoff(req.app.clock()),
        )
    except req.store.NameTaken:
        raise HTTPError(409, "Name already taken!") from None
    except req.store.LastAdmin:
        raise HTTPError(409, "Cannot remove the last admin!") from None
    if user is None:
        raise HTTPError(404, "No user found!")
    return 200, {"user": public(user)}


def delete_user(req: Request, public_id: str) -> Result:
    """Delete an account, its to-dos and (so) its tokens; never the last admin."""
    require_admin(req)
    try:
        deleted = req.store.delete_user(req.conn, public_id)
    except req.store.LastAdmin:
        raise HTTPError(409, "Cannot remove the last admin!") from None
    if not deleted:
        raise HTTPError(404, "No user found!")
    return 200, {"message": "The user has been deleted!"}


def get_me(req: Request) -> Result:
    """The signed-in account."""
    return 200, {"user": public(authenticate(req))}


def change_my_password(req: Request) -> Result:
    """Change one's own password; every token issued before it stops working."""
    account = authenticate(req)
    data = req.json({"old_password": str, "new_password": str})
    _check(password_problem(data["new_password"], "new_password"))
    login_row = req.store.get_login(req.conn, account["name"])
    if login_row is None or not verify_password(data["old_password"], login_row["password_hash"]):
        raise HTTPError(403, "Wrong password!")
    new_hash = hash_password(data["new_password"], req.app.settings.pbkdf2_iterations)
    cutoff = token_cutoff(req.app.clock())
    req.store.update_user(req.conn, account["public_id"], password_hash=new_hash, now=cutoff)
    return 200, {"message": "Password changed!"}


def list_todos(req: Request) -> Result:
    """The account's own to-dos in id order, a page at a time."""
    # The account and the page come in one read (store.token_account_with_todos);
    # none of the page is shown unless accept_account passes the token. (So a
    # refused token's request reads a page before its 401, as a valid one does.)
    claims = token_claims(req)
    try:
        limit, offset, complete = page(req, with_complete=True)
    except HTTPError:
        authenticate(req)  # a token the database refuses is a 401 before a bad query's 400
        raise
    found, todos = req.store.token_account_with_todos(
        req.conn, claims["public_id"], claims["jti"], limit + 1, offset, complete
    )
    accept_account(req, claims, found)
    headers = []
    if len(todos) > limit:
        extra = {} if complete is None else {"complete": "true" if complete else "false"}
        headers = next_link(req, limit, offset, extra)
    return 200, {"todos": todos[:limit]}, headers


def get_todo(req: Request, todo_id: int) -> Result:
    """One of the account's to-dos; another's is answered as missing."""
    claims = token_claims(req)
    found, todo = req.store.token_account_with_todo(req.conn, claims["public_id"], claims["jti"], todo_id)
    accept_account(req, claims, found)
    if todo is None:
        raise HTTPError(404, "No todo found!")
    return 200, {"todo": todo}


def create_todo(req: Request) -> Result:
    """A new, incomplete to-do."""
    account = authenticate(req)
    data = req.json({"text": str})
    _check(text_problem(data["text"]))
    todo = req.store.create_todo(req.conn, account["id"], data["text"])
    if todo is None:  # the account was deleted after its token was checked
        raise token_invalid()
    return 201, {"message": "Todo created!", "todo": todo}, [("Location", req.url(f"/todo/{todo['id']}"))]


def complete_todo(req: Request, todo_id: int) -> Result:
    """Mark a to-do complete."""
    account = authenticate(req)
    if req.store.update_todo(req.conn, account["id"], todo_id, complete=True) is None:
        raise HTTPError(404, "No todo found!")
    return 200, {"message": "Todo item has been completed!"}


def patch_todo(req: Request, todo_id: int) -> Result:
    """Edit a to-do's text and/or completion; ``{}`` changes nothing."""
    account = authenticate(req)
    data = req.json({}, {"text": str, "complete": bool})
    if "text" in data:
        _check(text_problem(data["text"]))
    todo = req.store.update_todo(req.conn, account["id"], todo_id, text=data.get("text"), complete=data.get("complete"))
    if todo is None:
        raise HTTPError(404, "No todo found!")
    return 200, {"todo": todo}


def delete_todo(req: Request, todo_id: int) -> Result:
    """Delete a to-do."""
    account = authenticate(req)
    if not req.store.delete_todo(req.conn, account["id"], todo_id):
        raise HTTPError(404, "No todo found!")
    return 200, {"message": "Todo item deleted!"}


# -- the browser client's files (todo_wsgi_web; API.md, "Browser client") -----------

# Path -> file of the package todo_wsgi_web; relative URLs in the files, so any mount prefix works.
WEB_FILES = {"/": "index.html", "/client.js": "client.js", "/client.css": "client.css"}
WEB_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
}
WEB_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-cache"),  # RFC 9111 5.2.2.4: kept, but revalidated (ETag) before each use
]


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


ROUTES: list[tuple[str, str, Callable[..., Result]]] = [
    ("GET", "", web_redirect),  # only below a mount prefix: Request.path
    ("GET", "/", web_file),
    ("GET", "/client.js", web_file),
    ("GET", "/client.css", web_file),
    ("GET", "/healthz", healthz),
    ("GET", "/openapi.json", openapi),
    ("GET", "/login", login),
    ("POST", "/login", login),
    ("POST", "/logout", logout),
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
]


# -- the command line ----------------------------------------------------------------


def read_new_password(stdin: Any = None) -> str:
    """One line from standard input when it is not a terminal, else asked twice."""
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        return str(stdin.readline()).rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != first:
        raise SystemExit("error: the passwords do not match")
    return first


def cmd_create_user(app: TodoApp, args: argparse.Namespace) -> int:
    """Create an account from the command line."""
    password = read_new_password()
    problem = name_problem(args.name) or password_problem(password)
    if problem:
        print(f"error: {problem.replace('Field ', '')}", file=sys.stderr)
        return 1
    password_hash = hash_password(password, app.settings.pbkdf2_iterations)
    with app.db.connection() as conn:
        try:
            user = app.store.create_user(conn, str(uuid.uuid4()), args.name, password_hash, args.admin)
        except app.store.NameTaken:
            print(f"error: the name {args.name!r} is already taken", file=sys.stderr)
            return 1
    role = "admin" if args.admin else "user"
    print(f"created {role} {user['name']} ({user['public_id']})")
    return 0


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes its lines in batches rather than one write per line.

    A write and flush per access-log line is a system call per request, and
    each releases the GIL to the server's other threads. Here lines gather in
    memory and go out together: every ``interval`` seconds from a thread of
    the handler's own, at once when ``batch`` lines are waiting, and at once
    for anything above INFO. ``close()`` (also run by ``logging.shutdown`` at
    exit) writes what is left. (Under ``serve`` the access lines reach it from
    the app's ``AccessLog`` thread, not from the requests' threads.)
    """

    def __init__(self, stream: Any = None, interval: float = 0.2, batch: int = 512) -> None:
        super().__init__(stream)
        self.batch = batch
        self._pending: list[str] = []
        self._stop_flushing = threading.Event()  # not _closed: logging.Handler uses that name
        self._flusher = threading.Thread(target=self._flush_every, args=(interval,), name="log-flush", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the formatted line (``handle`` holds the lock); flush if due."""
        try:
            self._pending.append(self.format(record) + self.terminator)
            if record.levelno > logging.INFO or len(self._pending) >= self.batch:
                self.flush()
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Write the waiting lines in one call, then flush the stream."""
        with self.lock:  # type: ignore[union-attr]
            if self._pending:
                lines, self._pending = "".join(self._pending), []
                self.stream.write(lines)
            if self.stream and hasattr(self.stream, "flush"):
                self.stream.flush()

    def _flush_every(self, interval: float) -> None:
        while not self._stop_flushing.wait(interval):
            self.flush()

    def close(self) -> None:
        """Stop the flushing thread and write what is left."""
        self._stop_flushing.set()
        self.flush()
        super().close()


class LogFormatter(logging.Formatter):
    """``logging.Formatter`` with its default time text, made once per second rather than per line."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """As the base class without ``datefmt``: ``2026-11-25 12:00:00,123``, local time."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return self.default_msec_format % (self._text, record.msecs)  # type: ignore[operator]


def configure_logging(stream: Any = None) -> BatchedStreamHandler:
    """Log INFO and above to ``stream`` (standard error) in ``LOG_FORMAT``, batched.

    What ``python -m todo_wsgi serve`` (and the HTTP benchmark) runs with: the
    access log costs a log record in memory per request, formatted and
    written with the others of its batch within a fifth of a second. The caller closes the
    returned handler when done (or leaves it to ``logging.shutdown`` at exit).
    """
    handler = BatchedStreamHandler(stream)
    handler.setFormatter(LogFormatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def pin_process(cpu: int | None = None) -> int:
    """Keep every thread of this process on one CPU, ``cpu`` or else the last it may use; return it.

    Python code runs on one core at a time in a process (the GIL). Spread over
    several cores, each hand-over of the GIL between waitress's threads wakes
    another core, and on a small VM that costs more than the work: pinned,
    one server served about twice the requests (README, "Performance"). Every
    thread already started is moved too; those started later inherit it.
    Linux only (os.sched_setaffinity).
    """
    if cpu is None:
        cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})  # this thread first: what it starts from now on inherits it
    pinned: set[str] = set()
    while tasks := set(os.listdir("/proc/self/task")) - pinned:  # again, for threads started meanwhile
        for task in tasks:
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(task), {cpu})
        pinned |= tasks
    return cpu


def cmd_serve(app: TodoApp, args: argparse.Namespace) -> int:
    """Serve under waitress with limits that bound what one client can take."""
    import waitress

    if args.one_cpu and not hasattr(os, "sched_setaffinity"):
        print("error: --one-cpu needs Linux (os.sched_setaffinity)", file=sys.stderr)
        return 1
    pinned = pin_process() if args.one_cpu else None
    handler = configure_logging()
    app.access_log.defer()
    if pinned is not None:
        logging.getLogger("todo_wsgi").info("serving on CPU %d only (--one-cpu)", pinned)
    # SIGTERM stops waitress as Ctrl-C does (it catches SystemExit), so the
    # last access-log lines are written before the process ends.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # waitress refuses trusted_proxy_headers=None: name the proxy settings only when a proxy is set.
    proxy = os.environ.get("TODO_TRUSTED_PROXY")
    proxy_settings: dict[str, Any] = {}
    if proxy:
        headers = os.environ.get("TODO_TRUSTED_PROXY_HEADERS", "x-forwarded-for")
        proxy_settings = {"trusted_proxy": proxy, "trusted_proxy_headers": headers}
    waitress.serve(
        app,
        listen=args.listen,
        threads=args.threads,
        # Bounds on one client's reach (README, "Security").
        connection_limit=100,
        channel_timeout=30,
        max_request_header_size=16384,
        max_request_body_size=app.settings.max_body_bytes + 1024,
        **proxy_settings,
        clear_untrusted_proxy_headers=True,
        ident="todo-wsgi",
    )
    # The queued lines, before the handler that writes them closes; a second
    # SIGTERM meanwhile must not cut that short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        app.access_log.close()
    finally:
        handler.close()
    return 0


def cmd_list_users(app: TodoApp, args: argparse.Namespace) -> int:
    """Print every account, one tab-separated line each: public id, role, name."""
    with app.db.connection() as conn:
        users = app.store.list_users(conn)
    for user in users:
        # Names hold no control characters, so a tab or newline never comes from one.
        print(f"{user['public_id']}\t{'admin' if user['admin'] else 'user'}\t{user['name']}")
    return 0


def cmd_set_password(app: TodoApp, args: argparse.Namespace) -> int:
    """Set an account's password from the command line; its tokens stop working."""
    with app.db.connection() as conn:
        user = app.store.get_user_by_name(conn, args.name)
    if user is None:
        print(f"error: no account is named {args.name!r}", file=sys.stderr)
        return 1
    password = read_new_password()
    problem = password_problem(password)
    if problem:
        print(f"error: {problem.replace('Field ', '')}", file=sys.stderr)
        return 1
    password_hash = hash_password(password, app.settings.pbkdf2_iterations)
    with app.db.connection() as conn:
        if app.store.update_user(conn, user["public_id"], password_hash=password_hash, now=app.clock()) is None:
            print(f"error: the account {args.name!r} was deleted meanwhile", file=sys.stderr)
            return 1
    print(f"password set for {user['name']} ({user['public_id']}); its earlier tokens no longer work")
    return 0


def cmd_backup(app: TodoApp, args: argparse.Namespace) -> int:
    """Copy the database to a file, safely while it is being served."""
    target = Path(args.path)
    # Written beside the target and renamed into place: a failed backup
    # leaves the previous one whole, and nobody sees a half-written copy.
    partial = target.with_name(target.name + ".partial")
    try:
        partial.unlink(missing_ok=True)  # left by a backup that was killed
        with app.db.connection() as conn:
            app.store.backup(conn, str(partial))
        os.replace(partial, target)
    except RuntimeError as exc:  # PostgreSQL: the store says to use pg_dump
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, *app.store.UNAVAILABLE) as exc:
        partial.unlink(missing_ok=True)
        print(f"error: cannot write {target}: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {app.settings.database} to {target} ({target.stat().st_size} bytes)")
    return 0


def cmd_check(app: TodoApp, args: argparse.Namespace) -> int:
    """Report the schema version and the database's integrity; 1 if anything is wrong."""
    with app.db.connection() as conn:
        version = app.store.schema_version(conn)
        problems = app.store.integrity_errors(conn)
    expected = app.store.SCHEMA_VERSION
    if version != expected:
        problems.insert(0, f"schema version {version}, but this code expects {expected}")
    print(f"schema version: {version} (this code: {expected})")
    for problem in problems:
        print(f"problem: {problem}")
    print("integrity: ok" if not problems else f"integrity: {len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_copy_to(app: TodoApp, args: argparse.Namespace) -> int:
    """Copy this database into an empty one at URL: accounts, to-dos, signing key, deny-list."""
    try:
        target_store = backend_for(args.url)
        target = target_store.open_database(args.url, 1)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        with app.db.connection() as source, target.connection() as conn:
            counts = target_store.import_rows(conn, app.store.export_rows(source))
    except ValueError as exc:  # the target is not empty
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        target.close()
    print(
        f"copied {counts['users']} accounts, {counts['todos']} to-dos, the signing key and "
        f"{counts['revoked_tokens']} revoked tokens to {redact(args.url)}; "
        "point TODO_DATABASE there and start the servers"
    )
    return 0


def redact(url: str) -> str:
    """A database URL fit to print: any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


COMMANDS: dict[str, Callable[[TodoApp, argparse.Namespace], int]] = {
    "create-user": cmd_create_user,
    "list-users": cmd_list_users,
    "set-password": cmd_set_password,
    "backup": cmd_backup,
    "check": cmd_check,
    "copy-to": cmd_copy_to,
    "serve": cmd_serve,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m todo_wsgi`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m todo_wsgi", description="todo-wsgi operator commands")
    parser.add_argument("--database", help="SQLite file or postgresql:// URL (default: $TODO_DATABASE or todo.db)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser("create-user", help="create an account; password from stdin or prompted twice")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="make the account an admin")
    commands.add_parser(
        "list-users",
        help="list every account",
        description="Print one tab-separated line per account: public id, role (admin or user), name.",
    )
    set_password = commands.add_parser(
        "set-password",
        help="set an account's password; password from stdin or prompted twice",
        description="Set the password of the account NAME, read as one line from standard input when it is "
        "not a terminal, else prompted twice. Every token issued to the account before stops working.",
    )
    set_password.add_argument("name")
    backup = commands.add_parser(
        "backup",
        help="copy the SQLite database to PATH, safely while serving",
        description="Copy the SQLite database to PATH with SQLite's online backup API: a consistent "
        "snapshot, safe while the service is running. PATH is replaced only once the copy is whole. "
        "On PostgreSQL, use pg_dump instead.",
    )
    backup.add_argument("path", metavar="PATH")
    commands.add_parser(
        "check",
        help="check the database's integrity and schema version",
        description="Run the database's integrity check and compare its schema version with this code's; "
        "exit 1 if anything is wrong.",
    )
    copy_to = commands.add_parser(
        "copy-to",
        help="copy this database into an empty one at URL (the move to PostgreSQL)",
        description="Copy every account (with its password hash, public id and token cut-off), every to-do "
        "(with its id), the signing key and the logout deny-list into the empty database at URL, in one "
        "transaction; refuse one that already holds accounts or to-dos. Tokens issued before the copy "
        "work against it. Stop the servers first: writes made during the copy are not carried.",
    )
    copy_to.add_argument("url", metavar="URL", help="postgresql://USER:PASSWORD@HOST/DB (or a SQLite file)")
    serve = commands.add_parser("serve", help="serve the API under waitress")
    serve.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    # 4, from bench/threads.py (README, "Performance"): as many requests/s as 2 or 8
    # on 2 cores, and two logins hashing at once still leave two threads serving.
    serve.add_argument("--threads", type=int, default=4, help="waitress worker threads (default 4)")
    serve.add_argument(
        "--one-cpu",
        action="store_true",
        help="keep the server on one CPU, the last it may use (Linux; about twice the requests/s on a small VM)",
    )
    return parser


# Commands for a database that exists: a mistyped path must not create an
# empty one, and then back it up or call it healthy.
EXISTING_DATABASE_COMMANDS = frozenset({"list-users", "set-password", "backup", "check", "copy-to"})


def require_existing(database: str) -> None:
    """Raise if ``database`` names a SQLite file that is not there."""
    path = database.removeprefix("sqlite:///")
    if not database.startswith(("postgresql://", "postgres://")) and not Path(path).is_file():
        raise RuntimeError(f"no database at {path} (give --database or TODO_DATABASE)")


def main(argv: list[str] | None = None) -> int:
    """Run one operator command; return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in EXISTING_DATABASE_COMMANDS:
            require_existing(Settings.resolve(database=args.database).database)
        app = create_app(database=args.database)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        return COMMANDS[args.command](app, args)
    finally:
        app.close()


if __name__ == "__main__":
    sys.exit(main())
