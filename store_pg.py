"""The PostgreSQL repository: schema, connections, transactions and every query.

Owns all SQL for the shared backend that several servers use at once. The
same functions as ``store.py``, in the same order, with the same arguments and
return shapes, so a reviewer reads the two side by side and handlers never
ask which one they have. Knows nothing of HTTP, JSON or tokens.

Concurrency: READ COMMITTED with row locks, not SERIALIZABLE. Every decision
SQLite takes under BEGIN IMMEDIATE is here either one atomic statement (a
UNIQUE constraint for names, INSERT ... ON CONFLICT for throttle counts, the
deny-list and the signing key, an UPDATE for the password cut-off) or, for
"is this the last admin?", a read of the admin rows under SELECT ... FOR
UPDATE, taken in id order, so two servers demoting each other queue on the
same rows instead of both seeing two admins. Why not SERIALIZABLE: the one
multi-row decision needs only those few rows locked, and under READ
COMMITTED PostgreSQL never aborts these transactions as serialization
failures, so no request is retried in the normal course. A deadlock, or a
serialization failure from an engine that speaks the protocol and runs
SERIALIZABLE anyway (CockroachDB does by default), is retried a few times
by ``_retried``; past that it is a 503.

Needs the ``postgres`` extra (psycopg 3 and psycopg_pool). Imports from
``store`` only what both backends share (two error types, two row shapes);
must not import todo_wsgi, router, or anything web-related.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# The same errors and the same row shapes as the SQLite store, not copies of them.
from store import (
    SELECT_ACCOUNT,
    LastAdmin,
    NameTaken,
    TokenAccount,
    account_from_row,
    todo_from_row,
    token_account_from_row,
)
from store import SELECT_TOKEN_ACCOUNT as _SELECT_TOKEN_ACCOUNT_QMARK

# The token check's columns, with psycopg's placeholder: a plain swap, sound
# only while the shared text holds no other "?" and no "%" (checked here).
assert _SELECT_TOKEN_ACCOUNT_QMARK.count("?") == 1 and "%" not in _SELECT_TOKEN_ACCOUNT_QMARK
SELECT_TOKEN_ACCOUNT = _SELECT_TOKEN_ACCOUNT_QMARK.replace("?", "%s")

BACKEND = "postgresql"

# Ids are BIGINT (BIGSERIAL): a larger id cannot name a row, and psycopg
# would send it as a numeric that PostgreSQL must then compare to a bigint.
MAX_ID = 2**63 - 1


# Errors meaning "the database cannot answer now": the edge answers 503.
# OperationalError covers a refused or dropped connection, a server shutting
# down, and (as TransactionRollback) a failure ``_retried`` gave up on;
# PoolTimeout is no free connection within POOL_TIMEOUT.
UNAVAILABLE: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg_pool.PoolTimeout)


# Each step runs in one transaction together with its schema_version bump,
# under an advisory lock, so two servers starting at once on a new database
# apply each step exactly once, and a crash mid-step leaves the previous version.
# Same tables, columns and meaning as store.MIGRATIONS; BIGSERIAL ids, real
# booleans, DOUBLE PRECISION for SQLite's REAL Unix times. TEXT holds any
# Unicode but NUL, which the application refuses before it gets here.
MIGRATIONS: list[str] = [
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
    # As store.py: GET /todo without a filter lists in id order, which
    # todos_owner (owner_id, complete, id) cannot give without a sort.
    """
    CREATE INDEX todos_owner_id ON todos (owner_id, id);
    """,
    # Throttle rows of windows that have passed are pruned at each attempt:
    # a client inventing names must not grow the table without bound.
    """
    CREATE INDEX login_failures_window ON login_failures (window_start);
    """,
]

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
        conninfo = make_conninfo("", **params)
        # The pool's first connection opens in the background meanwhile.
        self.pool = psycopg_pool.ConnectionPool(
            conninfo,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=pool_size,
            timeout=POOL_TIMEOUT,
            name="todo-wsgi",
            open=True,
        )
        # One direct connection to check and migrate: an unreachable server, a
        # wrong password or a wrong encoding stops the start at once, in
        # libpq's own words, where the pool would retry until its timeout.
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                check_encoding(conn)
                migrate(conn)
        except BaseException as exc:
            self.pool.close()
            if isinstance(exc, psycopg.OperationalError):
                raise RuntimeError(f"cannot use the PostgreSQL database: {exc}".strip()) from exc
            raise

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

    READ COMMITTED: a decision that depends on other rows locks them first
    (see ``_lock_admins``). A write that is one statement goes without it:
    in autocommit mode PostgreSQL runs each statement as a transaction of
    its own, and BEGIN and COMMIT would be two more round trips.
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
    """Bring the schema to SCHEMA_VERSION; return the version found before."""
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
            conn.execute(MIGRATIONS[current])
            conn.execute("UPDATE schema_version SET version = %s", (current + 1,))
    assert found is not None
    if found > SCHEMA_VERSION:
        raise RuntimeError(f"database schema version {found} is newer than this code ({SCHEMA_VERSION})")
    return found


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """Return the schema version recorded in the database."""
    return int(_one(conn.execute("SELECT version FROM schema_version"))[0])


def ping(conn: psycopg.Connection[Any]) -> None:
    """Raise if the database does not answer a trivial query."""
    conn.execute("SELECT 1 FROM users LIMIT 1").fetchall()


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

    INSERT ... ON CONFLICT DO NOTHING then SELECT: a concurrent insert of the
    same name makes ours wait for it and then do nothing, and the SELECT (a
    new snapshot under READ COMMITTED) reads the key that won.
    """
    with transaction(conn):
        conn.execute(
            "INSERT INTO app_secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
            (name, candidate),
        )
        row = _one(conn.execute("SELECT value FROM app_secrets WHERE name = %s", (name,)))
    return str(row[0])


# -- accounts -------------------------------------------------------------------


def _has_nul(*values: str) -> bool:
    # PostgreSQL text cannot hold NUL, so no stored value contains one; psycopg
    # refuses to send it at all, so such a lookup is answered here, not raised.
    return any("\x00" in value for value in values)


def get_token_account(conn: psycopg.Connection[Any], public_id: str, jti: str) -> TokenAccount | None:
    """Return the TokenAccount (account, tokens_valid_after, jti revoked) for a token's claims.

    One query per authenticated request: the account's existence and rights
    are read fresh every time, together with the logout deny-list.
    """
    if _has_nul(public_id, jti):
        return None
    row = conn.execute(SELECT_TOKEN_ACCOUNT + " FROM users u WHERE u.public_id = %s", (jti, public_id)).fetchone()
    return None if row is None else token_account_from_row(row)


def get_login(conn: psycopg.Connection[Any], name: str) -> dict[str, Any] | None:
    """Return the account named ``name`` with its password hash and token cut-off, or None."""
    if _has_nul(name):
        return None
    row = conn.execute(
        "SELECT id, public_id, name, admin, password_hash, tokens_valid_after FROM users WHERE name = %s",
        (name,),
    ).fetchone()
    if row is None:
        return None
    account = account_from_row(row)
    assert account is not None
    account["password_hash"] = row[4]
    account["tokens_valid_after"] = float(row[5])
    return account


def list_users(conn: psycopg.Connection[Any], limit: int = -1, offset: int = 0) -> list[dict[str, Any]]:
    """Return accounts in creation order; ``limit`` -1 means all."""
    # LIMIT NULL is LIMIT ALL; PostgreSQL refuses SQLite's -1.
    rows = conn.execute(SELECT_ACCOUNT + " ORDER BY id LIMIT %s OFFSET %s", (_limit(limit), offset))
    return [a for a in map(account_from_row, rows) if a is not None]


def get_user(conn: psycopg.Connection[Any], public_id: str) -> dict[str, Any] | None:
    """Return the account with ``public_id``, or None."""
    if _has_nul(public_id):
        return None
    return account_from_row(conn.execute(SELECT_ACCOUNT + " WHERE public_id = %s", (public_id,)).fetchone())


def get_user_by_name(conn: psycopg.Connection[Any], name: str) -> dict[str, Any] | None:
    """Return the account named ``name``, or None."""
    if _has_nul(name):
        return None
    return account_from_row(conn.execute(SELECT_ACCOUNT + " WHERE name = %s", (name,)).fetchone())


@_retried
def create_user(
    conn: psycopg.Connection[Any], public_id: str, name: str, password_hash: str, admin: bool
) -> dict[str, Any]:
    """Insert an account and return it; raise NameTaken if the name is in use."""
    try:
        conn.execute(
            "INSERT INTO users (public_id, name, password_hash, admin) VALUES (%s, %s, %s, %s)",
            (public_id, name, password_hash, admin),
        )
    except errors.UniqueViolation as exc:
        raise NameTaken(name) from exc
    return {"public_id": public_id, "name": name, "admin": admin}


@_retried
def update_user(
    conn: psycopg.Connection[Any],
    public_id: str,
    *,
    name: str | None = None,
    password_hash: str | None = None,
    admin: bool | None = None,
    now: float = 0.0,
) -> dict[str, Any] | None:
    """Change any of name, password hash and admin flag, in one transaction.

    A new password hash moves the account's token cut-off to ``now``, ending
    every token issued before it. Return the account as it now stands, or None
    if there is no such account; raise NameTaken or LastAdmin and change nothing.
    """
    if _has_nul(public_id):
        return None
    try:
        with transaction(conn):
            admins = _lock_admins(conn) if admin is False else []
            row = conn.execute("SELECT id, admin FROM users WHERE public_id = %s FOR UPDATE", (public_id,)).fetchone()
            if row is None:
                return None
            if admin is False and row[1] and not [a for a in admins if a != row[0]]:
                raise LastAdmin(public_id)
            if name is not None:
                conn.execute("UPDATE users SET name = %s WHERE id = %s", (name, row[0]))
            if password_hash is not None:
                conn.execute(
                    "UPDATE users SET password_hash = %s, tokens_valid_after = %s WHERE id = %s",
                    (password_hash, now, row[0]),
                )
            if admin is not None:
                conn.execute("UPDATE users SET admin = %s WHERE id = %s", (admin, row[0]))
            return account_from_row(conn.execute(SELECT_ACCOUNT + " WHERE id = %s", (row[0],)).fetchone())
    except errors.UniqueViolation as exc:
        raise NameTaken(name) from exc


@_retried
def rehash_password(conn: psycopg.Connection[Any], user_id: int, old_hash: str, new_hash: str) -> None:
    """Replace a password hash with a stronger one of the same password.

    Only if it is still ``old_hash``: a password changed meanwhile wins. Tokens
    are untouched, since the password itself did not change.
    """
    conn.execute(
        "UPDATE users SET password_hash = %s WHERE id = %s AND password_hash = %s",
        (new_hash, user_id, old_hash),
    )


@_retried
def delete_user(conn: psycopg.Connection[Any], public_id: str) -> bool:
    """Delete an account and (by cascade) its to-dos; False if there was none.

    Raise LastAdmin, deleting nothing, if it is the only admin.
    """
    if _has_nul(public_id):
        return False
    with transaction(conn):
        admins = _lock_admins(conn)
        row = conn.execute("SELECT id, admin FROM users WHERE public_id = %s FOR UPDATE", (public_id,)).fetchone()
        if row is None:
            return False
        if row[1] and not [a for a in admins if a != row[0]]:
            raise LastAdmin(public_id)
        conn.execute("DELETE FROM users WHERE id = %s", (row[0],))
    return True


def _lock_admins(conn: psycopg.Connection[Any]) -> list[int]:
    """Lock every admin row until the transaction ends; return their ids.

    The last-admin check. Each row returned is an admin now and stays one
    until we commit (FOR UPDATE re-reads a row changed while we waited for it),
    so the admins other than the target are admins after the change too.
    Taken in id order, two servers demoting each other wait on the first
    row instead of each locking one and deadlocking.
    """
    return [r[0] for r in conn.execute("SELECT id FROM users WHERE admin ORDER BY id FOR UPDATE")]


# -- tokens: logout deny-list ----------------------------------------------------


@_retried
def revoke_token(conn: psycopg.Connection[Any], jti: str, expires_at: float, now: float) -> None:
    """Deny the token ``jti`` until it expires; prune entries already expired.

    One statement: the prune rides along in a data-modifying WITH.
    """
    conn.execute(
        "WITH pruned AS (DELETE FROM revoked_tokens WHERE expires_at <= %s)"
        " INSERT INTO revoked_tokens (jti, expires_at) VALUES (%s, %s) ON CONFLICT (jti) DO NOTHING",
        (now, jti, expires_at),
    )


# -- login throttling ------------------------------------------------------------


@_retried
def count_login_attempt(
    conn: psycopg.Connection[Any], name: str, address: str, now: float, window: float
) -> tuple[int, float]:
    """Count one login attempt for (name, address); return (count, window start).

    Counted before the password is checked, in one statement, so concurrent
    attempts in any thread or process cannot slip past the limit together
    (ON CONFLICT DO UPDATE locks the row). A window that has passed starts
    afresh, and rows of passed windows are pruned, in the same transaction.
    A successful login clears the count.
    """
    with transaction(conn):
        row = _one(
            conn.execute(
                "INSERT INTO login_failures AS f (name, address, failures, window_start) VALUES (%s, %s, 1, %s)"
                " ON CONFLICT (name, address) DO UPDATE SET"
                "  failures = CASE WHEN f.window_start <= %s THEN 1 ELSE f.failures + 1 END,"
                "  window_start = CASE WHEN f.window_start <= %s THEN excluded.window_start ELSE f.window_start END"
                " RETURNING failures, window_start",
                (_key(name), _key(address), now, now - window, now - window),
            )
        )
        conn.execute("DELETE FROM login_failures WHERE window_start <= %s", (now - window,))
    return int(row[0]), float(row[1])


@_retried
def clear_login_failures(conn: psycopg.Connection[Any], name: str, address: str) -> None:
    """Forget the failed logins of (name, address) after a successful one."""
    conn.execute("DELETE FROM login_failures WHERE name = %s AND address = %s", (_key(name), _key(address)))


def forget_login_failures(conn: psycopg.Connection[Any], name: str | None = None, address: str | None = None) -> int:
    """Forget the failed logins of a name (from every address), of an address (under
    every name), or of the two together, for the operator's ``unlock``; return how
    many throttle rows went."""
    if name is None and address is None:
        raise ValueError("forget_login_failures needs a name, an address or both")
    given = [(column, _key(value)) for column, value in (("name", name), ("address", address)) if value is not None]
    with transaction(conn):
        cursor = conn.execute(
            "DELETE FROM login_failures WHERE " + " AND ".join(f"{column} = %s" for column, _ in given),
            [value for _, value in given],
        )
        return int(cursor.rowcount)


def _key(value: str) -> str:
    # A login name is any text the client sends, NUL included, and counts all
    # the same; escaped one-to-one into text PostgreSQL accepts.
    return value.replace("\\", "\\\\").replace("\x00", "\\0")


# -- to-dos -----------------------------------------------------------------------------


def token_account_with_todos(
    conn: psycopg.Connection[Any],
    public_id: str,
    jti: str,
    limit: int = -1,
    offset: int = 0,
    complete: bool | None = None,
) -> tuple[TokenAccount | None, list[dict[str, Any]]]:
    """get_token_account's answer and that account's to-dos in id order, in one statement.

    The to-dos are a page (``limit``, ``offset``), optionally only (in)complete
    ones; no account, no to-dos. The caller checks the token before it shows
    any of them.
    """
    if _has_nul(public_id, jti):
        return None, []
    only = "" if complete is None else " AND complete = %s"
    # One row however long the page: the to-dos come as one JSON array of
    # [id, text, complete], which psycopg hands over as Python lists.
    row = conn.execute(
        SELECT_TOKEN_ACCOUNT + ", (SELECT coalesce(json_agg(json_build_array(id, text, complete) ORDER BY id), '[]')"
        " FROM (SELECT id, text, complete FROM todos WHERE owner_id = u.id"
        + only
        + " ORDER BY id LIMIT %s OFFSET %s) AS page)"
        " FROM users u WHERE u.public_id = %s",
        (jti, *(() if complete is None else (complete,)), _limit(limit), offset, public_id),
    ).fetchone()
    if row is None:
        return None, []
    return token_account_from_row(row), [{"id": i, "text": t, "complete": bool(c)} for i, t, c in row[6]]


def token_account_with_todo(
    conn: psycopg.Connection[Any], public_id: str, jti: str, todo_id: int
) -> tuple[TokenAccount | None, dict[str, Any] | None]:
    """get_token_account's answer and that account's to-do ``todo_id`` (None if it has none such), in one statement."""
    if _has_nul(public_id, jti):
        return None, None
    row = conn.execute(
        SELECT_TOKEN_ACCOUNT + ", t.id, t.text, t.complete"
        " FROM users u LEFT JOIN todos t ON t.id = %s AND t.owner_id = u.id WHERE u.public_id = %s",
        # An id past 64 bits names no row (bigint cannot hold it): NULL matches none.
        (jti, todo_id if todo_id <= MAX_ID else None, public_id),
    ).fetchone()
    if row is None:
        return None, None
    return token_account_from_row(row), None if row[6] is None else todo_from_row(row[6:])


@_retried
def create_todo(conn: psycopg.Connection[Any], owner_id: int, text: str) -> dict[str, Any] | None:
    """Insert a to-do for the owner and return it; None if the owner no longer exists."""
    try:
        (todo_id,) = _one(
            conn.execute("INSERT INTO todos (owner_id, text) VALUES (%s, %s) RETURNING id", (owner_id, text))
        )
    except errors.ForeignKeyViolation:  # the account was deleted meanwhile
        return None
    return {"id": todo_id, "text": text, "complete": False}


@_retried
def update_todo(
    conn: psycopg.Connection[Any],
    owner_id: int,
    todo_id: int,
    *,
    text: str | None = None,
    complete: bool | None = None,
) -> dict[str, Any] | None:
    """Change the text and/or completion of the owner's to-do; None if none.

    One UPDATE ... RETURNING: the change and the answer are one statement.
    """
    if todo_id > MAX_ID:
        return None
    row = conn.execute(
        "UPDATE todos SET text = coalesce(%s, text), complete = coalesce(%s, complete)"
        " WHERE id = %s AND owner_id = %s RETURNING id, text, complete",
        (text, complete, todo_id, owner_id),
    ).fetchone()
    return todo_from_row(row)


@_retried
def delete_todo(conn: psycopg.Connection[Any], owner_id: int, todo_id: int) -> bool:
    """Delete the owner's to-do; False if there was none."""
    if todo_id > MAX_ID:
        return False
    cursor = conn.execute("DELETE FROM todos WHERE id = %s AND owner_id = %s", (todo_id, owner_id))
    return cursor.rowcount > 0


# -- helpers ------------------------------------------------------------------------------


def _one(cursor: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def _limit(limit: int) -> int | None:
    return None if limit < 0 else limit


# -- copying a whole database (python -m todo_wsgi copy-to) -----------------------------

# What a move carries, parents before children. Login failures stay behind:
# they are at most a window's worth of history.
COPIED: dict[str, tuple[str, ...]] = {
    "users": ("id", "public_id", "name", "password_hash", "admin", "tokens_valid_after"),
    "todos": ("id", "owner_id", "text", "complete"),
    "app_secrets": ("name", "value"),
    "revoked_tokens": ("jti", "expires_at"),
}


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
        for table in ("users", "todos"):
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
    database already holds accounts, to-dos or revoked tokens; a signing key
    stored by a server that started on the empty database is replaced. Rows
    go in by COPY, and each id sequence is moved past the ids copied.
    Return the number of rows written per table.
    """
    counts = dict.fromkeys(COPIED, 0)
    with transaction(conn):
        # Nobody writes to the tables while we check that they are empty and fill them.
        conn.execute("LOCK TABLE users, todos, app_secrets, revoked_tokens IN EXCLUSIVE MODE")
        (busy,) = _one(
            conn.execute(
                "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM todos)"
                " OR EXISTS (SELECT 1 FROM revoked_tokens)"
            )
        )
        if busy:
            raise ValueError("the target database is not empty: it already holds accounts, to-dos or tokens")
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
