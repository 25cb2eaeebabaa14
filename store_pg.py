"""The PostgreSQL repository: schema, connections, transactions and every query.

The same functions as ``store.py``, in the same order, with the same arguments
and return shapes, so ``diff store.py store_pg.py`` reads as the specification
of the dialect and handlers never ask which backend they have. Everything that
is the same for both (error types, the Caller, row shapes, name keys) is
imported from ``store``; a docstring here says only where this one differs.

Concurrency: READ COMMITTED with row locks, not SERIALIZABLE. Where SQLite's
BEGIN IMMEDIATE serialises every write, a decision here locks the rows it
depends on: the caller's session and account (``FOR SHARE``, so logging out,
deleting or demoting the caller waits for this write, or this write sees it
done), and for "is this the last admin?" every admin row (``FOR UPDATE``, in
id order, so two servers demoting each other queue instead of both seeing two
admins). A deadlock or serialization failure is retried a few times by
``_retried``; past that it is a 503. ``lock_timeout`` and ``statement_timeout``
bound how long any statement waits (503 past them).

Needs the ``postgres`` extra (psycopg 3 and psycopg_pool). Must not import
todo_wsgi, router, or anything web-related.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from store import (
    ACCOUNT_COLUMNS,
    COPIED,
    KEYS_PER_OWNER,
    MAX_ID,
    NUMBERED,
    PRUNE_BATCH,
    SELECT_ACCOUNT,
    SESSIONS_PER_ACCOUNT,
    Caller,
    KeyReused,
    LastAdmin,
    NameTaken,
    NotAdmin,
    Once,
    PasswordChanged,
    Refused,
    SessionEnded,
    SessionEnding,
    TooManyKeys,
    TooManyTodos,
    account_from_row,
    event_filters,
    event_from_row,
    name_key,
    name_keys,
    ping,
    present_account,
    todo_from_row,
)

__all__ = [
    "MAX_ID",
    "Caller",
    "KeyReused",
    "LastAdmin",
    "NameTaken",
    "NotAdmin",
    "Once",
    "PasswordChanged",
    "Refused",
    "SessionEnded",
    "SessionEnding",
    "TooManyKeys",
    "TooManyTodos",
    "ping",
]

BACKEND = "postgresql"

# Milliseconds a statement waits for a lock, and runs at most, before it fails (503).
LOCK_TIMEOUT_MS = 5000
STATEMENT_TIMEOUT_MS = 15000


def unavailable(error: BaseException) -> bool:
    """Whether ``error`` means "the database cannot answer now" (503), not a bug (500).

    OperationalError covers a refused or dropped connection, a server shutting
    down, a lock or statement timeout, and a retry ``_retried`` gave up on;
    PoolTimeout is no free connection within POOL_TIMEOUT.
    """
    return isinstance(error, (psycopg.OperationalError, psycopg_pool.PoolTimeout))


# -- schema --------------------------------------------------------------------


def _fill_name_keys(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute("SELECT id, name FROM users ORDER BY id").fetchall()
    with conn.cursor() as cursor:
        cursor.executemany("UPDATE users SET name_key = %s WHERE id = %s", list(name_keys(rows)))


# As store.MIGRATIONS, step for step: BIGSERIAL ids, real booleans, DOUBLE
# PRECISION for SQLite's REAL Unix times. Each step runs in one transaction
# with its schema_version bump, under an advisory lock, so two servers
# starting at once on a new database apply each step exactly once.
MIGRATIONS: tuple[str | Callable[[psycopg.Connection[Any]], None], ...] = (
    """
    CREATE TABLE users (
        id BIGSERIAL PRIMARY KEY,
        public_id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        admin BOOLEAN NOT NULL DEFAULT false,
        tokens_valid_after DOUBLE PRECISION NOT NULL DEFAULT 0
    );
    CREATE TABLE todos (
        id BIGSERIAL PRIMARY KEY,
        owner_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        complete BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX todos_owner ON todos (owner_id, complete, id);
    CREATE TABLE app_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE revoked_tokens (
        jti TEXT PRIMARY KEY,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
    CREATE TABLE login_failures (
        name TEXT NOT NULL,
        address TEXT NOT NULL,
        failures INTEGER NOT NULL,
        window_start DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (name, address)
    );
    """,
    "CREATE INDEX todos_owner_id ON todos (owner_id, id)",
    "CREATE INDEX login_failures_window ON login_failures (window_start)",
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        expires_at DOUBLE PRECISION NOT NULL,
        refresh_hash TEXT NOT NULL
    );
    CREATE INDEX sessions_user ON sessions (user_id);
    CREATE INDEX sessions_expiry ON sessions (expires_at);
    DROP TABLE revoked_tokens;
    ALTER TABLE users DROP COLUMN tokens_valid_after;
    ALTER TABLE users ADD COLUMN name_key TEXT;
    CREATE TABLE address_failures (
        address TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        window_start DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX address_failures_window ON address_failures (window_start)
    """,
    _fill_name_keys,
    "CREATE UNIQUE INDEX users_name_fold ON users (name_key)",
    """
    CREATE TABLE audit_events (
        id BIGSERIAL PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL,
        actor TEXT,
        action TEXT NOT NULL,
        target TEXT,
        address TEXT
    );
    CREATE INDEX audit_events_time ON audit_events (time);
    CREATE INDEX audit_events_action ON audit_events (action, id);
    CREATE INDEX audit_events_actor ON audit_events (actor, id);
    CREATE INDEX audit_events_target ON audit_events (target, id)
    """,
    """
    ALTER TABLE users ADD COLUMN password_changes INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE idempotency_keys (
        owner TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        answer TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (owner, key)
    );
    CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at)
    """,
    """
    CREATE TABLE spent_refresh_tokens (
        hash TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE
    );
    CREATE INDEX spent_refresh_tokens_session ON spent_refresh_tokens (session_id)
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

# pg_advisory_xact_lock key serialising migrations: "todo" in ASCII.
MIGRATION_LOCK = 0x746F646F

# Seconds a request waits for a pooled connection before answering 503: the
# same patience as SQLite's busy_timeout. With as many connections as waitress
# threads a request waits only while the pool reconnects after an outage.
POOL_TIMEOUT = 5.0

# Seconds to wait for a new connection (libpq's connect_timeout), unless the URL sets one.
CONNECT_TIMEOUT = 5

_T = TypeVar("_T")


# -- connections and transactions -------------------------------------------


class Database:
    """A pool of up to ``pool_size`` connections to one PostgreSQL database.

    waitress runs each request on one of a fixed number of threads, and each
    thread uses at most one connection at a time, so a pool as large as the
    thread count never makes a request wait for another's connection. It
    opens one at start and grows on demand (shrinking back after ten idle
    minutes). Connections are in autocommit mode: a write of several
    statements runs inside transaction(), one of a single statement is a
    transaction of its own.
    """

    def __init__(self, url: str, pool_size: int = 4) -> None:
        self.url = url
        params = conninfo_to_dict(url)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT)
        params.setdefault("application_name", "todo-wsgi")
        # No statement waits on another session's lock, or runs, without bound.
        timeouts = f"-c lock_timeout={LOCK_TIMEOUT_MS} -c statement_timeout={STATEMENT_TIMEOUT_MS}"
        params["options"] = f"{params.get('options', '')} {timeouts}".strip()
        conninfo = make_conninfo("", **params)
        # Opened only once the database has been checked: a pool opened before
        # would try the same unreachable server in the background and log its
        # own warning beside the one error line.
        self.pool = psycopg_pool.ConnectionPool(
            conninfo,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=pool_size,
            timeout=POOL_TIMEOUT,
            name="todo-wsgi",
            open=False,
        )
        # One direct connection to check and migrate: an unreachable server, a
        # wrong password or a wrong encoding stops the start at once, in
        # libpq's own words, where the pool would retry until its timeout.
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                check_encoding(conn)
                migrate(conn)
        except psycopg.OperationalError as exc:
            raise RuntimeError(f"cannot use the PostgreSQL database: {exc}".strip()) from exc
        # Its first connection opens in the background.
        self.pool.open()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Yield a pooled connection for the length of one request."""
        with self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        """Close every connection of the pool."""
        self.pool.close()


def open_database(url: str, pool_size: int = 4) -> Database:
    """Open (migrating if needed) the PostgreSQL database at ``url``.

    ``pool_size`` connections per process: match waitress's threads, and keep
    pool_size x servers under the server's max_connections.
    """
    return Database(url, pool_size)


def check_encoding(conn: psycopg.Connection[Any]) -> None:
    """Refuse a database that cannot hold any Unicode text."""
    (encoding,) = _one(conn.execute("SHOW server_encoding"))
    if encoding != "UTF8":
        raise RuntimeError(
            f"the PostgreSQL database has encoding {encoding}; to-do text needs UTF8: "
            "CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0"
        )


@contextlib.contextmanager
def transaction(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """Run the block as one transaction; roll back on any exception.

    READ COMMITTED: a decision that depends on other rows locks them first.
    A COMMIT that fails ends the transaction on the server, and psycopg
    leaves the connection out of it.
    """
    with conn.transaction():
        yield conn


def _retried(function: Callable[..., _T]) -> Callable[..., _T]:
    """Run a write again when the server aborted it as a deadlock or serialization failure.

    Only for functions that own their whole transaction: the aborted attempt
    left nothing behind, so running it again is safe.
    """

    @functools.wraps(function)
    def retrying(*args: Any, **kwargs: Any) -> _T:
        for attempt in range(4):
            try:
                return function(*args, **kwargs)
            except (errors.SerializationFailure, errors.DeadlockDetected):
                if attempt == 3:
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    return retrying


def migrate(conn: psycopg.Connection[Any]) -> int:
    found: int | None = None
    while True:
        with transaction(conn):
            # Held to the end of this transaction: a second server starting at
            # the same moment waits here, then finds the step already applied.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            if _one(conn.execute("SELECT to_regclass('schema_version')"))[0] is None:
                conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            current = schema_version(conn)
            found = current if found is None else found
            if current >= SCHEMA_VERSION:
                break
            step = MIGRATIONS[current]
            if callable(step):
                step(conn)
            else:
                conn.execute(step)
            conn.execute("UPDATE schema_version SET version = %s", (current + 1,))
    if found > SCHEMA_VERSION:
        raise RuntimeError(f"database schema version {found} is newer than this code ({SCHEMA_VERSION})")
    return found


def schema_version(conn: psycopg.Connection[Any]) -> int:
    return int(_one(conn.execute("SELECT version FROM schema_version"))[0])


def integrity_errors(conn: psycopg.Connection[Any]) -> list[str]:
    """Return what is wrong with the database as this service needs it; empty when all is well.

    PostgreSQL checks its own pages (data checksums, the amcheck extension)
    and enforces the foreign keys; this is a sanity check of what the service
    relies on besides: a UTF8 database, and no to-do whose owner is gone (as
    store.integrity_errors reports SQLite's foreign_key_check). The schema
    version is the caller's to compare.
    """
    problems = []
    (encoding,) = _one(conn.execute("SHOW server_encoding"))
    if encoding != "UTF8":
        problems.append(f"server_encoding is {encoding}, not UTF8")
    orphans = conn.execute(
        "SELECT id FROM todos WHERE NOT EXISTS (SELECT 1 FROM users WHERE users.id = todos.owner_id) ORDER BY id"
    )
    problems += [f"todos row {todo_id} refers to a missing users row" for (todo_id,) in orphans]
    return problems


def backup(conn: psycopg.Connection[Any], target: str) -> None:
    """Refuse: a PostgreSQL database is backed up with its own tools."""
    raise RuntimeError(
        "backup copies a SQLite file; for PostgreSQL use pg_dump, e.g. "
        f'pg_dump --format=custom --file={target} "$TODO_DATABASE" (restore with pg_restore), '
        "or your provider's snapshots"
    )


# -- the signing key ----------------------------------------------------------


@_retried
def get_or_create_secret(conn: psycopg.Connection[Any], name: str, candidate: str) -> str:
    """Return the stored secret ``name``, storing ``candidate`` if there is none.

    A concurrent insert of the same name makes ours wait for it and then do
    nothing, and the SELECT (a new snapshot under READ COMMITTED) reads the
    key that won.
    """
    with transaction(conn):
        conn.execute(
            "INSERT INTO app_secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (name, candidate)
        )
        row = _one(conn.execute("SELECT value FROM app_secrets WHERE name = %s", (name,)))
    return str(row[0])


def get_secret(conn: psycopg.Connection[Any], name: str) -> str | None:

    row = conn.execute("SELECT value FROM app_secrets WHERE name = %s", (name,)).fetchone()
    return None if row is None else str(row[0])


@_retried
def replace_secret(conn: psycopg.Connection[Any], name: str, value: str) -> None:
    with transaction(conn):
        # The value it replaces is kept as NAME.previous, so a token signed with it can be
        # told apart from a forged one (and answered "revoked").
        conn.execute(
            "INSERT INTO app_secrets (name, value) SELECT %s, value FROM app_secrets WHERE name = %s"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name + ".previous", name),
        )
        conn.execute(
            "INSERT INTO app_secrets (name, value) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        _record(conn, None, "key.rotated", None)


# -- accounts -------------------------------------------------------------------


def _has_nul(*values: str) -> bool:
    # PostgreSQL text cannot hold NUL, so no stored value contains one; psycopg
    # refuses to send it at all, so such a lookup is answered here, not raised.
    return any("\x00" in value for value in values)


def session_account(
    conn: psycopg.Connection[Any], session_id: str, public_id: str, now: float
) -> dict[str, Any] | None:
    if _has_nul(session_id, public_id):
        return None
    row = conn.execute(
        "SELECT " + ACCOUNT_COLUMNS + " FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id = %s AND u.public_id = %s AND s.expires_at > %s",
        (session_id, public_id, now),
    ).fetchone()
    return account_from_row(row)


def get_login(conn: psycopg.Connection[Any], name: str) -> dict[str, Any] | None:
    if _has_nul(name):
        return None
    row = conn.execute(
        "SELECT " + ACCOUNT_COLUMNS + ", u.password_hash FROM users u"
        " WHERE u.name IN (%s, %s) ORDER BY u.name = %s DESC LIMIT 1",
        (name, unicodedata.normalize("NFC", name), name),
    ).fetchone()
    return None if row is None else {**account_from_row(row), "password_hash": row[5]}  # type: ignore[dict-item]


def list_users(conn: psycopg.Connection[Any], limit: int = -1, offset: int = 0) -> list[dict[str, Any]]:
    # LIMIT NULL is LIMIT ALL; PostgreSQL refuses SQLite's -1.
    rows = conn.execute(SELECT_ACCOUNT + " ORDER BY u.id LIMIT %s OFFSET %s", (_limit(limit), offset))
    return [a for a in map(account_from_row, rows) if a is not None]


def get_user(conn: psycopg.Connection[Any], public_id: str) -> dict[str, Any] | None:
    if _has_nul(public_id):
        return None
    return account_from_row(conn.execute(SELECT_ACCOUNT + " WHERE u.public_id = %s", (public_id,)).fetchone())


def get_user_by_name(conn: psycopg.Connection[Any], name: str) -> dict[str, Any] | None:
    if _has_nul(name):
        return None
    return account_from_row(conn.execute(SELECT_ACCOUNT + " WHERE u.name = %s", (name,)).fetchone())


@_retried
def create_user(
    conn: psycopg.Connection[Any],
    caller: Caller | None,
    public_id: str,
    name: str,
    password_hash: str,
    admin: bool,
    once: Once | None = None,
) -> dict[str, Any] | str:
    """As store.create_user; two creations of one name key at once: the unique index refuses the second."""
    try:
        with transaction(conn):
            _check_caller(conn, caller, admin=True)
            kept = _claim(conn, caller.public_id, once) if caller is not None and once is not None else None
            if kept is not None:
                return kept
            _check_name_free(conn, name)
            conn.execute(
                "INSERT INTO users (public_id, name, name_key, password_hash, admin) VALUES (%s, %s, %s, %s, %s)",
                (public_id, name, name_key(name), password_hash, admin),
            )
            _record(conn, caller, "account.created", public_id)
            account = {"public_id": public_id, "name": name, "admin": admin, "password_changes": 0}
            if caller is not None and once is not None:
                _keep(conn, caller.public_id, once, account)
    except errors.UniqueViolation as exc:
        raise NameTaken(name) from exc
    return account


@_retried
def update_user(
    conn: psycopg.Connection[Any],
    caller: Caller | None,
    public_id: str,
    *,
    name: str | None = None,
    password_hash: str | None = None,
    admin: bool | None = None,
    verified_hash: str | None = None,
    forgive: tuple[str, str] | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any] | None:
    """As store.update_user; the admins are locked first, then the caller, then the account."""
    if _has_nul(public_id):
        return None
    own = caller is not None and caller.public_id == public_id
    # An owner may change only its password, and only against the hash it proved
    # it knows; every other change, to its own account too, needs an admin now.
    own_password_only = own and verified_hash is not None and name is None and admin is None
    try:
        with transaction(conn):
            admins = _lock_admins(conn) if admin is False else []
            _check_caller(conn, caller, admin=not own_password_only)
            row = conn.execute(
                "SELECT id, admin, password_hash, name FROM users WHERE public_id = %s FOR UPDATE", (public_id,)
            ).fetchone()
            if row is None:
                return None
            if check is not None:
                check(present_account(conn.execute(SELECT_ACCOUNT + " WHERE u.id = %s", (row[0],)).fetchone()))
            if verified_hash is not None and row[2] != verified_hash:
                raise PasswordChanged(public_id)
            if forgive is not None:  # the password was right: its attempt is forgiven, as a login's
                _forgive_attempt(conn, *forgive)
            if admin is False and row[1] and not [a for a in admins if a != row[0]]:
                raise LastAdmin(public_id)
            if name is not None and name != row[3]:
                _check_name_free(conn, name, row[0])
                conn.execute("UPDATE users SET name = %s, name_key = %s WHERE id = %s", (name, name_key(name), row[0]))
                _record(conn, caller, "account.renamed", public_id)
            if password_hash is not None:
                conn.execute(
                    "UPDATE users SET password_hash = %s, password_changes = password_changes + 1 WHERE id = %s",
                    (password_hash, row[0]),
                )
                conn.execute("DELETE FROM sessions WHERE user_id = %s", (row[0],))
                _record(conn, caller, "account.password_changed" if own else "account.password_reset", public_id)
            if admin is not None and admin != row[1]:
                conn.execute("UPDATE users SET admin = %s WHERE id = %s", (admin, row[0]))
                _record(conn, caller, "account.promoted" if admin else "account.demoted", public_id)
            return account_from_row(conn.execute(SELECT_ACCOUNT + " WHERE u.id = %s", (row[0],)).fetchone())
    except errors.UniqueViolation as exc:
        raise NameTaken(name) from exc


@_retried
def delete_user(
    conn: psycopg.Connection[Any],
    caller: Caller | None,
    public_id: str,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> bool:
    """As store.delete_user; the admins are locked first."""
    if _has_nul(public_id):
        return False
    with transaction(conn):
        admins = _lock_admins(conn)
        _check_caller(conn, caller, admin=True)
        row = conn.execute("SELECT id, admin FROM users WHERE public_id = %s FOR UPDATE", (public_id,)).fetchone()
        if row is None:
            return False
        if check is not None:
            check(present_account(conn.execute(SELECT_ACCOUNT + " WHERE u.id = %s", (row[0],)).fetchone()))
        if row[1] and not [a for a in admins if a != row[0]]:
            raise LastAdmin(public_id)
        # The to-dos and sessions go by cascade, inside this transaction; its events stay.
        conn.execute("DELETE FROM users WHERE id = %s", (row[0],))
        _record(conn, caller, "account.deleted", public_id)
    return True


def _check_caller(
    conn: psycopg.Connection[Any], caller: Caller | None, admin: bool, exclusive: bool = False
) -> int | None:
    """As store._check_caller, locking the session and account rows until the write
    commits (``exclusive``: FOR UPDATE, where the write then counts the account's rows)."""
    if caller is None:
        return None
    if _has_nul(caller.session_id, caller.public_id):
        raise SessionEnded(caller.public_id)
    row = conn.execute(
        "SELECT u.id, u.admin FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id = %s AND u.public_id = %s AND s.expires_at > %s" + (" FOR UPDATE" if exclusive else " FOR SHARE"),
        (caller.session_id, caller.public_id, caller.time),
    ).fetchone()
    if row is None:
        raise SessionEnded(caller.public_id)
    if admin and not row[1]:
        raise NotAdmin(caller.public_id)
    return int(row[0])


def _check_name_free(conn: psycopg.Connection[Any], name: str, user_id: int = 0) -> None:
    if conn.execute("SELECT 1 FROM users WHERE name_key = %s AND id != %s", (name_key(name), user_id)).fetchone():
        raise NameTaken(name)


def _lock_admins(conn: psycopg.Connection[Any]) -> list[int]:
    """Lock every admin row until the transaction ends; return their ids.

    The last-admin check. Each row returned is an admin now and stays one
    until we commit (FOR UPDATE re-reads a row changed while we waited for it),
    so the admins other than the target are admins after the change too.
    Taken in id order, two servers demoting each other wait on the first
    row instead of each locking one and deadlocking.
    """
    return [r[0] for r in conn.execute("SELECT id FROM users WHERE admin ORDER BY id FOR UPDATE")]


# -- sessions -------------------------------------------------------------------------


@_retried
def start_session(
    conn: psycopg.Connection[Any],
    verified: dict[str, Any],
    caller: Caller,
    refresh_hash: str,
    expires_at: float,
    *,
    stronger_hash: str | None = None,
    name: str = "",
    address: str = "",
    events_before: float | None = None,
) -> bool:
    """As store.start_session; the account's row is read FOR NO KEY UPDATE: a password
    change in flight either commits first (the read waits, then sees its new count, and no
    session starts) or waits for this one (and its DELETE ends the new session too). A
    plain read would decide on the snapshot taken before a change about to commit."""
    with transaction(conn):
        row = conn.execute(
            "SELECT password_hash, password_changes FROM users WHERE id = %s AND public_id = %s FOR NO KEY UPDATE",
            (verified["id"], verified["public_id"]),
        ).fetchone()
        if row is None or row[1] != verified["password_changes"]:
            return False
        conn.execute(
            "INSERT INTO sessions (id, user_id, expires_at, refresh_hash) VALUES (%s, %s, %s, %s)",
            (caller.session_id, verified["id"], expires_at, refresh_hash),
        )
        conn.execute(
            "DELETE FROM sessions WHERE user_id = %s AND id <> %s AND id NOT IN"
            " (SELECT id FROM sessions WHERE user_id = %s AND id <> %s ORDER BY expires_at DESC LIMIT %s)",
            (verified["id"], caller.session_id, verified["id"], caller.session_id, SESSIONS_PER_ACCOUNT - 1),
        )
        if stronger_hash is not None and row[0] == verified["password_hash"]:
            conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (stronger_hash, verified["id"]))
        _forgive_attempt(conn, name, address)
        _record(conn, caller, "login.succeeded", caller.public_id)
        if events_before is not None:
            _prune(conn, caller.time, events_before)
    return True


@_retried
def refresh_session(
    conn: psycopg.Connection[Any],
    session_id: str,
    spent_hash: str,
    new_hash: str,
    now: float,
    address: str | None,
    lasting_until: float = 0.0,
    *,
    max_rotations: int,
) -> tuple[dict[str, Any], float] | None:
    """As store.refresh_session; the session's row is read FOR UPDATE, so a logout or a
    password change deleting it either commits first (no session: None) or waits for
    this refresh: a token that then fails to rotate was spent, not lost to that race."""
    with transaction(conn):
        row = conn.execute(
            "SELECT s.expires_at, " + ACCOUNT_COLUMNS + " FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.id = %s FOR UPDATE OF s",
            (session_id,),
        ).fetchone()
        if row is None or row[0] <= now:
            return None
        account = present_account(row[1:])
        rotated = conn.execute(
            "UPDATE sessions SET refresh_hash = %s WHERE id = %s AND refresh_hash = %s"
            " AND (SELECT count(*) FROM spent_refresh_tokens WHERE session_id = %s) < %s",
            (new_hash, session_id, spent_hash, session_id, max_rotations),
        ).rowcount
        if not rotated:
            spent = conn.execute(
                "SELECT 1 FROM spent_refresh_tokens WHERE hash = %s AND session_id = %s", (spent_hash, session_id)
            ).fetchone()
            if spent:  # presented again: end the session
                conn.execute("DELETE FROM sessions WHERE id = %s", (session_id,))
                revoker = Caller(session_id, account["public_id"], address, now)
                _record(conn, revoker, "session.revoked", account["public_id"])
            return None  # a token never issued in this session changes nothing
        if row[0] < lasting_until:  # refused: the rotation is rolled back, the token stays unspent
            raise SessionEnding(account["public_id"])
        conn.execute("INSERT INTO spent_refresh_tokens (hash, session_id) VALUES (%s, %s)", (spent_hash, session_id))
    return account, float(row[0])


@_retried
def end_session(conn: psycopg.Connection[Any], caller: Caller) -> bool:
    with transaction(conn):
        ended = conn.execute("DELETE FROM sessions WHERE id = %s", (caller.session_id,)).rowcount > 0
        if ended:
            _record(conn, caller, "logout", caller.public_id)
    return ended


def _prune(conn: psycopg.Connection[Any], now: float, events_before: float) -> None:
    conn.execute(
        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at <= %s LIMIT %s)",
        (now, PRUNE_BATCH),
    )
    conn.execute(
        "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE time < %s ORDER BY time LIMIT %s)",
        (events_before, PRUNE_BATCH),
    )


# -- the audit trail --------------------------------------------------------------


def _record(conn: psycopg.Connection[Any], caller: Caller | None, action: str, target: str | None) -> None:
    actor: str | None
    if caller is None:
        actor, address, when = "cli", None, time.time()
    else:
        actor, address, when = caller.public_id or None, caller.address, caller.time
    conn.execute(
        "INSERT INTO audit_events (time, actor, action, target, address) VALUES (%s, %s, %s, %s, %s)",
        (when, actor, action, target, address),
    )


@_retried
def record_event(conn: psycopg.Connection[Any], caller: Caller | None, action: str, target: str | None) -> None:
    with transaction(conn):
        _record(conn, caller, action, target)


def list_events(
    conn: psycopg.Connection[Any],
    limit: int = -1,
    offset: int = 0,
    *,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    since: float | None = None,
) -> list[dict[str, Any]]:
    if _has_nul(*(value for value in (action, actor, target) if value is not None)):
        return []
    where, values = event_filters(action, actor, target, since, "%s")
    rows = conn.execute(
        "SELECT id, time, actor, action, target, address FROM audit_events"
        + where
        + " ORDER BY id DESC LIMIT %s OFFSET %s",
        (*values, _limit(limit), offset),
    )
    return [event_from_row(row) for row in rows]


# -- idempotency keys ---------------------------------------------------------------


def _claim(conn: psycopg.Connection[Any], owner: str, once: Once) -> str | None:
    """As store._claim; the owner's claims queue on a lock of the transaction's (SQLite's
    BEGIN IMMEDIATE queues every write): under READ COMMITTED, two claims of other keys at
    once would each count only the committed keys and their own, and both pass the limit."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("idempotency_keys:" + owner,))
    conn.execute("DELETE FROM idempotency_keys WHERE created_at < %s", (once.expired_before,))
    claimed = conn.execute(
        "INSERT INTO idempotency_keys (owner, key, fingerprint, created_at) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (owner, key) DO NOTHING",
        (owner, once.key, once.fingerprint, once.now),
    ).rowcount
    if claimed:
        kept, oldest = _one(
            conn.execute("SELECT count(*), min(created_at) FROM idempotency_keys WHERE owner = %s", (owner,))
        )
        if kept > KEYS_PER_OWNER:  # the whole create is rolled back, this claim with it
            raise TooManyKeys(int(oldest - once.expired_before) + 1)  # then the oldest is past its day
        return None
    fingerprint, answer = _one(
        conn.execute(
            "SELECT fingerprint, answer FROM idempotency_keys WHERE owner = %s AND key = %s", (owner, once.key)
        )
    )
    if fingerprint != once.fingerprint:
        raise KeyReused(once.key)
    # The first use's answer is written in the transaction that claimed the key, and a
    # claim waits for that transaction: a committed key always has its answer.
    assert answer is not None
    return str(answer)


def _keep(conn: psycopg.Connection[Any], owner: str, once: Once, created: dict[str, Any]) -> None:
    answer = once.answer(created)
    conn.execute("UPDATE idempotency_keys SET answer = %s WHERE owner = %s AND key = %s", (answer, owner, once.key))


# -- login throttling ------------------------------------------------------------


def login_failures(
    conn: psycopg.Connection[Any], name: str, address: str, since: float
) -> tuple[int, float, int, float]:
    by_name = conn.execute(
        "SELECT failures, window_start FROM login_failures WHERE name = %s AND address = %s AND window_start > %s",
        (_key(name), _key(address), since),
    ).fetchone()
    by_address = conn.execute(
        "SELECT failures, window_start FROM address_failures WHERE address = %s AND window_start > %s",
        (_key(address), since),
    ).fetchone()
    name_count, name_start = (int(by_name[0]), float(by_name[1])) if by_name else (0, 0.0)
    address_count, address_start = (int(by_address[0]), float(by_address[1])) if by_address else (0, 0.0)
    return name_count, name_start, address_count, address_start


@_retried
def count_login_attempt(
    conn: psycopg.Connection[Any], name: str, address: str, now: float, window: float
) -> tuple[int, float, int, float]:
    """As store.count_login_attempt (ON CONFLICT DO UPDATE locks each row it counts)."""
    with transaction(conn):
        by_name = _one(
            conn.execute(
                "INSERT INTO login_failures AS f (name, address, failures, window_start) VALUES (%s, %s, 1, %s)"
                " ON CONFLICT (name, address) DO UPDATE SET"
                "  failures = CASE WHEN f.window_start <= %s THEN 1 ELSE f.failures + 1 END,"
                "  window_start = CASE WHEN f.window_start <= %s THEN excluded.window_start ELSE f.window_start END"
                " RETURNING failures, window_start",
                (_key(name), _key(address), now, now - window, now - window),
            )
        )
        by_address = _one(
            conn.execute(
                "INSERT INTO address_failures AS f (address, failures, window_start) VALUES (%s, 1, %s)"
                " ON CONFLICT (address) DO UPDATE SET"
                "  failures = CASE WHEN f.window_start <= %s THEN 1 ELSE f.failures + 1 END,"
                "  window_start = CASE WHEN f.window_start <= %s THEN excluded.window_start ELSE f.window_start END"
                " RETURNING failures, window_start",
                (_key(address), now, now - window, now - window),
            )
        )
        conn.execute("DELETE FROM login_failures WHERE window_start <= %s", (now - window,))
        conn.execute("DELETE FROM address_failures WHERE window_start <= %s", (now - window,))
    return int(by_name[0]), float(by_name[1]), int(by_address[0]), float(by_address[1])


def _forgive_attempt(conn: psycopg.Connection[Any], name: str, address: str) -> None:
    conn.execute("DELETE FROM login_failures WHERE name = %s AND address = %s", (_key(name), _key(address)))
    conn.execute(
        "UPDATE address_failures SET failures = failures - 1 WHERE address = %s AND failures > 0", (_key(address),)
    )


@_retried
def forget_login_failures(
    conn: psycopg.Connection[Any], name: str | None = None, address: str | None = None, target: str | None = None
) -> int:
    if name is None and address is None:
        raise ValueError("forget_login_failures needs a name, an address or both")
    given = [(column, _key(value)) for column, value in (("name", name), ("address", address)) if value is not None]
    with transaction(conn):
        cursor = conn.execute(
            "DELETE FROM login_failures WHERE " + " AND ".join(f"{column} = %s" for column, _ in given),
            [value for _, value in given],
        )
        count = int(cursor.rowcount)
        if address is not None and name is None:
            conn.execute("DELETE FROM address_failures WHERE address = %s", (_key(address),))
        _record(conn, None, "account.unlocked", target)
    return count


def _key(value: str) -> str:
    # A login name is any text the client sends, NUL included, and counts all
    # the same; escaped one-to-one into text PostgreSQL accepts.
    return value.replace("\\", "\\\\").replace("\x00", "\\0")


# -- to-dos -----------------------------------------------------------------------------


def session_account_with_todos(
    conn: psycopg.Connection[Any],
    session_id: str,
    public_id: str,
    now: float,
    limit: int = -1,
    offset: int = 0,
    complete: bool | None = None,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """As store.session_account_with_todos; json_agg keeps the page's order, and psycopg hands it over as lists."""
    if _has_nul(session_id, public_id):
        return None, []
    only = "" if complete is None else " AND complete = %s"
    row = conn.execute(
        "SELECT " + ACCOUNT_COLUMNS + ", (SELECT coalesce(json_agg(json_build_array(id, text, complete) ORDER BY id),"
        " '[]') FROM (SELECT id, text, complete FROM todos WHERE owner_id = u.id" + only + " ORDER BY id"
        " LIMIT %s OFFSET %s) AS page)"
        " FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id = %s AND u.public_id = %s AND s.expires_at > %s",
        (*(() if complete is None else (complete,)), _limit(limit), offset, session_id, public_id, now),
    ).fetchone()
    if row is None:
        return None, []
    return account_from_row(row), [{"id": i, "text": t, "complete": bool(c)} for i, t, c in row[5]]


def session_account_with_todo(
    conn: psycopg.Connection[Any], session_id: str, public_id: str, now: float, todo_id: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if _has_nul(session_id, public_id):
        return None, None
    row = conn.execute(
        "SELECT " + ACCOUNT_COLUMNS + ", t.id, t.text, t.complete FROM sessions s JOIN users u ON u.id = s.user_id"
        " LEFT JOIN todos t ON t.id = %s AND t.owner_id = u.id"
        " WHERE s.id = %s AND u.public_id = %s AND s.expires_at > %s",
        # An id past 64 bits names no row (bigint cannot hold it): NULL matches none.
        (todo_id if todo_id <= MAX_ID else None, session_id, public_id, now),
    ).fetchone()
    if row is None:
        return None, None
    return account_from_row(row), None if row[5] is None else todo_from_row(row[5:])


@_retried
def create_todo(
    conn: psycopg.Connection[Any], caller: Caller, text: str, max_todos: int, once: Once | None = None
) -> dict[str, Any] | str:
    """As store.create_todo; the caller's rows are locked FOR UPDATE, so two creates of
    one account queue and cannot both count below the maximum."""
    with transaction(conn):
        owner_id = _check_caller(conn, caller, admin=False, exclusive=True)
        kept = _claim(conn, caller.public_id, once) if once is not None else None
        if kept is not None:
            return kept
        (count,) = _one(conn.execute("SELECT count(*) FROM todos WHERE owner_id = %s", (owner_id,)))
        if count >= max_todos:
            raise TooManyTodos(caller.public_id)
        (todo_id,) = _one(
            conn.execute("INSERT INTO todos (owner_id, text) VALUES (%s, %s) RETURNING id", (owner_id, text))
        )
        todo = {"id": todo_id, "text": text, "complete": False}
        if once is not None:
            _keep(conn, caller.public_id, once, todo)
    return todo


def _passes(
    conn: psycopg.Connection[Any], owner_id: int | None, todo_id: int | None, check: Callable[[dict[str, Any]], None]
) -> bool:
    """Inside a to-do's write: False if the owner has no such to-do, else run ``check`` on it as it stands."""
    current = todo_from_row(
        conn.execute(
            "SELECT id, text, complete FROM todos WHERE id = %s AND owner_id = %s FOR UPDATE", (todo_id, owner_id)
        ).fetchone()
    )
    if current is None:
        return False
    check(current)
    return True


@_retried
def update_todo(
    conn: psycopg.Connection[Any],
    caller: Caller,
    todo_id: int,
    *,
    text: str | None = None,
    complete: bool | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any] | None:
    with transaction(conn):
        owner_id = _check_caller(conn, caller, admin=False)
        found = todo_id if todo_id <= MAX_ID else None
        if check is not None and not _passes(conn, owner_id, found, check):
            return None
        row = conn.execute(
            "UPDATE todos SET text = coalesce(%s, text), complete = coalesce(%s, complete)"
            " WHERE id = %s AND owner_id = %s RETURNING id, text, complete",
            (text, complete, found, owner_id),
        ).fetchone()
    return todo_from_row(row)


@_retried
def delete_todo(
    conn: psycopg.Connection[Any], caller: Caller, todo_id: int, check: Callable[[dict[str, Any]], None] | None = None
) -> bool:
    with transaction(conn):
        owner_id = _check_caller(conn, caller, admin=False)
        found = todo_id if todo_id <= MAX_ID else None
        if check is not None and not _passes(conn, owner_id, found, check):
            return False
        deleted = conn.execute("DELETE FROM todos WHERE id = %s AND owner_id = %s", (found, owner_id)).rowcount
    return deleted > 0


# -- helpers ------------------------------------------------------------------------------


def _one(cursor: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def _limit(limit: int) -> int | None:
    return None if limit < 0 else limit


# -- copying a whole database (python -m todo_wsgi copy-to) -----------------------------


def export_rows(conn: psycopg.Connection[Any]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Yield (table, row) for every row a move carries, then ("next_ids", (table, id)).

    One snapshot: a REPEATABLE READ transaction reads every table as of its
    start. ``next_ids`` is the id the next row of each table gets, so an id
    once used (a deleted to-do's too) is not handed out again after the move.
    """
    with transaction(conn):
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for table, columns in COPIED.items():
            statement = sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
            )
            for row in conn.execute(statement):
                yield table, tuple(row)
        for table in NUMBERED:
            (used,) = _one(
                conn.execute(
                    sql.SQL(
                        "SELECT greatest((SELECT max(id) FROM {}),"
                        " pg_sequence_last_value(pg_get_serial_sequence({}, 'id')), 0)"
                    ).format(sql.Identifier(table), sql.Literal(table))
                )
            )
            yield "next_ids", (table, int(used) + 1)


def import_rows(conn: psycopg.Connection[Any], rows: Iterable[tuple[str, tuple[Any, ...]]]) -> dict[str, int]:
    """Write what export_rows yields (from either backend) into this empty database.

    One transaction: all or nothing. Raise ValueError, writing nothing, if the
    database already holds accounts or to-dos; a signing key
    stored by a server that started on the empty database is replaced. Rows
    go in by COPY, and each id sequence is moved past the ids copied.
    Return the number of rows written per table.
    """
    counts = dict.fromkeys(COPIED, 0)
    with transaction(conn):
        # Nobody writes to the tables while we check that they are empty and fill them.
        conn.execute(
            "LOCK TABLE users, todos, app_secrets, sessions, spent_refresh_tokens, audit_events IN EXCLUSIVE MODE"
        )
        (busy,) = _one(conn.execute("SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM todos)"))
        if busy:
            raise ValueError("the target database is not empty: it already holds accounts or to-dos")
        conn.execute("DELETE FROM app_secrets")
        for table, group in itertools.groupby(rows, key=lambda item: item[0]):
            if table == "next_ids":
                for _, (name, next_id) in group:
                    conn.execute(
                        sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), %s, false)").format(sql.Literal(name)),
                        (next_id,),
                    )
                continue
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, COPIED[table]))
            )
            with conn.cursor().copy(statement) as copy:
                for _, row in group:
                    copy.write_row(row)
                    counts[table] += 1
    return counts
