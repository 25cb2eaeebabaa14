"""The SQLite repository: schema, connections, transactions and every query.

Owns all SQL for the embedded backend. Knows nothing of HTTP, JSON or tokens:
functions take a connection first and return plain dicts, ``None`` or a bool,
or raise one of the error types below, and the caller decides what that means
for a response. ``store_pg.py`` holds the same functions, in the same order,
for PostgreSQL, and imports from here what is the same for both (error types,
row shapes, name keys); ``diff store.py store_pg.py`` reads as the dialect.

Every write that acts for someone (a ``Caller``: the session a request comes
from) checks inside its own transaction that the session still exists and, for
an admin's write, that its account is still an admin: whatever changed while
the caller spent a slow step (hashing) is seen by the write itself.

Must not import todo_wsgi, router, or anything web-related.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

BACKEND = "sqlite"

# SQLite stores integers in 64 bits; a larger id cannot name a row, and
# passing one to sqlite3 raises OverflowError instead of finding nothing.
MAX_ID = 2**63 - 1

# How long a write waits for another connection's lock before giving up (503).
BUSY_TIMEOUT_MS = 5000


# -- what a write can refuse (both stores raise these) ---------------------------


class Refused(Exception):
    """A write refused for a reason the caller answers; nothing was written. ``retry_after``:
    seconds after which the same write may succeed, where the refusal knows."""

    retry_after: int | None = None


class NameTaken(Refused):
    """An account with that name (by its name key) already exists."""


class LastAdmin(Refused):
    """The change would leave no admin account."""


class SessionEnded(Refused):
    """The caller's session no longer exists (logged out, password changed, account deleted)."""


class SessionEnding(Refused):
    """The session ends before the time a refresh needs it to last (its last second)."""


class NotAdmin(Refused):
    """The caller's account is no longer an admin."""


class TooManyTodos(Refused):
    """The account already holds its maximum of to-dos."""


class PasswordChanged(Refused):
    """The password hash is no longer the one that was verified."""


class Once(NamedTuple):
    """An Idempotency-Key's use by a create: the key, a fingerprint of the request (its
    method, path and body), the time, keys older than ``expired_before`` forgotten, and
    how to put the create's answer in words kept for replays (``answer(created)``)."""

    key: str
    fingerprint: str
    now: float
    expired_before: float
    answer: Callable[[dict[str, Any]], str]


class KeyReused(Refused):
    """The Idempotency-Key was first used with another request."""


class TooManyKeys(Refused):
    """The owner holds its maximum of Idempotency-Keys; the oldest is forgotten in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class Caller(NamedTuple):
    """Who a write acts for: a session and the public id of its account, and, for
    the audit trail, the client's address and the time of the request. Where a
    write takes ``None`` instead, the operator acts (the command line)."""

    session_id: str
    public_id: str
    address: str | None = None
    time: float = 0.0


# SQLite's primary result codes for a fault a client can wait out: busy,
# locked, full, I/O error, cannot open, read-only. Anything else (no such
# column, a syntax error, a constraint this code did not expect) is a bug.
_TRANSIENT = frozenset({5, 6, 13, 10, 14, 8})
SQLITE_READONLY = 8


def unavailable(error: BaseException) -> bool:
    """Whether ``error`` means "the database cannot answer now" (503), not a bug (500)."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.Error) and code is not None and code & 0xFF in _TRANSIENT


# -- schema --------------------------------------------------------------------


def name_key(name: str) -> str:
    """The key that makes names unique: NFKC case fold (so Admin, ADMIN and a full-width admin are one)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def name_keys(accounts: Iterable[tuple[int, str]]) -> Iterator[tuple[str, int]]:
    """(name key, id) for accounts given as (id, name) in id order, for the migration
    that made names unique by key. Names that collide by key keep working under
    their exact names: the oldest account keeps the key, each later one gets
    the key plus a control character and its id (which no name can hold), so
    no new account can take any of them. Each such account is logged."""
    taken: set[str] = set()
    for user_id, name in accounts:
        key = name_key(name)
        if key in taken:
            logging.getLogger("todo_wsgi.store").warning(
                "account %d: its name collides with an older account's by case or form; it keeps its name", user_id
            )
            key = f"{key}\x1f{user_id}"
        taken.add(key)
        yield key, user_id


def _fill_name_keys(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT id, name FROM users ORDER BY id").fetchall()
    conn.executemany("UPDATE users SET name_key = ? WHERE id = ?", name_keys(rows))


# Each step runs in one transaction together with its user_version bump, so a
# crash mid-migration leaves the database at the previous version, never
# between. A step is SQL, or a function for what SQL cannot compute.
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
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
    # GET /todo without a filter lists in id order: this index serves that page directly.
    "CREATE INDEX todos_owner_id ON todos (owner_id, id)",
    # Throttle rows of windows that have passed are pruned at each attempt.
    "CREATE INDEX login_failures_window ON login_failures (window_start)",
    # Sessions replace the logout deny-list and the password cut-off: a token
    # names its session, and logging out, a password change or deleting the
    # account deletes sessions. Tokens issued before this step stop working.
    # A session is kept by the SHA-256 of its id and of its current refresh
    # token: a copy of the database holds neither.
    # Names become unique by their NFKC case fold. Failed logins are also
    # counted per client address, across names. Sessions are read by id on every
    # request: WITHOUT ROWID makes that one B-tree search, not two.
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        expires_at REAL NOT NULL,
        refresh_hash TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_user ON sessions (user_id);
    CREATE INDEX sessions_expiry ON sessions (expires_at);
    DROP TABLE revoked_tokens;
    ALTER TABLE users DROP COLUMN tokens_valid_after;
    ALTER TABLE users ADD COLUMN name_key TEXT;
    CREATE TABLE address_failures (
        address TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        window_start REAL NOT NULL
    );
    CREATE INDEX address_failures_window ON address_failures (window_start)
    """,
    _fill_name_keys,
    "CREATE UNIQUE INDEX users_name_fold ON users (name_key)",
    # The audit trail.
    """
    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
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
    # An account's version (its ETag) changes with its password, which it does not
    # show; the first answer of each Idempotency-Key, kept a day.
    """
    ALTER TABLE users ADD COLUMN password_changes INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE idempotency_keys (
        owner TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        answer TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (owner, key)
    );
    CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at)
    """,
    # The refresh tokens a session has spent (their SHA-256): only one of these
    # presented again is a replay; a token never issued changes nothing. They go
    # with their session, by cascade.
    """
    CREATE TABLE spent_refresh_tokens (
        hash TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX spent_refresh_tokens_session ON spent_refresh_tokens (session_id)
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


# -- connections and transactions -------------------------------------------


class Database:
    """Hands each thread its own connection to one SQLite file.

    A sqlite3 connection must not be shared between threads that use it at the
    same time; waitress runs requests on a fixed pool of threads, so one
    connection per thread, kept for the thread's life, costs one open each.
    """

    def __init__(self, path: str) -> None:
        if path == ":memory:" or path.startswith("file:"):
            # Every connection to :memory: is its own empty database: each
            # waitress thread would see different data.
            raise ValueError(f"database {path!r} cannot be shared between threads; give a file path")
        self.path = path
        self.url = path
        self._local = threading.local()
        self._all: list[Connection] = []
        self._lock = threading.Lock()
        create_private(path)
        with self.connection() as conn:
            require_json(conn)
            migrate(conn)

    def connection(self) -> contextlib.nullcontext[Connection]:
        """This thread's connection, opened on first use, as a context manager.

        Nothing is given back on leaving it: the connection stays with its
        thread, unless a write found it read-only (``Connection.reopen``): then
        a new one replaces it. A nullcontext, not a generator: it runs on every
        request and costs a third as much.
        """
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.reopen:
            stale, conn = conn, connect(self.path)
            self._local.conn = conn
            with self._lock:
                if stale is not None:
                    self._all.remove(stale)
                    stale.close()
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


def create_private(path: str) -> None:
    """Create ``path`` readable by its owner only (0600), whatever the umask, if it is not there.

    SQLite gives the -wal and -shm files the database file's mode, so they
    are private too; an existing file keeps the mode it has.
    """
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


class Connection(sqlite3.Connection):
    """A connection its Database replaces on the thread's next request once ``reopen`` is set.

    A file SQLite cannot open for writing (its mode, its directory) is opened
    read-only, silently, and stays so for the connection's life: without a new
    connection, the thread would answer 503 to every write long after the
    file is writable again. ``transaction()`` sets ``reopen`` when a write
    meets SQLITE_READONLY (which also covers a database file moved away).
    """

    reopen = False


def connect(path: str) -> Connection:
    """Open a connection with every PRAGMA this service relies on."""
    # isolation_level=None: the sqlite3 module opens no implicit transactions;
    # every write below is inside an explicit transaction().
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000, factory=Connection
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
    conn.execute("PRAGMA journal_mode = WAL")
    # In WAL mode NORMAL never corrupts the file; a process crash loses
    # nothing committed, a power cut may lose the last commits (docs/operations.md).
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def require_json(conn: sqlite3.Connection) -> None:
    """Refuse, at start, an SQLite without its JSON functions (built in since 3.38)."""
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
    write (is this the last admin? is the session still there?) cannot be
    overtaken by another connection between the read and the write. A COMMIT
    that fails (a full disk, a deferred constraint) leaves SQLite inside the
    transaction: it is rolled back too, so the connection is never left in one
    (as sqlite-utils' ``atomic()`` does).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(conn, Connection) and getattr(error, "sqlite_errorcode", 0) & 0xFF == SQLITE_READONLY:
            conn.reopen = True
        raise


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; return the version found before."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found > SCHEMA_VERSION:
        raise RuntimeError(f"database schema version {found} is newer than this code ({SCHEMA_VERSION})")
    for version in range(found, SCHEMA_VERSION):
        with transaction(conn):
            (current,) = conn.execute("PRAGMA user_version").fetchone()
            if current > version:  # another process migrated meanwhile
                continue
            step = MIGRATIONS[version]
            if callable(step):
                step(conn)
            else:
                for statement in step.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1:d}")
    return int(found)


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the schema version recorded in the database."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def ping(conn: Any) -> None:
    """Raise if the database does not answer a trivial query (the same on both backends:
    ``store_pg`` imports it, so ``conn`` is either's connection)."""
    conn.execute("SELECT 1 FROM users LIMIT 1").fetchall()


def integrity_errors(conn: sqlite3.Connection) -> list[str]:
    """Return what PRAGMA integrity_check and foreign_key_check find wrong; empty when all is well."""
    rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    problems = [] if rows == ["ok"] else rows
    for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check"):
        problems.append(f"{table} row {rowid} refers to a missing {parent} row")
    return problems


def backup(conn: sqlite3.Connection, target: str) -> None:
    """Copy the live database to ``target`` (created 0600) with SQLite's online backup API."""
    create_private(target)
    with contextlib.closing(sqlite3.connect(target)) as dest:
        conn.backup(dest)


# -- the signing key ----------------------------------------------------------


def get_or_create_secret(conn: sqlite3.Connection, name: str, candidate: str) -> str:
    """Return the stored secret ``name``, storing ``candidate`` if there is none.

    Insert-if-absent then read, in one transaction: two processes starting at
    once agree on whichever key was stored first.
    """
    with transaction(conn):
        conn.execute(
            "INSERT INTO app_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", (name, candidate)
        )
        row = conn.execute("SELECT value FROM app_secrets WHERE name = ?", (name,)).fetchone()
    return str(row[0])


def get_secret(conn: sqlite3.Connection, name: str) -> str | None:
    """The stored secret ``name``, or None."""
    row = conn.execute("SELECT value FROM app_secrets WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def replace_secret(conn: sqlite3.Connection, name: str, value: str) -> None:
    """Store ``value`` as the secret ``name``, replacing any stored one (the operator's
    rotate-key; recorded as key.rotated)."""
    with transaction(conn):
        # The value it replaces is kept as NAME.previous, so a token signed with it can be
        # told apart from a forged one (and answered "revoked").
        conn.execute(
            "INSERT INTO app_secrets (name, value) SELECT ?, value FROM app_secrets WHERE name = ?"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name + ".previous", name),
        )
        conn.execute(
            "INSERT INTO app_secrets (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        _record(conn, None, "key.rotated", None)


# -- accounts -------------------------------------------------------------------

# An account as the stores hand it out: (id, public_id, name, admin, password_changes) of users u.
ACCOUNT_COLUMNS = "u.id, u.public_id, u.name, u.admin, u.password_changes"
SELECT_ACCOUNT = "SELECT " + ACCOUNT_COLUMNS + " FROM users u"


def account_from_row(row: Any) -> dict[str, Any] | None:
    """A row starting with the SELECT_ACCOUNT columns as a dict, or None for no row."""
    if row is None:
        return None
    return {"id": row[0], "public_id": row[1], "name": row[2], "admin": bool(row[3]), "password_changes": row[4]}


def present_account(row: Any) -> dict[str, Any]:
    """account_from_row of a row known to be there."""
    account = account_from_row(row)
    assert account is not None
    return account


def todo_from_row(row: Any) -> dict[str, Any] | None:
    """A row of (id, text, complete) as the API shows a to-do, or None for no row."""
    if row is None:
        return None
    return {"id": row[0], "text": row[1], "complete": bool(row[2])}


def session_account(conn: sqlite3.Connection, session_id: str, public_id: str, now: float) -> dict[str, Any] | None:
    """The account of a session live at ``now``, if it belongs to ``public_id``."""
    row = conn.execute(
        "SELECT " + ACCOUNT_COLUMNS + " FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id = ? AND u.public_id = ? AND s.expires_at > ?",
        (session_id, public_id, now),
    ).fetchone()
    return account_from_row(row)


def get_login(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    """The account named ``name`` (else named its NFC form) with its password hash, or None."""
    row = conn.execute(
        "SELECT " + ACCOUNT_COLUMNS + ", u.password_hash FROM users u"
        " WHERE u.name IN (?, ?) ORDER BY u.name = ? DESC LIMIT 1",
        (name, unicodedata.normalize("NFC", name), name),
    ).fetchone()
    return None if row is None else {**account_from_row(row), "password_hash": row[5]}  # type: ignore[dict-item]


def list_users(conn: sqlite3.Connection, limit: int = -1, offset: int = 0) -> list[dict[str, Any]]:
    """Return accounts in creation order; ``limit`` -1 means all."""
    rows = conn.execute(SELECT_ACCOUNT + " ORDER BY u.id LIMIT ? OFFSET ?", (limit, offset))
    return [a for a in map(account_from_row, rows) if a is not None]


def get_user(conn: sqlite3.Connection, public_id: str) -> dict[str, Any] | None:
    """Return the account with ``public_id``, or None."""
    return account_from_row(conn.execute(SELECT_ACCOUNT + " WHERE u.public_id = ?", (public_id,)).fetchone())


def get_user_by_name(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    """Return the account named exactly ``name``, or None."""
    return account_from_row(conn.execute(SELECT_ACCOUNT + " WHERE u.name = ?", (name,)).fetchone())


def create_user(
    conn: sqlite3.Connection,
    caller: Caller | None,
    public_id: str,
    name: str,
    password_hash: str,
    admin: bool,
    once: Once | None = None,
) -> dict[str, Any] | str:
    """Insert an account for an admin ``caller`` (None: the operator) and return it.

    Raise NameTaken if the name's key is in use, SessionEnded or NotAdmin if
    the caller can no longer do this; nothing is written then. ``once`` as
    for create_todo.
    """
    with transaction(conn):
        _check_caller(conn, caller, admin=True)
        kept = _claim(conn, caller.public_id, once) if caller is not None and once is not None else None
        if kept is not None:
            return kept
        _check_name_free(conn, name)
        conn.execute(
            "INSERT INTO users (public_id, name, name_key, password_hash, admin) VALUES (?, ?, ?, ?, ?)",
            (public_id, name, name_key(name), password_hash, admin),
        )
        _record(conn, caller, "account.created", public_id)
        account = {"public_id": public_id, "name": name, "admin": admin, "password_changes": 0}
        if caller is not None and once is not None:
            _keep(conn, caller.public_id, once, account)
    return account


def update_user(
    conn: sqlite3.Connection,
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
    """Change any of name, password hash and admin flag, in one transaction.

    ``caller`` acts on another account as an admin, or on its own (``public_id``
    its own) to change its password; None is the operator. A new password hash
    ends every session of the account; with ``verified_hash``, only if the hash
    is still that one (else PasswordChanged), and then ``forgive`` (name, address)
    loses the attempt that password counted, as a login's. Return the account as it now
    stands, or None if there is none; raise NameTaken, LastAdmin, SessionEnded
    or NotAdmin and change nothing. ``check(account)``, given, is called with
    the account as it stands before the change: whatever it raises refuses the
    change (a precondition, decided inside the transaction).
    """
    own = caller is not None and caller.public_id == public_id
    # An owner may change only its password, and only against the hash it proved
    # it knows; every other change, to its own account too, needs an admin now.
    own_password_only = own and verified_hash is not None and name is None and admin is None
    with transaction(conn):
        _check_caller(conn, caller, admin=not own_password_only)
        row = conn.execute(
            "SELECT id, admin, password_hash, name FROM users WHERE public_id = ?", (public_id,)
        ).fetchone()
        if row is None:
            return None
        if check is not None:
            check(present_account(conn.execute(SELECT_ACCOUNT + " WHERE u.id = ?", (row[0],)).fetchone()))
        if verified_hash is not None and row[2] != verified_hash:
            raise PasswordChanged(public_id)
        if forgive is not None:  # the password was right: its attempt is forgiven, as a login's
            _forgive_attempt(conn, *forgive)
        if admin is False and row[1] and _admin_count(conn) <= 1:
            raise LastAdmin(public_id)
        if name is not None and name != row[3]:
            _check_name_free(conn, name, row[0])
            conn.execute("UPDATE users SET name = ?, name_key = ? WHERE id = ?", (name, name_key(name), row[0]))
            _record(conn, caller, "account.renamed", public_id)
        if password_hash is not None:
            conn.execute(
                "UPDATE users SET password_hash = ?, password_changes = password_changes + 1 WHERE id = ?",
                (password_hash, row[0]),
            )
            conn.execute("DELETE FROM sessions WHERE user_id = ?", (row[0],))
            _record(conn, caller, "account.password_changed" if own else "account.password_reset", public_id)
        if admin is not None and admin != bool(row[1]):
            conn.execute("UPDATE users SET admin = ? WHERE id = ?", (admin, row[0]))
            _record(conn, caller, "account.promoted" if admin else "account.demoted", public_id)
        return account_from_row(conn.execute(SELECT_ACCOUNT + " WHERE u.id = ?", (row[0],)).fetchone())


def delete_user(
    conn: sqlite3.Connection,
    caller: Caller | None,
    public_id: str,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> bool:
    """Delete an account, its to-dos and its sessions; False if there was none.

    Raise LastAdmin, SessionEnded or NotAdmin, or what ``check(account)``
    raises (as update_user), deleting nothing at all.
    """
    with transaction(conn):
        _check_caller(conn, caller, admin=True)
        row = conn.execute("SELECT id, admin FROM users WHERE public_id = ?", (public_id,)).fetchone()
        if row is None:
            return False
        if check is not None:
            check(present_account(conn.execute(SELECT_ACCOUNT + " WHERE u.id = ?", (row[0],)).fetchone()))
        if row[1] and _admin_count(conn) <= 1:
            raise LastAdmin(public_id)
        # The to-dos and sessions go by cascade, inside this transaction; its events stay.
        conn.execute("DELETE FROM users WHERE id = ?", (row[0],))
        _record(conn, caller, "account.deleted", public_id)
    return True


def _check_caller(conn: sqlite3.Connection, caller: Caller | None, admin: bool) -> int | None:
    """Inside a write: the caller's account id if its session still exists (and, if
    ``admin``, it is still an admin); raise SessionEnded or NotAdmin otherwise."""
    if caller is None:
        return None
    row = conn.execute(
        "SELECT u.id, u.admin FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id = ? AND u.public_id = ? AND s.expires_at > ?",
        (caller.session_id, caller.public_id, caller.time),
    ).fetchone()
    if row is None:
        raise SessionEnded(caller.public_id)
    if admin and not row[1]:
        raise NotAdmin(caller.public_id)
    return int(row[0])


def _check_name_free(conn: sqlite3.Connection, name: str, user_id: int = 0) -> None:
    if conn.execute("SELECT 1 FROM users WHERE name_key = ? AND id != ?", (name_key(name), user_id)).fetchone():
        raise NameTaken(name)


def _admin_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM users WHERE admin").fetchone()[0])


# -- sessions -------------------------------------------------------------------------


def start_session(
    conn: sqlite3.Connection,
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
    """Start the session ``caller`` names for the account whose password was verified
    (``verified``: the account as get_login read it, its hash and count of password changes).

    One transaction, only if the password has not changed since (its count of
    changes is still the one read): a password changed while the login was
    hashing wins, and no session starts (False). Stores the session's first
    refresh token (its hash) and ``stronger_hash`` (the same password at
    today's cost) in place of the hash verified, unless another login stored its
    own meanwhile; clears the failed logins of (name, address) (the throttle's
    keys), gives back the attempt counted against the address, ends the account's
    oldest sessions past SESSIONS_PER_ACCOUNT, and records
    login.succeeded; with ``events_before``, prunes (``_prune``, at the caller's
    time), so a pruning that fails starts no session either.
    """
    with transaction(conn):
        # By public id too: an internal id can be handed out again (to the account
        # created after the newest was deleted), a public id never is.
        row = conn.execute(
            "SELECT password_hash, password_changes FROM users WHERE id = ? AND public_id = ?",
            (verified["id"], verified["public_id"]),
        ).fetchone()
        if row is None or row[1] != verified["password_changes"]:
            return False
        conn.execute(
            "INSERT INTO sessions (id, user_id, expires_at, refresh_hash) VALUES (?, ?, ?, ?)",
            (caller.session_id, verified["id"], expires_at, refresh_hash),
        )
        conn.execute(
            "DELETE FROM sessions WHERE user_id = ? AND id <> ? AND id NOT IN"
            " (SELECT id FROM sessions WHERE user_id = ? AND id <> ? ORDER BY expires_at DESC LIMIT ?)",
            (verified["id"], caller.session_id, verified["id"], caller.session_id, SESSIONS_PER_ACCOUNT - 1),
        )
        if stronger_hash is not None and row[0] == verified["password_hash"]:
            conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (stronger_hash, verified["id"]))
        _forgive_attempt(conn, name, address)
        _record(conn, caller, "login.succeeded", caller.public_id)
        if events_before is not None:
            _prune(conn, caller.time, events_before)
    return True


def refresh_session(
    conn: sqlite3.Connection,
    session_id: str,
    spent_hash: str,
    new_hash: str,
    now: float,
    address: str | None,
    lasting_until: float = 0.0,
    *,
    max_rotations: int,
) -> tuple[dict[str, Any], float] | None:
    """Spend the session's refresh token (by its hash) for its successor, in one transaction.

    Return (account, session end) while the session lives and ``spent_hash``
    is its current refresh token; ``spent_hash`` is then kept among the
    session's spent ones. None for no such session or one past its end;
    SessionEnding, nothing spent, for one that ends before ``lasting_until``. A
    spent token of the session presented again was stolen or replayed (RFC
    9700 4.14.2), so the whole session ends, every token issued in it
    included, and session.revoked is recorded. Any other token (one never
    issued, such as the session's id and a made-up secret: the id is in every
    access token) is None and changes nothing. Of two refreshes of one token
    at once, the second finds it spent (compare and swap). A session that has
    spent ``max_rotations`` tokens is refreshed no more (None, nothing changed;
    its replays still end it): one client refreshing in a loop cannot grow the
    spent tokens past that.
    """
    with transaction(conn):
        row = conn.execute(
            "SELECT s.expires_at, " + ACCOUNT_COLUMNS + " FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.id = ?",
            (session_id,),
        ).fetchone()
        if row is None or row[0] <= now:
            return None
        account = present_account(row[1:])
        rotated = conn.execute(
            "UPDATE sessions SET refresh_hash = ? WHERE id = ? AND refresh_hash = ?"
            " AND (SELECT count(*) FROM spent_refresh_tokens WHERE session_id = ?) < ?",
            (new_hash, session_id, spent_hash, session_id, max_rotations),
        ).rowcount
        if not rotated:
            spent = conn.execute(
                "SELECT 1 FROM spent_refresh_tokens WHERE hash = ? AND session_id = ?", (spent_hash, session_id)
            ).fetchone()
            if spent:  # presented again: end the session
                conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
                revoker = Caller(session_id, account["public_id"], address, now)
                _record(conn, revoker, "session.revoked", account["public_id"])
            return None  # a token never issued in this session changes nothing
        if row[0] < lasting_until:  # refused: the rotation is rolled back, the token stays unspent
            raise SessionEnding(account["public_id"])
        conn.execute("INSERT INTO spent_refresh_tokens (hash, session_id) VALUES (?, ?)", (spent_hash, session_id))
    return account, float(row[0])


def end_session(conn: sqlite3.Connection, caller: Caller) -> bool:
    """End the caller's session (log out): every token issued in it stops working. False if it had ended."""
    with transaction(conn):
        ended = conn.execute("DELETE FROM sessions WHERE id = ?", (caller.session_id,)).rowcount > 0
        if ended:
            _record(conn, caller, "logout", caller.public_id)
    return ended


# The live sessions one account may hold: a login past it ends the account's oldest (a
# device long unused), so one client's logins cannot grow the sessions and their spent
# refresh tokens without bound.
SESSIONS_PER_ACCOUNT = 100

# What one login prunes of each table at the most: a login adds one session and an event or
# two, so a backlog (after audit_retention_days is lowered, or a long quiet spell) drains over
# the next logins, and no login's write grows long enough to time out.
PRUNE_BATCH = 1000


def _prune(conn: sqlite3.Connection, now: float, events_before: float) -> None:
    """Inside a login's write: delete up to PRUNE_BATCH sessions past their end (their refresh
    tokens, spent ones too, go with them) and as many audit events older than ``events_before``,
    the oldest first, so no separate job is needed."""
    conn.execute(
        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at <= ? LIMIT ?)", (now, PRUNE_BATCH)
    )
    conn.execute(
        "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE time < ? ORDER BY time LIMIT ?)",
        (events_before, PRUNE_BATCH),
    )


# -- the audit trail --------------------------------------------------------------


def _record(conn: sqlite3.Connection, caller: Caller | None, action: str, target: str | None) -> None:
    """Write one audit event inside the current transaction; ``caller`` None is the operator."""
    actor: str | None
    if caller is None:
        actor, address, when = "cli", None, time.time()
    else:
        actor, address, when = caller.public_id or None, caller.address, caller.time
    conn.execute(
        "INSERT INTO audit_events (time, actor, action, target, address) VALUES (?, ?, ?, ?, ?)",
        (when, actor, action, target, address),
    )


def record_event(conn: sqlite3.Connection, caller: Caller | None, action: str, target: str | None) -> None:
    """Write one audit event in a transaction of its own (a refused login; an operator's command)."""
    with transaction(conn):
        _record(conn, caller, action, target)


def list_events(
    conn: sqlite3.Connection,
    limit: int = -1,
    offset: int = 0,
    *,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    since: float | None = None,
) -> list[dict[str, Any]]:
    """Audit events, newest first, a page at a time, filtered by any of action, actor, target and time."""
    where, values = event_filters(action, actor, target, since, "?")
    rows = conn.execute(
        "SELECT id, time, actor, action, target, address FROM audit_events"
        + where
        + " ORDER BY id DESC LIMIT ? OFFSET ?",
        (*values, limit, offset),
    )
    return [event_from_row(row) for row in rows]


def event_filters(
    action: str | None, actor: str | None, target: str | None, since: float | None, placeholder: str
) -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause of the filters given (with the backend's ``placeholder``), and their values."""
    named = (("action", action), ("actor", actor), ("target", target))
    given = [(column, value) for column, value in named if value is not None]
    clauses = [f"{column} = {placeholder}" for column, _ in given]
    clauses += [f"time >= {placeholder}"] if since is not None else []
    values = tuple(value for _, value in given) + ((since,) if since is not None else ())
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", values


def event_from_row(row: Any) -> dict[str, Any]:
    """A row of (id, time, actor, action, target, address) as a dict; time as Unix seconds."""
    return {"id": row[0], "time": row[1], "actor": row[2], "action": row[3], "target": row[4], "address": row[5]}


# -- idempotency keys ---------------------------------------------------------------

# Keys one owner keeps at most: a client creating and deleting in a loop must not
# grow the table without bound within a day.
KEYS_PER_OWNER = 1000


def _claim(conn: sqlite3.Connection, owner: str, once: Once) -> str | None:
    """Inside a create's transaction: claim ``once.key`` for ``owner`` and return None, or
    return the kept answer of the key's first use (its request was the same one).

    Raise KeyReused for another request under the key. A claim conflicting with one not
    yet committed waits for it (the unique key), so concurrent retries are answered in
    turn, never "in progress". Keys past their day are forgotten here, so no separate job
    prunes them. An owner holds at most KEYS_PER_OWNER: one more is TooManyKeys (a key is
    never forgotten within its day, so a retry is always answered as promised).
    """
    conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (once.expired_before,))
    claimed = conn.execute(
        "INSERT INTO idempotency_keys (owner, key, fingerprint, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (owner, key) DO NOTHING",
        (owner, once.key, once.fingerprint, once.now),
    ).rowcount
    if claimed:
        kept, oldest = conn.execute(
            "SELECT count(*), min(created_at) FROM idempotency_keys WHERE owner = ?", (owner,)
        ).fetchone()
        if kept > KEYS_PER_OWNER:  # the whole create is rolled back, this claim with it
            raise TooManyKeys(int(oldest - once.expired_before) + 1)  # then the oldest is past its day
        return None
    fingerprint, answer = conn.execute(
        "SELECT fingerprint, answer FROM idempotency_keys WHERE owner = ? AND key = ?", (owner, once.key)
    ).fetchone()
    if fingerprint != once.fingerprint:
        raise KeyReused(once.key)
    # The first use's answer is written in the transaction that claimed the key, and a
    # claim waits for that transaction: a committed key always has its answer.
    assert answer is not None
    return str(answer)


def _keep(conn: sqlite3.Connection, owner: str, once: Once, created: dict[str, Any]) -> None:
    """Keep the answer of a key's first use, in the create's transaction."""
    answer = once.answer(created)
    conn.execute("UPDATE idempotency_keys SET answer = ? WHERE owner = ? AND key = ?", (answer, owner, once.key))


# -- login throttling ------------------------------------------------------------


def login_failures(conn: sqlite3.Connection, name: str, address: str, since: float) -> tuple[int, float, int, float]:
    """The failed logins of (name, address) and of the address alone since ``since`` (windows
    that began before it have passed): (count, window start) for each, (0, 0.0) for none.
    Read only: what a login checks before it may even wait to hash."""
    by_name = conn.execute(
        "SELECT failures, window_start FROM login_failures WHERE name = ? AND address = ? AND window_start > ?",
        (name, address, since),
    ).fetchone()
    by_address = conn.execute(
        "SELECT failures, window_start FROM address_failures WHERE address = ? AND window_start > ?",
        (address, since),
    ).fetchone()
    name_count, name_start = (int(by_name[0]), float(by_name[1])) if by_name else (0, 0.0)
    address_count, address_start = (int(by_address[0]), float(by_address[1])) if by_address else (0, 0.0)
    return name_count, name_start, address_count, address_start


def count_login_attempt(
    conn: sqlite3.Connection, name: str, address: str, now: float, window: float
) -> tuple[int, float, int, float]:
    """Count one login attempt for (name, address) and for the address alone.

    Return (count, window start) for each. Counted before the password is
    checked, in one transaction, so concurrent attempts in any thread or
    process cannot slip past the limits together. A window that has passed
    starts afresh; rows of passed windows are pruned.
    """
    with transaction(conn):
        by_name = conn.execute(
            "INSERT INTO login_failures AS f (name, address, failures, window_start) VALUES (?, ?, 1, ?)"
            " ON CONFLICT (name, address) DO UPDATE SET"
            "  failures = CASE WHEN f.window_start <= ? THEN 1 ELSE f.failures + 1 END,"
            "  window_start = CASE WHEN f.window_start <= ? THEN excluded.window_start ELSE f.window_start END"
            " RETURNING failures, window_start",
            (name, address, now, now - window, now - window),
        ).fetchall()[0]
        by_address = conn.execute(
            "INSERT INTO address_failures AS f (address, failures, window_start) VALUES (?, 1, ?)"
            " ON CONFLICT (address) DO UPDATE SET"
            "  failures = CASE WHEN f.window_start <= ? THEN 1 ELSE f.failures + 1 END,"
            "  window_start = CASE WHEN f.window_start <= ? THEN excluded.window_start ELSE f.window_start END"
            " RETURNING failures, window_start",
            (address, now, now - window, now - window),
        ).fetchall()[0]
        conn.execute("DELETE FROM login_failures WHERE window_start <= ?", (now - window,))
        conn.execute("DELETE FROM address_failures WHERE window_start <= ?", (now - window,))
    return int(by_name[0]), float(by_name[1]), int(by_address[0]), float(by_address[1])


def _forgive_attempt(conn: sqlite3.Connection, name: str, address: str) -> None:
    """After a right password: clear (name, address)'s count; the address keeps its
    other failures, less the attempt that succeeded."""
    conn.execute("DELETE FROM login_failures WHERE name = ? AND address = ?", (name, address))
    conn.execute("UPDATE address_failures SET failures = failures - 1 WHERE address = ? AND failures > 0", (address,))


def forget_login_failures(
    conn: sqlite3.Connection, name: str | None = None, address: str | None = None, target: str | None = None
) -> int:
    """Forget the failed logins of a name (from every address), of an address (under
    every name, and its count across names), or of the two together, for the
    operator's ``unlock``; record account.unlocked (``target``: the account named, if
    any). Return how many (name, address) throttle rows went."""
    if name is None and address is None:
        raise ValueError("forget_login_failures needs a name, an address or both")
    given = [(column, value) for column, value in (("name", name), ("address", address)) if value is not None]
    with transaction(conn):
        cursor = conn.execute(
            "DELETE FROM login_failures WHERE " + " AND ".join(f"{column} = ?" for column, _ in given),
            [value for _, value in given],
        )
        count = int(cursor.rowcount)
        if address is not None and name is None:
            conn.execute("DELETE FROM address_failures WHERE address = ?", (address,))
        _record(conn, None, "account.unlocked", target)
    return count


# -- to-dos -----------------------------------------------------------------------------


def session_account_with_todos(
    conn: sqlite3.Connection,
    session_id: str,
    public_id: str,
    now: float,
    limit: int = -1,
    offset: int = 0,
    complete: bool | None = None,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """session_account's answer and that account's to-dos in id order, in one statement.

    Under waitress each statement costs far more than its SQL, so a list is
    one read. The to-dos are a page (``limit``, ``offset``), optionally only
    (in)complete ones; no session, no to-dos.
    """
    only = "" if complete is None else " AND complete = ?"
    # One row however long the page: the to-dos come as one JSON array of
    # [id, text, complete] (json_array keeps every value's type and text exact).
    row = conn.execute(
        "SELECT " + ACCOUNT_COLUMNS + ", (SELECT json_group_array(json_array(id, text, complete)) FROM"
        " (SELECT id, text, complete FROM todos WHERE owner_id = u.id" + only + " ORDER BY id LIMIT ? OFFSET ?))"
        " FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id = ? AND u.public_id = ? AND s.expires_at > ?",
        (*(() if complete is None else (complete,)), limit, offset, session_id, public_id, now),
    ).fetchone()
    if row is None:
        return None, []
    # SQLite (before 3.44) promises no order for an aggregate's input: sort here.
    todos = sorted(json.loads(row[5]))
    return account_from_row(row), [{"id": i, "text": t, "complete": bool(c)} for i, t, c in todos]


def session_account_with_todo(
    conn: sqlite3.Connection, session_id: str, public_id: str, now: float, todo_id: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """session_account's answer and that account's to-do ``todo_id`` (None if it has none such), in one statement."""
    row = conn.execute(
        "SELECT " + ACCOUNT_COLUMNS + ", t.id, t.text, t.complete FROM sessions s JOIN users u ON u.id = s.user_id"
        " LEFT JOIN todos t ON t.id = ? AND t.owner_id = u.id"
        " WHERE s.id = ? AND u.public_id = ? AND s.expires_at > ?",
        # An id past 64 bits names no row (sqlite3 cannot bind it): NULL matches none.
        (todo_id if todo_id <= MAX_ID else None, session_id, public_id, now),
    ).fetchone()
    if row is None:
        return None, None
    return account_from_row(row), None if row[5] is None else todo_from_row(row[5:])


def create_todo(
    conn: sqlite3.Connection, caller: Caller, text: str, max_todos: int, once: Once | None = None
) -> dict[str, Any] | str:
    """Insert a to-do for the caller's account and return it.

    Raise TooManyTodos if it holds ``max_todos`` already, SessionEnded if the
    session ended meanwhile. With ``once`` (an Idempotency-Key), a retry of
    the same request creates nothing and returns the first answer as kept.
    """
    with transaction(conn):
        owner_id = _check_caller(conn, caller, admin=False)
        kept = _claim(conn, caller.public_id, once) if once is not None else None
        if kept is not None:
            return kept
        (count,) = conn.execute("SELECT count(*) FROM todos WHERE owner_id = ?", (owner_id,)).fetchone()
        if count >= max_todos:
            raise TooManyTodos(caller.public_id)
        (todo_id,) = conn.execute(
            "INSERT INTO todos (owner_id, text) VALUES (?, ?) RETURNING id", (owner_id, text)
        ).fetchone()
        todo = {"id": todo_id, "text": text, "complete": False}
        if once is not None:
            _keep(conn, caller.public_id, once, todo)
    return todo


def _passes(
    conn: sqlite3.Connection, owner_id: int | None, todo_id: int | None, check: Callable[[dict[str, Any]], None]
) -> bool:
    """Inside a to-do's write: False if the owner has no such to-do, else run ``check`` on it as it stands."""
    current = todo_from_row(
        conn.execute(
            "SELECT id, text, complete FROM todos WHERE id = ? AND owner_id = ?", (todo_id, owner_id)
        ).fetchone()
    )
    if current is None:
        return False
    check(current)
    return True


def update_todo(
    conn: sqlite3.Connection,
    caller: Caller,
    todo_id: int,
    *,
    text: str | None = None,
    complete: bool | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any] | None:
    """Change the text and/or completion of the caller's to-do; None if it has none such.

    ``check(todo)``, given, is called with the to-do as it stands: whatever it
    raises refuses the change (a precondition, decided inside the transaction).
    """
    with transaction(conn):
        owner_id = _check_caller(conn, caller, admin=False)
        found = todo_id if todo_id <= MAX_ID else None
        if check is not None and not _passes(conn, owner_id, found, check):
            return None
        row = conn.execute(
            "UPDATE todos SET text = coalesce(?, text), complete = coalesce(?, complete)"
            " WHERE id = ? AND owner_id = ? RETURNING id, text, complete",
            (text, complete, found, owner_id),
        ).fetchone()
    return todo_from_row(row)


def delete_todo(
    conn: sqlite3.Connection, caller: Caller, todo_id: int, check: Callable[[dict[str, Any]], None] | None = None
) -> bool:
    """Delete the caller's to-do; False if it has none such. ``check`` as for update_todo."""
    with transaction(conn):
        owner_id = _check_caller(conn, caller, admin=False)
        found = todo_id if todo_id <= MAX_ID else None
        if check is not None and not _passes(conn, owner_id, found, check):
            return False
        deleted = conn.execute("DELETE FROM todos WHERE id = ? AND owner_id = ?", (found, owner_id)).rowcount
    return deleted > 0


# -- copying a whole database (python -m todo_wsgi copy-to) -----------------------------

# What a move carries, parents before children: an account's count of password
# changes (its ETag's part), and the idempotency keys (a retry after the move is
# still answered once). Login failures stay behind: they are at most a window's
# worth of history.
COPIED: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "users": ("id", "public_id", "name", "name_key", "password_hash", "admin", "password_changes"),
        "todos": ("id", "owner_id", "text", "complete"),
        "app_secrets": ("name", "value"),
        "sessions": ("id", "user_id", "expires_at", "refresh_hash"),
        "spent_refresh_tokens": ("hash", "session_id"),
        "audit_events": ("id", "time", "actor", "action", "target", "address"),
        "idempotency_keys": ("owner", "key", "fingerprint", "answer", "created_at"),
    }
)
BOOLEAN_COLUMNS = frozenset({"admin", "complete"})
# Tables whose ids are handed out once only (a deleted to-do's id is not reused).
NUMBERED = ("users", "todos", "audit_events")


def export_rows(conn: sqlite3.Connection) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Yield (table, row) for every row a move carries, then ("next_ids", (table, id)).

    One snapshot: BEGIN IMMEDIATE holds writers off until the last row is
    read. Booleans as bool, so either backend takes the rows as they come.
    ``next_ids`` is the id the next row of each table gets, so an id once
    used (a deleted to-do's too) is not handed out again after the move.
    """
    with transaction(conn):
        for table, columns in COPIED.items():
            flags = [name in BOOLEAN_COLUMNS for name in columns]
            for row in conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1"):
                yield table, tuple(bool(v) if flag else v for v, flag in zip(row, flags, strict=True))
        for table in NUMBERED:
            (used,) = conn.execute(
                f"SELECT max(coalesce((SELECT max(id) FROM {table}), 0),"
                " coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?), 0))",
                (table,),
            ).fetchone()
            yield "next_ids", (table, int(used) + 1)


def import_rows(conn: sqlite3.Connection, rows: Iterable[tuple[str, tuple[Any, ...]]]) -> dict[str, int]:
    """Write what export_rows yields (from either backend) into this empty database.

    One transaction: all or nothing. Raise ValueError, writing nothing, if the
    database already holds accounts or to-dos; a signing key stored by a
    server that started on the empty database is replaced. Return the number
    of rows written per table.
    """
    counts = dict.fromkeys(COPIED, 0)
    with transaction(conn):
        if conn.execute("SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM todos)").fetchone()[0]:
            raise ValueError("the target database is not empty: it already holds accounts or to-dos")
        conn.execute("DELETE FROM app_secrets")
        for table, row in rows:
            if table == "next_ids":
                # todos and audit_events are AUTOINCREMENT, with a high-water mark
                # in sqlite_sequence; users' ids are internal and follow max(id).
                name, next_id = row
                if name != "users":
                    conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (next_id - 1, name))
                    conn.execute(
                        "INSERT INTO sqlite_sequence (name, seq) SELECT ?, ?"
                        " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)",
                        (name, next_id - 1, name),
                    )
                continue
            columns = COPIED[table]
            conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", row)
            counts[table] += 1
    return counts
