"""The operator's side of todo-wsgi: ``python -m todo_wsgi COMMAND`` and ``serve``.

Owns the command line (argument parsing, prompts, the one-line ``error:``
messages), logging set-up and serving under waitress. Imports the app
(``todo_wsgi``) and is never imported by it: an embedder's ``import
todo_wsgi`` pays for the request path only.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from todo_wsgi import (
    HTTPError,
    Settings,
    TodoApp,
    account_name,
    backend_for,
    create_app,
    hash_password,
    password_problem,
)


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
    try:
        name = account_name(args.name)
    except HTTPError as error:
        print(f"error: {error.message.replace('Field ', '')}", file=sys.stderr)
        return 1
    problem = password_problem(password)
    if problem:
        print(f"error: {problem.replace('Field ', '')}", file=sys.stderr)
        return 1
    password_hash = hash_password(password, app.settings.pbkdf2_iterations)
    with app.db.connection() as conn:
        try:
            user = app.store.create_user(conn, None, str(uuid.uuid4()), name, password_hash, args.admin)
        except app.store.NameTaken:
            print(f"error: the name {args.name!r} is already taken", file=sys.stderr)
            return 1
    role = "admin" if args.admin else "user"
    print(f"created {role} {user['name']} ({user['public_id']})")
    return 0


# waitress.serve's own default (it calls logging.basicConfig()), so the lines
# read the same under ``serve`` and under ``waitress-serve``.
LOG_FORMAT = "%(levelname)s:%(name)s:%(message)s"


def configure_logging(stream: Any = None) -> logging.Handler:
    """Log INFO and above to ``stream`` (standard error), as waitress-serve does; return the handler."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def cmd_serve(app: TodoApp, args: argparse.Namespace) -> int:
    """Serve under waitress with limits that bound what one client can take."""
    import waitress

    handler = configure_logging()
    # SIGTERM stops waitress as Ctrl-C does (it catches SystemExit).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # waitress refuses trusted_proxy_headers=None: name the proxy settings only when a proxy is set.
    proxy = os.environ.get("TODO_TRUSTED_PROXY")
    proxy_settings: dict[str, Any] = {}
    if proxy:
        headers = os.environ.get("TODO_TRUSTED_PROXY_HEADERS", "x-forwarded-for")
        proxy_settings = {"trusted_proxy": proxy, "trusted_proxy_headers": headers}
    try:
        waitress.serve(
            app,
            listen=args.listen,
            threads=args.threads,
            # Bounds on one client's reach (docs/security.md).
            connection_limit=100,
            channel_timeout=30,
            max_request_header_size=16384,
            max_request_body_size=app.settings.max_body_bytes + 1024,
            **proxy_settings,
            clear_untrusted_proxy_headers=True,
            ident="todo-wsgi",
        )
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
        if app.store.update_user(conn, None, user["public_id"], password_hash=password_hash) is None:
            print(f"error: the account {args.name!r} was deleted meanwhile", file=sys.stderr)
            return 1
    print(f"password set for {user['name']} ({user['public_id']}); its sessions have ended")
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
    except Exception as exc:
        if not isinstance(exc, OSError) and not app.store.unavailable(exc):
            raise
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
    """Copy this database into an empty one at URL: accounts, to-dos, signing key, sessions."""
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
        f"{counts['sessions']} sessions to {redact(args.url)}; "
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
        description="Copy every account (with its password hash and public id), every to-do "
        "(with its id), the signing key and the live sessions into the empty database at URL, in one "
        "transaction; refuse one that already holds accounts or to-dos. Tokens issued before the copy "
        "work against it. Stop the servers first: writes made during the copy are not carried.",
    )
    copy_to.add_argument("url", metavar="URL", help="postgresql://USER:PASSWORD@HOST/DB (or a SQLite file)")
    serve = commands.add_parser("serve", help="serve the API under waitress")
    serve.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    # 4, from bench/threads.py (README, "Performance"): as many requests/s as 2 or 8
    # on 2 cores, and two logins hashing at once still leave two threads serving.
    serve.add_argument("--threads", type=int, default=4, help="waitress worker threads (default 4)")
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
