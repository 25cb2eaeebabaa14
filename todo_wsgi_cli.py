"""The operator's side of todo-wsgi: ``python -m todo_wsgi COMMAND`` and ``serve``.

Owns the command line (argument parsing, the environment file, prompts, the
one-line ``error:`` messages), logging set-up and serving under waitress.
Imports the app (``todo_wsgi``) and is never imported by it: an embedder's
``import todo_wsgi`` pays for the request path only.

Every failure of a command ends in one line on standard error, ``error: ...``,
naming the cause and the file or address concerned, and a non-zero exit
(argparse's usage line may come first for a mistyped command line).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import errno
import getpass
import logging
import os
import re
import secrets
import shlex
import signal
import sqlite3
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import unquote

from todo_wsgi import (
    SIGNING_KEY_NAME,
    HTTPError,
    Settings,
    TodoApp,
    account_name,
    backend_for,
    create_app,
    hash_password,
    iso_utc,
    password_problem,
    path_for_log,
    throttle_key,
    throttle_name,
)


class CommandError(Exception):
    """A failure the operator can act on: ``main`` prints it as one ``error:`` line."""


def one_line(text: object) -> str:
    """``text`` with every run of white space (libpq's messages hold newlines and tabs) as one space."""
    return " ".join(str(text).split())


def is_postgres(database: str) -> bool:
    return database.startswith(("postgresql://", "postgres://"))


def describe(database: str) -> str:
    """The database as the operator should read it: an absolute path, or a URL without its password."""
    if is_postgres(database):
        return redact(database)
    return str(Path(database.removeprefix("sqlite:///")).absolute())


def redact(url: str) -> str:
    """A database URL fit to print: every password replaced by ***.

    Parsed as libpq parses it, not as a web URL: the user-info runs to the last
    ``@`` (a password may hold ``?``, ``#``, ``/`` or ``@`` unescaped), and a
    query key is percent-decoded before it is compared (``pass%77ord`` is
    ``password`` to libpq); ``password`` and ``sslpassword``, in any case and
    however often, are hidden. Any password string left anywhere is hidden too,
    so a URL libpq would split otherwise shows none either.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return scrub(url, url)
    at = rest.rfind("@")
    colon = rest.find(":")
    if 0 <= colon < at:
        rest = rest[:colon] + ":***" + rest[at:]
    head, question, query = rest.partition("?")
    if question:
        pairs = [
            f"{unquote(key).strip().lower()}=***" if _secret_key(key) and equals else key + equals + value
            for key, equals, value in (pair.partition("=") for pair in query.split("&"))
        ]
        rest = head + "?" + "&".join(pairs)
    return scrub(f"{scheme}://{rest}", url)


def _secret_key(key: str) -> bool:
    """Whether a URL query key names a password to libpq (``password``, ``sslpassword``), however escaped."""
    return unquote(key).strip().lower() in ("password", "sslpassword")


def url_passwords(url: str) -> set[str]:
    """Every string of ``url`` that is, or may be, a password: as written and percent-decoded,
    from the user-info (to the first or the last ``@``) and from each password key of the query."""
    _, sep, rest = url.partition("://")
    if not sep:
        return set()
    found: set[str] = set()
    for at in {rest.find("@"), rest.rfind("@")} - {-1}:
        _user, colon, password = rest[:at].partition(":")
        if colon:
            found.add(password)
    for start in {rest.find("?"), rest.find("?", rest.rfind("@") + 1)} - {-1}:
        for pair in rest[start + 1 :].split("&"):
            key, equals, value = pair.partition("=")
            if equals and _secret_key(key):
                found.add(value)
    found |= {unquote(text) for text in found}
    return {text for text in found if text}


def scrub(text: object, *urls: str) -> str:
    """``text`` (a driver's message, say) with every password of ``urls`` replaced by ***:
    libpq quotes what it cannot parse, a password included."""
    return _hide(str(text), _longest_first(urls))


def _longest_first(urls: tuple[str, ...]) -> list[str]:
    return sorted(set().union(*map(url_passwords, urls)), key=len, reverse=True)


def _hide(text: str, passwords: list[str]) -> str:
    for password in passwords:
        text = text.replace(password, "***")
    return text


def driver_error(error: BaseException) -> bool:
    """Whether ``error`` comes from a database driver (psycopg, its pool, sqlite3), not from this code."""
    psycopg = sys.modules.get("psycopg")
    return isinstance(error, sqlite3.Error) or (psycopg is not None and isinstance(error, psycopg.Error))


class Redacting(logging.Filter):
    """Hides the passwords of database URLs in every record a handler writes, its traceback included."""

    def __init__(self, *urls: str) -> None:
        super().__init__()
        self.passwords = _longest_first(urls)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.passwords:  # a SQLite path, a URL without a password: nothing to hide
            return True
        record.msg, record.args = self.hide(record.getMessage()), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.hide(record.exc_text)
        if record.stack_info:
            record.stack_info = self.hide(record.stack_info)
        return True

    def hide(self, text: str) -> str:
        """``text`` with each password replaced by ``***``."""
        return _hide(text, self.passwords)


@contextlib.contextmanager
def redacted_logs(*urls: str) -> Iterator[None]:
    """Hide the passwords of ``urls`` in what the root logger's handlers (or logging's
    last resort, when there are none) write while the block runs."""
    rule = Redacting(*urls)
    handlers = [*logging.getLogger().handlers, *([logging.lastResort] if logging.lastResort else [])]
    for handler in handlers:
        handler.addFilter(rule)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(rule)


# -- the environment file ----------------------------------------------------------

ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_env_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines as systemd's ``EnvironmentFile=`` reads them.

    Blank lines and lines starting with ``#`` or ``;`` are skipped; white
    space around the key and the value is dropped; a value in single quotes
    is taken as it is, one in double quotes with ``\\"`` and ``\\\\`` unescaped.
    No shell expansion, as in systemd.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CommandError(f"cannot read the environment file {path}: {reason}") from exc
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, equals, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not ENV_KEY.fullmatch(key):
            raise CommandError(f"{path} line {number}: expected KEY=VALUE, got {one_line(raw)!r}")
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        values[key] = value
    return values


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Run the block with ``values`` in ``os.environ`` (over what was there), as systemd
    starts the service; put the environment back afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- the database a command works on ---------------------------------------------------


def check_database_path(database: str, must_exist: bool) -> bool:
    """Refuse a SQLite path this process cannot use, before SQLite says something vaguer.

    Return True when the database does not exist yet and will be created.
    SQLite writes journal files beside the database (WAL mode), so its
    directory must be writable even to read it.
    """
    if is_postgres(database):
        return False
    path = Path(describe(database))
    directory = path.parent
    if path.exists() and not path.is_file():
        raise CommandError(f"the database {path} is not a file")
    if not path.exists() and must_exist:
        raise CommandError(f"no database at {path} (give --database, --env-file or TODO_DATABASE)")
    if not directory.is_dir():
        raise CommandError(f"cannot create the database {path}: there is no directory {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        verb = "use" if path.exists() else "create"
        raise CommandError(
            f"cannot {verb} the database {path}: its directory {directory} is not writable by this user "
            "(SQLite keeps its journal files there); run as the account that owns it"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise CommandError(f"cannot use the database {path}: the file is not readable and writable by this user")
    owner = directory.stat().st_uid
    if os.geteuid() == 0 and owner != 0:
        # Root could write, but the files SQLite makes (the database, its journals)
        # would be root's, and the service running as the directory's owner could not.
        name = _user_name(owner)
        raise CommandError(
            f"the database directory {directory} belongs to {name}: run this as that user "
            f"(sudo -u {name} ...), so the files SQLite writes there stay {name}'s"
        )
    return not path.exists()


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def open_app(database: str | None) -> TodoApp:
    """``create_app`` with the settings of the environment, its failures as CommandError."""
    try:
        return create_app(database=database)
    except (ValueError, RuntimeError) as exc:
        where = Settings.resolve(database=database).database
        said = one_line(scrub(exc, where))
        named = f" ({describe(where)})" if is_postgres(where) and describe(where) not in said else ""
        raise CommandError(said + named) from exc
    except sqlite3.DatabaseError as exc:  # the store opens the file at once
        where = describe(Settings.resolve(database=database).database)
        raise CommandError(
            f"cannot open the database {where}: {exc} (not a SQLite database, or damaged: restore it from a backup)"
        ) from exc
    except Exception as exc:
        where = Settings.resolve(database=database).database
        if not is_postgres(where):
            raise
        # psycopg's own errors while the store checks and migrates (a role without rights, say).
        raise CommandError(
            f"cannot use the PostgreSQL database {describe(where)}: {one_line(scrub(exc, where))}"
        ) from exc


# -- prompts ----------------------------------------------------------------------------


def read_new_password(stdin: Any = None) -> str:
    """One line from standard input when it is not a terminal, else asked twice."""
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        line = str(stdin.readline())
        if not line:
            raise CommandError("no password: standard input ended before a line was read; nothing was changed")
        return line.rstrip("\r\n")
    try:
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Password (again): ")
    except (KeyboardInterrupt, EOFError) as exc:
        raise CommandError("no password given (the prompt was interrupted); nothing was changed") from exc
    if second != first:
        raise CommandError("the passwords do not match; nothing was changed")
    return first


def checked_password() -> str:
    """A new password, read and held to the API's rules."""
    password = read_new_password()
    problem = password_problem(password)
    if problem:
        raise CommandError(problem.replace("Field ", ""))
    return password


def find_account(app: TodoApp, name: str) -> dict[str, Any]:
    with app.db.connection() as conn:
        user = app.store.get_user_by_name(conn, name)
    if user is None:
        raise CommandError(f"no account is named {name!r} in {describe(app.settings.database)}")
    return dict(user)


# -- the commands -------------------------------------------------------------------------


def cmd_create_user(app: TodoApp, args: argparse.Namespace) -> int:
    """Create an account from the command line; say in which database."""
    password_hash = hash_password(args.password, app.settings.pbkdf2_iterations)
    with app.db.connection() as conn:
        try:
            user = app.store.create_user(conn, None, str(uuid.uuid4()), args.name, password_hash, args.admin)
        except app.store.NameTaken as exc:
            raise CommandError(f"the name {args.name!r} is already taken in {describe(app.settings.database)}") from exc
    role = "admin" if args.admin else "user"
    where = describe(app.settings.database)
    new = " (a new database, created now)" if args.created else ""
    print(f"created {role} {user['name']} ({user['public_id']}) in {where}{new}")
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
    user = find_account(app, args.name)
    password_hash = hash_password(checked_password(), app.settings.pbkdf2_iterations)
    with app.db.connection() as conn:
        if app.store.update_user(conn, None, user["public_id"], password_hash=password_hash) is None:
            raise CommandError(f"the account {args.name!r} was deleted meanwhile")
    print(f"password set for {user['name']} ({user['public_id']}); its sessions have ended")
    return 0


def cmd_delete_user(app: TodoApp, args: argparse.Namespace) -> int:
    """Delete an account and its to-dos; never the last admin."""
    user = find_account(app, args.name)
    with app.db.connection() as conn:
        try:
            deleted = app.store.delete_user(conn, None, user["public_id"])
        except app.store.LastAdmin as exc:
            raise CommandError(f"{args.name!r} is the last admin; promote another account first") from exc
    if not deleted:
        raise CommandError(f"the account {args.name!r} was deleted meanwhile")
    print(f"deleted {user['name']} ({user['public_id']}) and its to-dos; its sessions have ended")
    return 0


def cmd_promote(app: TodoApp, args: argparse.Namespace) -> int:
    """Make an account an admin."""
    return set_admin(app, args.name, True)


def cmd_demote(app: TodoApp, args: argparse.Namespace) -> int:
    """Take an account's admin rights; never the last admin's."""
    return set_admin(app, args.name, False)


def set_admin(app: TodoApp, name: str, admin: bool) -> int:
    user = find_account(app, name)
    with app.db.connection() as conn:
        try:
            updated = app.store.update_user(conn, None, user["public_id"], admin=admin)
        except app.store.LastAdmin as exc:
            raise CommandError(f"{name!r} is the last admin; promote another account first") from exc
    if updated is None:
        raise CommandError(f"the account {name!r} was deleted meanwhile")
    print(f"{user['name']} ({user['public_id']}) is {'an admin' if admin else 'no longer an admin'}")
    return 0


def cmd_unlock(app: TodoApp, args: argparse.Namespace) -> int:
    """Clear the login throttle of a name (every address, or one), or of an address."""
    if args.name is None and args.address is None:
        raise CommandError("unlock needs a NAME, --address ADDR, or both")
    address = throttle_key(args.address) if args.address is not None else None
    with app.db.connection() as conn:
        # As login finds it: by the name given or its NFC form.
        account = app.store.get_login(conn, args.name) if args.name is not None else None
        target = account["public_id"] if account is not None else None
        name = throttle_name(args.name) if args.name is not None else None
        count = app.store.forget_login_failures(conn, name=name, address=address, target=target)
    whom = " from ".join(
        part for part in (args.name and repr(args.name), args.address and f"address {args.address}") if part
    )
    print(f"unlocked {whom}: {count} throttle record(s) cleared")
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
    except RuntimeError as exc:  # PostgreSQL: the store says to use pg_dump (into the PATH given, quoted for a shell)
        raise CommandError(str(exc).replace(str(partial), shlex.quote(str(target)))) from exc
    except Exception as exc:
        if not isinstance(exc, OSError) and not app.store.unavailable(exc):
            raise
        partial.unlink(missing_ok=True)
        raise CommandError(f"cannot write {target}: {exc}") from exc
    print(f"backed up {describe(app.settings.database)} to {target} ({target.stat().st_size} bytes)")
    return 0


def cmd_check(app: TodoApp, args: argparse.Namespace) -> int:
    """Report the schema version and the database's integrity; 1 if anything is wrong."""
    try:
        with app.db.connection() as conn:
            version = app.store.schema_version(conn)
            problems = app.store.integrity_errors(conn)
    except sqlite3.DatabaseError as exc:
        raise CommandError(
            f"the database {describe(app.settings.database)} is damaged ({exc}); restore it from a backup"
        ) from exc
    expected = app.store.SCHEMA_VERSION
    if version != expected:
        problems.insert(0, f"schema version {version}, but this code expects {expected}")
    print(f"database: {describe(app.settings.database)}")
    print(f"schema version: {version} (this code: {expected})")
    for problem in problems:
        print(f"problem: {problem}")
    print("integrity: ok" if not problems else f"integrity: {len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_copy_to(app: TodoApp, args: argparse.Namespace) -> int:
    """Copy this database into an empty one at URL: accounts, to-dos, signing key, sessions, audit trail."""
    # Every failure, the driver's included, is one line without a password of
    # either URL: libpq quotes what it cannot parse (a bad %-escape in the password).
    urls, doing = (args.url, app.settings.database), "use the database"
    try:
        target_store = backend_for(args.url)
        target = target_store.open_database(args.url, 1)
        doing = "copy to"
        try:
            with app.db.connection() as source, target.connection() as conn:
                counts = target_store.import_rows(conn, app.store.export_rows(source))
        finally:
            target.close()
    except (ValueError, RuntimeError) as exc:  # no driver for the URL; a target that is not empty
        raise CommandError(one_line(scrub(exc, *urls))) from exc
    except Exception as exc:
        if not driver_error(exc):
            raise
        raise CommandError(f"cannot {doing} {redact(args.url)}: {one_line(scrub(exc, *urls))}") from exc
    print(
        f"copied {counts['users']} accounts, {counts['todos']} to-dos, the signing key, "
        f"{counts['sessions']} sessions, {counts['spent_refresh_tokens']} spent refresh tokens, "
        f"{counts['audit_events']} audit events and "
        f"{counts['idempotency_keys']} idempotency keys to {redact(args.url)}; "
        "point TODO_DATABASE there and start the servers"
    )
    return 0


# -- serving ------------------------------------------------------------------------------

# waitress.serve's own default (it calls logging.basicConfig()), so the lines
# read the same under ``serve`` and under ``waitress-serve``.
LOG_FORMAT = "%(levelname)s:%(name)s:%(message)s"


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes its lines in batches, from a thread of its own: the one
    way ``serve`` takes the access line's write off the request's thread.

    A write per line is a system call per request, and on one CPU (as ``make run``
    serves) each lets the server's other threads in mid-request. Here a request only
    queues a finished line: a record's, formatted on the thread that logged it (so a
    value that changes later, or a formatting that logs, behaves as with any handler),
    or under ``serve`` the app's access line itself (``line_writer``: no record made at
    all). The handler's thread writes what waits every ``interval`` seconds in one call;
    the logging thread does so at once when ``batch`` lines wait or for a record above
    INFO (a warning or a traceback comes with every line before it, in order).
    ``close()`` (``serve`` on stopping, ``logging.shutdown`` at exit) writes what is left;
    from then on each line is written as it comes.
    """

    def __init__(self, stream: Any = None, interval: float = 0.2, batch: int = 512) -> None:
        super().__init__(stream)
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.batch = batch
        self._pending: collections.deque[str] = collections.deque()  # append, popleft: thread-safe
        self._writing = threading.Lock()  # one batch at a time, so lines keep their order
        self._stopping = threading.Event()  # not _closed: logging.Handler uses that name
        self._writer = threading.Thread(target=self._write_every, args=(interval,), name="log-writer", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record's line; write the batch now if the record is above INFO or the batch is full."""
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._queue(line, now=record.levelno > logging.INFO)

    def line_writer(self, logger: logging.Logger) -> Callable[[str], None]:
        """A function that queues a message as this handler would write an INFO record of
        ``logger`` with it, without making the record: the app's ``write_access_line`` under
        ``serve``. Whether to write one is still the logger's level to decide (the app asks
        it); of the filters, the handler's ``Redacting`` ones apply (the logger's own and
        other handlers are not consulted). The handler's format must not show a time."""
        if self.formatter is not None and self.formatter.usesTime():
            raise ValueError("line_writer needs a format without a time: each line would carry the same one")
        mark = "\x00"
        head, _, tail = self.format(logging.LogRecord(logger.name, logging.INFO, "", 0, mark, (), None)).partition(mark)
        tail += self.terminator
        hiders = [rule.hide for rule in self.filters if isinstance(rule, Redacting) and rule.passwords]

        def write(message: str) -> None:
            for hide in hiders:  # none with SQLite or a URL without a password
                message = hide(message)
            self._queue(head + message + tail)

        return write

    def _queue(self, line: str, now: bool = False) -> None:
        self._pending.append(line)
        if now or len(self._pending) >= self.batch or self._stopping.is_set():
            self.flush()

    def flush(self) -> None:
        """Write the waiting lines in one call, then flush the stream."""
        with self._writing:
            lines = []
            while self._pending:
                lines.append(self._pending.popleft())
            if not lines:
                return
            try:
                self.stream.write("".join(lines))
                if hasattr(self.stream, "flush"):
                    self.stream.flush()
            except Exception:
                # As StreamHandler.emit: logging's own report on standard error, never the caller's failure.
                self.handleError(logging.makeLogRecord({"msg": f"(writing {len(lines)} log lines)"}))
            except BaseException:
                # Interrupted (SIGTERM's SystemExit, Ctrl-C on the main thread): the lines wait for close().
                self._pending.extendleft(reversed(lines))
                raise

    def _write_every(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            self.flush()

    def close(self) -> None:
        """Write what is left, stop the writing thread, and write each later line as it comes."""
        self._stopping.set()
        try:
            self.flush()
        finally:
            super().close()


def configure_logging(stream: Any = None, database: str = "", app: TodoApp | None = None) -> BatchingHandler:
    """Log INFO and above to ``stream`` (standard error), in waitress-serve's format, in batches
    (``BatchingHandler``); return the handler, which the caller closes when done. With ``app``,
    its access lines go straight to the handler's queue (``line_writer``), as ``serve`` has them.

    No line shows a password of the ``database`` URL, a traceback's included."""
    handler = BatchingHandler(stream)
    handler.addFilter(Redacting(database))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    if app is not None:
        app.write_access_line = handler.line_writer(app.access_log)
    return handler


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def listen_address(value: str) -> str:
    """``--listen HOST:PORT``, checked here so a mistake is named, not served on another port."""
    host, colon, port = value.rpartition(":")
    example = f"127.0.0.1:{port if port.isdigit() else 8080}"
    if not colon:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT; for example {example}")
    if not host.strip("[]"):
        raise argparse.ArgumentTypeError(
            f"{value!r} names no host; for example {example} (or 0.0.0.0:{port} for every interface)"
        )
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: the port must be a number from 0 to 65535 (0: any free port)")
    return value


LISTEN_FAILURES = MappingProxyType(
    {
        errno.EADDRINUSE: "the address is already in use (is another server running there?)",
        errno.EADDRNOTAVAIL: "the address is not one of this machine's",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
    }
)


def cmd_serve(app: TodoApp, args: argparse.Namespace) -> int:
    """Serve under waitress with limits that bound what one client can take."""
    import waitress

    # waitress refuses trusted_proxy_headers=None: name the proxy settings only when a proxy is set.
    proxy = os.environ.get("TODO_TRUSTED_PROXY")
    proxy_settings: dict[str, Any] = {}
    if proxy:
        headers = os.environ.get("TODO_TRUSTED_PROXY_HEADERS", "x-forwarded-for")
        proxy_settings = {"trusted_proxy": proxy, "trusted_proxy_headers": headers}
    handler = configure_logging(database=app.settings.database, app=app)
    # SIGTERM stops waitress as Ctrl-C does (its run() catches SystemExit).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        # waitress.serve binds first (where these errors come from), then serves until stopped.
        waitress.serve(
            app,
            listen=args.listen,
            threads=args.threads,
            # Bounds on one client's reach (docs/security.md), derived from the settings.
            connection_limit=100,
            channel_timeout=30,
            max_request_header_size=16384,
            max_request_body_size=app.settings.max_body_bytes + 1024,
            **proxy_settings,
            clear_untrusted_proxy_headers=True,
            # No Server header: it tells a client nothing it needs, names the software to a
            # scanner, and is one more header to build on every answer.
            ident=None,
        )
    except OSError as exc:
        reason = LISTEN_FAILURES.get(exc.errno or 0, one_line(exc.strerror or exc))
        raise CommandError(f"cannot listen on {args.listen}: {reason}") from exc
    except ValueError as exc:  # waitress: a host name that does not resolve
        raise CommandError(f"cannot listen on {args.listen}: {exc}") from exc
    finally:
        handler.close()
        logging.getLogger().removeHandler(handler)
    return 0


def cmd_rotate_key(app: TodoApp, args: argparse.Namespace) -> int:
    """Store a new signing key; each server takes it up when it next starts."""
    if app.settings.secret_key is not None:
        raise CommandError(
            "TODO_SECRET_KEY is set, so the stored key is not used: change TODO_SECRET_KEY instead and restart"
        )
    with app.db.connection() as conn:
        app.store.replace_secret(conn, SIGNING_KEY_NAME, secrets.token_urlsafe(48))
    print(
        f"stored a new signing key in {describe(app.settings.database)}; restart each server to take it up "
        "(access tokens signed with the old key then stop working; sessions live on, so clients refresh)"
    )
    return 0


def cmd_audit(app: TodoApp, args: argparse.Namespace) -> int:
    """Print the audit trail, oldest first, one tab-separated line each."""
    since = None
    if args.since is not None:
        try:
            moment = datetime.datetime.fromisoformat(args.since)
        except ValueError as exc:
            raise CommandError(f"--since {args.since!r} is not an ISO 8601 time (e.g. 2026-12-01T00:00:00Z)") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        since = moment.timestamp()
    with app.db.connection() as conn:
        events = app.store.list_events(conn, since=since)
    for event in reversed(events):
        fields = (iso_utc(event["time"]), event["action"], event["actor"], event["target"], event["address"])
        # Escaped as the access log escapes a path: no field can forge a tab or a line.
        print("\t".join("-" if value is None else path_for_log(str(value)) for value in fields))
    return 0


# -- the command line ---------------------------------------------------------------------

COMMANDS: Mapping[str, Callable[[TodoApp, argparse.Namespace], int]] = MappingProxyType(
    {
        "create-user": cmd_create_user,
        "list-users": cmd_list_users,
        "set-password": cmd_set_password,
        "delete-user": cmd_delete_user,
        "promote": cmd_promote,
        "demote": cmd_demote,
        "unlock": cmd_unlock,
        "rotate-key": cmd_rotate_key,
        "audit": cmd_audit,
        "backup": cmd_backup,
        "check": cmd_check,
        "copy-to": cmd_copy_to,
        "serve": cmd_serve,
    }
)

# Commands for a database that exists: a mistyped path must not create an
# empty one, and then back it up or call it healthy.
EXISTING_DATABASE_COMMANDS = frozenset(COMMANDS) - {"create-user", "serve"}


class Parser(argparse.ArgumentParser):
    """argparse, with its complaint as one ``error:`` line after the usage."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def version() -> str:
    try:
        return metadata.version("todo-wsgi")
    except metadata.PackageNotFoundError:  # a checkout run without installing it
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m todo_wsgi`` argument parser."""
    # --database and --env-file go before or after the command alike; given
    # after it (SUPPRESS: not given there), they win over the ones before.
    common = Parser(add_help=False)
    common.add_argument(
        "--database",
        default=argparse.SUPPRESS,
        help="SQLite file or postgresql:// URL (default: $TODO_DATABASE or todo.db)",
    )
    common.add_argument(
        "--env-file",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="read TODO_* settings from PATH (KEY=VALUE lines, as systemd's EnvironmentFile=) before the environment",
    )
    parser = Parser(prog="python -m todo_wsgi", description="todo-wsgi operator commands", parents=[common])
    parser.add_argument("--version", action="version", version=f"todo-wsgi {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=description or help, parents=[common])

    create = command("create-user", "create an account; password from stdin or prompted twice")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="make the account an admin")
    command(
        "list-users",
        "list every account",
        "Print one tab-separated line per account: public id, role (admin or user), name.",
    )
    set_password = command(
        "set-password",
        "set an account's password; password from stdin or prompted twice",
        "Set the password of the account NAME, read as one line from standard input when it is "
        "not a terminal, else prompted twice. Every token issued to the account before stops working.",
    )
    set_password.add_argument("name")
    delete = command("delete-user", "delete an account and its to-dos (never the last admin)")
    delete.add_argument("name")
    promote = command("promote", "make an account an admin")
    promote.add_argument("name")
    demote = command("demote", "take an account's admin rights (never the last admin's)")
    demote.add_argument("name")
    unlock = command(
        "unlock",
        "clear the login throttle of a name, an address, or a name from one address",
        "Clear the failed-login counts of NAME from every address, of --address ADDR under every "
        "name, or of NAME from ADDR when both are given. NAME is the name as typed at login.",
    )
    unlock.add_argument("name", nargs="?", default=None)
    command(
        "rotate-key",
        "store a new signing key, taken up by each server when it next starts",
        "Replace the signing key stored in the database. Each server takes it up when it next starts: "
        "access tokens signed with the old key stop working there, sessions live on, so clients refresh. "
        "Refused when TODO_SECRET_KEY is set (change that instead).",
    )
    audit = command(
        "audit",
        "print the audit trail, one event a line",
        "Print the audit trail, oldest first, one tab-separated line per event: time (UTC), action, "
        "actor, target, client address ('-' where there is none).",
    )
    audit.add_argument("--since", metavar="ISO-TIME", help="only events at or after this time, e.g. 2026-12-01T00:00Z")
    unlock.add_argument("--address", metavar="ADDR", help="the client address (as in the access log)")
    backup = command(
        "backup",
        "copy the SQLite database to PATH, safely while serving",
        "Copy the SQLite database to PATH with SQLite's online backup API: a consistent "
        "snapshot, safe while the service is running. PATH is replaced only once the copy is whole. "
        "On PostgreSQL, use pg_dump instead.",
    )
    backup.add_argument("path", metavar="PATH")
    command(
        "check",
        "check the database's integrity and schema version",
        "Open the database (applying any migration this code brings), run its integrity check and "
        "compare its schema version with this code's; exit 1 if anything is wrong.",
    )
    copy_to = command(
        "copy-to",
        "copy this database into an empty one at URL (the move to PostgreSQL)",
        "Copy every account (with its password hash and public id), every to-do (with its id), the "
        "signing key, the live sessions and the audit trail into the empty database at URL, in one "
        "transaction; refuse one that already holds accounts or to-dos. Tokens issued before the copy "
        "work against it. Stop the servers first: writes made during the copy are not carried.",
    )
    copy_to.add_argument("url", metavar="URL", help="postgresql://USER:PASSWORD@HOST/DB (or a SQLite file)")
    serve = command("serve", "serve the API under waitress")
    serve.add_argument(
        "--listen",
        type=listen_address,
        default="127.0.0.1:8080",
        help="HOST:PORT (default 127.0.0.1:8080; port 0: any free port)",
    )
    # 4, from bench/threads.py (docs/performance.md): as many requests/s as 2 or 8
    # on 2 cores, and two logins hashing at once still leave two threads serving.
    serve.add_argument("--threads", type=int, default=4, help="waitress worker threads (default 4)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the parsed command with its settings in the environment."""
    try:
        database = Settings.resolve(database=args.database).database
    except ValueError as exc:  # a setting that is not a number, say
        where = f" (from {args.env_file})" if args.env_file else ""
        raise CommandError(f"{one_line(exc)}{where}") from exc
    created = check_database_path(database, must_exist=args.command in EXISTING_DATABASE_COMMANDS)
    if args.command == "create-user":
        # Asked before the database is opened: an interrupted prompt leaves no new file behind.
        try:
            args.name = account_name(args.name)
        except HTTPError as error:
            raise CommandError(error.message.replace("Field ", "")) from error
        args.password = checked_password()
        args.created = created
    with redacted_logs(database, getattr(args, "url", "")):
        return run_command(args, database)


def run_command(args: argparse.Namespace, database: str) -> int:
    """Open the database and run the command on it."""
    app = open_app(args.database)
    try:
        return COMMANDS[args.command](app, args)
    except Exception as exc:
        if not app.store.unavailable(exc):
            raise
        raise CommandError(
            f"the database {describe(database)} cannot be used: {one_line(scrub(exc, database))}"
        ) from exc
    finally:
        app.close()


def main(argv: list[str] | None = None) -> int:
    """Run one operator command; return its exit status."""
    args = build_parser().parse_args(argv)
    args.database, args.env_file = getattr(args, "database", None), getattr(args, "env_file", None)
    try:
        values = read_env_file(args.env_file) if args.env_file else {}
        with environment(values):
            return run(args)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
