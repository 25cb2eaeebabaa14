"""The SQLite repository: schema, connections, transactions and every query.

Owns all SQL for the embedded backend. Knows nothing of HTTP, JSON or tokens:
functions take a connection first and return plain dicts, ``None`` or a bool,
and the caller decides what that means for a response. ``store_pg.py`` holds
the same functions, in the same order, for PostgreSQL.

Must not import todo_wsgi, router, or anything web-related.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

BACKEND = "sqlite"

# SQLite stores integers in 64 bits; a larger id cannot name a row, and
# passing one to sqlite3 raises OverflowError instead of finding nothing.
MAX_ID = 2**63 - 1


# Errors meaning "the database cannot answer now": the edge answers 503.
UNAVAILABLE: tuple[type[Exception], ...] = (sqlite3.OperationalError,)


# Both stores raise these two (store_pg.py imports them), so a caller catches
# one type whichever backend it has.
class NameTaken(Exception):
    """An account with that name already exists."""


class LastAdmin(Exception):
    """The change would leave no admin account."""


# Each step runs in one transaction together with its user_version bump, so a
# crash mid-migration leaves the database at the previous version, never between.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        public_id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        admin INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
        tokens_valid_after REAL NOT NULL DEFAULT 0
    );
    CREATE TABLE todos (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        complete INTEGER NOT NULL DEFAULT 0 CHECK (complete IN (0, 1))
    );
    CREATE INDEX todos_owner ON todos (owner_id, complete, id);
    CREATE TABLE app_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE revoked_tokens (
        jti TEXT PRIMARY KEY,
        expires_at REAL NOT NULL
    );
    CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
    CREATE TABLE login_failures (
        name TEXT NOT NULL,
        address TEXT NOT NULL,
        failures INTEGER NOT NULL,
        window_start REAL NOT NULL,
        PRIMARY KEY (name, address)
    );
    """,
    # GET /todo without a filter lists in id order: todos_owner (owner_id,
    # complete, id) gives (complete, id) order, so SQLite sorted all of an
    # account's to-dos for every page. This index serves that page directly.
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


# -- connections and transactions -------------------------------------------


class Database:
    """Hands each thread its own connection to one SQLite file.

    A sqlite3 connection must not be shared between threads that use it at the
    same time; waitress runs requests on a fixed pool of threads, so one
    connection per thread, kept for the thread's life, costs one open each.
    """

    def __init__(self, path: str) -> None:
        if path == ":memory:" or path.startswith("file::memory:"):
            # Every connection to :memory: is its own empty database: each
            # waitress thread would see different data.
            raise ValueError("database ':memory:' cannot be shared between threads; give a file path")
        self.path = path
        self.url = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self.connection() as conn:
            require_json(conn)
            migrate(conn)

    def connection(self) -> contextlib.nullcontext[sqlite3.Connection]:
        """This thread's connection, opened on first use, as a context manager.

        Nothing is given back on leaving it: the connection stays with its
        thread. A nullcontext, not a generator: it runs on every request and
        costs a third as much.
        """
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return contextlib.nullcontext(conn)

    def close(self) -> None:
        """Close every connection this database opened, in any thread."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def open_database(url: str, pool_size: int = 4) -> Database:
    """Open (creating and migrating if needed) the SQLite file at ``url``.

    ``pool_size`` is accepted for the PostgreSQL backend's sake and unused:
    each waitress thread keeps one connection of its own.
    """
    del pool_size
    return Database(url.removeprefix("sqlite:///"))


def connect(path: str) -> sqlite3.Connection:
    """Open a connection with every PRAGMA this service relies on."""
    # isolation_level=None: the sqlite3 module opens no implicit transactions;
    # every write below is inside an explicit transaction().
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    # In WAL mode NORMAL never corrupts the file; a process crash loses
    # nothing committed, a power cut may lose the last commits (README).
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def require_json(conn: sqlite3.Connection) -> None:
    """Refuse, at start, an SQLite without its JSON functions (built in since 3.38).

    The list read (token_account_with_todos) needs json_group_array; without
    this check such a build would answer every GET /todo with an error.
    """
    try:
        conn.execute("SELECT json_array()").fetchone()
    except sqlite3.OperationalError:
        raise RuntimeError(
            f"SQLite {sqlite3.sqlite_version} lacks its JSON functions; todo-wsgi needs 3.38 or later"
        ) from None


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block as one write transaction; roll back on any exception.

    BEGIN IMMEDIATE takes the write lock up front, so a read that decides a
    write (is this the last admin? is the name free?) cannot be overtaken by
    another connection between the read and the write.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; return the version found before."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    for version in range(found, SCHEMA_VERSION):
        with transaction(conn):
            (current,) = conn.execute("PRAGMA user_version").fetchone()
            if current > version:  # another process migrated meanwhile
                continue
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1:d}")
    if found > SCHEMA_VERSION:
        raise RuntimeError(f"database schema version {found} is newer than this code ({SCHEMA_VERSION})")
    return int(found)


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the schema version recorded in the database."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def ping(conn: sqlite3.Connection) -> None:
    """Raise if the database does not answer a trivial query."""
    conn.execute("SELECT 1 FROM users LIMIT 1").fetchall()


def integrity_errors(conn: sqlite3.Connection) -> list[str]:
    """Return what PRAGMA integrity_check and foreign_key_check find wrong; empty when all is well.

    integrity_check reads every page but not foreign keys; foreign_key_check
    finds a to-do whose owner is gone (as store_pg.integrity_errors does).
    """
    rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    problems = [] if rows == ["ok"] else rows
    for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check"):
        problems.append(f"{table} row {rowid} refers to a missing {parent} row")
    return problems


def backup(conn: sqlite3.Connection, target: str) -> None:
    """Copy the live database to ``target`` with SQLite's online backup API."""
    with contextlib.closing(sqlite3.connect(target)) as dest:
        conn.backup(dest)


# -- the signing key ----------------------------------------------------------


def get_or_create_secret(conn: sqlite3.Connection, name: str, candidate: str) -> str:
    """Return the stored secret ``name``, storing ``candidate`` if there is none.

    INSERT OR IGNORE then SELECT, in one transaction: two processes starting at
    once agree on whichever key was stored first.
    """
    with transaction(conn):
        conn.execute("INSERT OR IGNORE INTO app_secrets (name, value) VALUES (?, ?)", (name, candidate))
        row = conn.execute("SELECT value FROM app_secrets WHERE name = ?", (name,)).fetchone()
    return str(row["value"])


# -- accounts -------------------------------------------------------------------

# An account as the stores hand it out; store_pg.py uses the same query and shape.
SELECT_ACCOUNT = "SELECT id, public_id, name, admin FROM users"


def account_from_row(row: sqlite3.Row | tuple[Any, ...] | None) -> dict[str, Any] | None:
    """A row of SELECT_ACCOUNT as a dict, or None for no row."""
    if row is None:
        return None
    return {"id": row[0], "public_id": row[1], "name": row[2], "admin": bool(row[3])}


class TokenAccount(NamedTuple):
    """What a token's check reads of the database about the token's account."""

    account: dict[str, Any]
    tokens_valid_after: float  # tokens issued before this (a password change) are refused
    revoked: bool  # the token's jti was logged out


# The columns of a TokenAccount. Reads of a route's data start with them, so
# that a request reads the database once (README, "Performance": under
# waitress each statement costs far more than its SQL).
SELECT_TOKEN_ACCOUNT = (
    "SELECT u.id, u.public_id, u.name, u.admin, u.tokens_valid_after,"
    " EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?)"
)


def token_account_from_row(row: sqlite3.Row | tuple[Any, ...]) -> TokenAccount:
    """The first six columns of a SELECT_TOKEN_ACCOUNT row."""
    return TokenAccount(account_from_row(row), float(row[4]), bool(row[5]))  # type: ignore[arg-type]


def get_token_account(conn: sqlite3.Connection, public_id: str, jti: str) -> TokenAccount | None:
    """Return the TokenAccount (account, tokens_valid_after, jti revoked) for a token's claims.

    One query per authenticated request: the account's existence and rights
    are read fresh every time, together with the logout deny-list.
    """
    row = conn.execute(SELECT_TOKEN_ACCOUNT + " FROM users u WHERE u.public_id = ?", (jti, public_id)).fetchone()
    return None if row is None else token_account_from_row(row)


def get_login(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    """Return the account named ``name`` with its password hash and token cut-off, or None."""
    row = conn.execute(
        "SELECT id, public_id, name, admin, password_hash, tokens_valid_after FROM users WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        return None
    account = account_from_row(row)
    assert account is not None
    account["password_hash"] = row["password_hash"]
    account["tokens_valid_after"] = float(row["tokens_valid_after"])
    return account


def list_users(conn: sqlite3.Connection, limit: int = -1, offset: int = 0) -> list[dict[str, Any]]:
    """Return accounts in creation order; ``limit`` -1 means all."""
    rows = conn.execute(SELECT_ACCOUNT + " ORDER BY id LIMIT ? OFFSET ?", (limit, offset))
    return [a for a in map(account_from_row, rows) if a is not None]


def get_user(conn: sqlite3.Connection, public_id: str) -> dict[str, Any] | None:
    """Return the account with ``public_id``, or None."""
    return account_from_row(conn.execute(SELECT_ACCOUNT + " WHERE public_id = ?", (public_id,)).fetchone())


def get_user_by_name(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    """Return the account named ``name``, or None."""
    return account_from_row(conn.execute(SELECT_ACCOUNT + " WHERE name = ?", (name,)).fetchone())


def create_user(conn: sqlite3.Connection, public_id: str, name: str, password_hash: str, admin: bool) -> dict[str, Any]:
    """Insert an account and return it; raise NameTaken if the name is in use."""
    try:
        with transaction(conn):
            conn.execute(
                "INSERT INTO users (public_id, name, password_hash, admin) VALUES (?, ?, ?, ?)",
                (public_id, name, password_hash, int(admin)),
            )
    except sqlite3.IntegrityError as exc:
        raise NameTaken(name) from exc
    return {"public_id": public_id, "name": name, "admin": admin}


def update_user(
    conn: sqlite3.Connection,
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
    try:
        with transaction(conn):
            row = conn.execute("SELECT id, admin FROM users WHERE public_id = ?", (public_id,)).fetchone()
            if row is None:
                return None
            if admin is False and row["admin"] and _admin_count(conn) <= 1:
                raise LastAdmin(public_id)
            if name is not None:
                conn.execute("UPDATE users SET name = ? WHERE id = ?", (name, row["id"]))
            if password_hash is not None:
                conn.execute(
                    "UPDATE users SET password_hash = ?, tokens_valid_after = ? WHERE id = ?",
                    (password_hash, now, row["id"]),
                )
            if admin is not None:
                conn.execute("UPDATE users SET admin = ? WHERE id = ?", (int(admin), row["id"]))
            return account_from_row(conn.execute(SELECT_ACCOUNT + " WHERE id = ?", (row["id"],)).fetchone())
    except sqlite3.IntegrityError as exc:
        raise NameTaken(name) from exc


def rehash_password(conn: sqlite3.Connection, user_id: int, old_hash: str, new_hash: str) -> None:
    """Replace a password hash with a stronger one of the same password.

    Only if it is still ``old_hash``: a password changed meanwhile wins. Tokens
    are untouched, since the password itself did not change.
    """
    with transaction(conn):
        conn.execute(
            "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
            (new_hash, user_id, old_hash),
        )


def delete_user(conn: sqlite3.Connection, public_id: str) -> bool:
    """Delete an account and (by cascade) its to-dos; False if there was none.

    Raise LastAdmin, deleting nothing, if it is the only admin.
    """
    with transaction(conn):
        row = conn.execute("SELECT id, admin FROM users WHERE public_id = ?", (public_id,)).fetchone()
        if row is None:
            return False
        if row["admin"] and _admin_count(conn) <= 1:
            raise LastAdmin(public_id)
        conn.execute("DELETE FROM users WHERE id = ?", (row["id"],))
    return True


def _admin_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM users WHERE admin = 1").fetchone()[0])


# -- tokens: logout deny-list ----------------------------------------------------


def revoke_token(conn: sqlite3.Connection, jti: str, expires_at: float, now: float) -> None:
    """Deny the token ``jti`` until it expires; prune entries already expired."""
    with transaction(conn):
        conn.execute("INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)", (jti, expires_at))
        conn.execute("DELETE FROM revoked_tokens WHERE expires_at <= ?", (now,))


# -- login throttling ------------------------------------------------------------


def count_login_attempt(
    conn: sqlite3.Connection, name: str, address: str, now: float, window: float
) -> tuple[int, float]:
    """Count one login attempt for (name, address); return (count, window start).

    Counted before the password is checked, in one statement, so concurrent
    attempts in any thread or process cannot slip past the limit together. A
    window that has passed starts afresh, and rows of passed windows are
    pruned. A successful login clears the count.
    """
    with transaction(conn):
        row = conn.execute(
            "INSERT INTO login_failures (name, address, failures, window_start) VALUES (?, ?, 1, ?)"
            " ON CONFLICT (name, address) DO UPDATE SET"
            "  failures = CASE WHEN window_start <= ? THEN 1 ELSE failures + 1 END,"
            "  window_start = CASE WHEN window_start <= ? THEN excluded.window_start ELSE window_start END"
            " RETURNING failures, window_start",
            (name, address, now, now - window, now - window),
        ).fetchall()[0]
        conn.execute("DELETE FROM login_failures WHERE window_start <= ?", (now - window,))
    return int(row[0]), float(row[1])


def clear_login_failures(conn: sqlite3.Connection, name: str, address: str) -> None:
    """Forget the failed logins of (name, address) after a successful one."""
    with transaction(conn):
        conn.execute("DELETE FROM login_failures WHERE name = ? AND address = ?", (name, address))


def forget_login_failures(conn: sqlite3.Connection, name: str | None = None, address: str | None = None) -> int:
    """Forget the failed logins of a name (from every address), of an address (under
    every name), or of the two together, for the operator's ``unlock``; return how
    many throttle rows went."""
    if name is None and address is None:
        raise ValueError("forget_login_failures needs a name, an address or both")
    given = [(column, value) for column, value in (("name", name), ("address", address)) if value is not None]
    with transaction(conn):
        cursor = conn.execute(
            "DELETE FROM login_failures WHERE " + " AND ".join(f"{column} = ?" for column, _ in given),
            [value for _, value in given],
        )
        return int(cursor.rowcount)


# -- to-dos -----------------------------------------------------------------------------


def todo_from_row(row: sqlite3.Row | tuple[Any, ...] | None) -> dict[str, Any] | None:
    """A row of (id, text, complete) as the API shows a to-do, or None for no row."""
    if row is None:
        return None
    return {"id": row[0], "text": row[1], "complete": bool(row[2])}


def token_account_with_todos(
    conn: sqlite3.Connection,
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
    only = "" if complete is None else " AND complete = ?"
    # One row however long the page: the to-dos come as one JSON array of
    # [id, text, complete] (json_array keeps every value's type and text exact).
    row = conn.execute(
        SELECT_TOKEN_ACCOUNT + ", (SELECT json_group_array(json_array(id, text, complete)) FROM"
        " (SELECT id, text, complete FROM todos WHERE owner_id = u.id" + only + " ORDER BY id LIMIT ? OFFSET ?))"
        " FROM users u WHERE u.public_id = ?",
        (jti, *(() if complete is None else (int(complete),)), limit, offset, public_id),
    ).fetchone()
    if row is None:
        return None, []
    # SQLite (before 3.44) promises no order for an aggregate's input: sort here.
    todos = sorted(json.loads(row[6]))
    return token_account_from_row(row), [{"id": i, "text": t, "complete": bool(c)} for i, t, c in todos]


def token_account_with_todo(
    conn: sqlite3.Connection, public_id: str, jti: str, todo_id: int
) -> tuple[TokenAccount | None, dict[str, Any] | None]:
    """get_token_account's answer and that account's to-do ``todo_id`` (None if it has none such), in one statement."""
    row = conn.execute(
        SELECT_TOKEN_ACCOUNT + ", t.id, t.text, t.complete"
        " FROM users u LEFT JOIN todos t ON t.id = ? AND t.owner_id = u.id WHERE u.public_id = ?",
        # An id past 64 bits names no row (sqlite3 cannot bind it): NULL matches none.
        (jti, todo_id if todo_id <= MAX_ID else None, public_id),
    ).fetchone()
    if row is None:
        return None, None
    return token_account_from_row(row), None if row[6] is None else todo_from_row(row[6:])


def create_todo(conn: sqlite3.Connection, owner_id: int, text: str) -> dict[str, Any] | None:
    """Insert a to-do for the owner and return it; None if the owner no longer exists."""
    try:
        with transaction(conn):
            cursor = conn.execute("INSERT INTO todos (owner_id, text) VALUES (?, ?)", (owner_id, text))
    except sqlite3.IntegrityError:  # the foreign key: the account was deleted meanwhile
        return None
    return {"id": cursor.lastrowid, "text": text, "complete": False}


def update_todo(
    conn: sqlite3.Connection,
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
    with transaction(conn):
        row = conn.execute(
            "UPDATE todos SET text = coalesce(?, text), complete = coalesce(?, complete)"
            " WHERE id = ? AND owner_id = ? RETURNING id, text, complete",
            (text, None if complete is None else int(complete), todo_id, owner_id),
        ).fetchall()
    return todo_from_row(row[0] if row else None)


def delete_todo(conn: sqlite3.Connection, owner_id: int, todo_id: int) -> bool:
    """Delete the owner's to-do; False if there was none."""
    if todo_id > MAX_ID:
        return False
    with transaction(conn):
        cursor = conn.execute("DELETE FROM todos WHERE id = ? AND owner_id = ?", (todo_id, owner_id))
    return cursor.rowcount > 0


# -- copying a whole database (python -m todo_wsgi copy-to) -----------------------------

# What a move carries, parents before children. Login failures stay behind:
# they are at most a window's worth of history.
COPIED: dict[str, tuple[str, ...]] = {
    "users": ("id", "public_id", "name", "password_hash", "admin", "tokens_valid_after"),
    "todos": ("id", "owner_id", "text", "complete"),
    "app_secrets": ("name", "value"),
    "revoked_tokens": ("jti", "expires_at"),
}
_BOOLEAN_COLUMNS = frozenset({"admin", "complete"})


def export_rows(conn: sqlite3.Connection) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Yield (table, row) for every row a move carries, then ("next_ids", (table, id)).

    One snapshot: BEGIN IMMEDIATE holds writers off until the last row is
    read. Booleans as bool, so either backend takes the rows as they come.
    ``next_ids`` is the id the next row of each table gets, so an id once
    used (a deleted to-do's too) is not handed out again after the move.
    """
    with transaction(conn):
        for table, columns in COPIED.items():
            flags = [name in _BOOLEAN_COLUMNS for name in columns]
            for row in conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1"):
                yield table, tuple(bool(v) if flag else v for v, flag in zip(row, flags, strict=True))
        for table in ("users", "todos"):
            (used,) = conn.execute(
                f"SELECT max(coalesce((SELECT max(id) FROM {table}), 0),"
                " coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?), 0))",
                (table,),
            ).fetchone()
            yield "next_ids", (table, int(used) + 1)


def import_rows(conn: sqlite3.Connection, rows: Iterable[tuple[str, tuple[Any, ...]]]) -> dict[str, int]:
    """Write what export_rows yields (from either backend) into this empty database.

    One transaction: all or nothing. Raise ValueError, writing nothing, if the
    database already holds accounts, to-dos or revoked tokens; a signing key
    stored by a server that started on the empty database is replaced.
    Return the number of rows written per table.
    """
    counts = dict.fromkeys(COPIED, 0)
    with transaction(conn):
        if conn.execute(
            "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM todos)"
            " OR EXISTS (SELECT 1 FROM revoked_tokens)"
        ).fetchone()[0]:
            raise ValueError("the target database is not empty: it already holds accounts, to-dos or tokens")
        conn.execute("DELETE FROM app_secrets")
        for table, row in rows:
            if table == "next_ids":
                # Only todos is AUTOINCREMENT, with a high-water mark in
                # sqlite_sequence; users' ids are internal and follow max(id).
                name, next_id = row
                if name == "todos":
                    conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'todos'", (next_id - 1,))
                    conn.execute(
                        "INSERT INTO sqlite_sequence (name, seq) SELECT 'todos', ?"
                        " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'todos')",
                        (next_id - 1,),
                    )
                continue
            columns = COPIED[table]
            conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", row)
            counts[table] += 1
    return counts
