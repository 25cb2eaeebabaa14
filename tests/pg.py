"""A throwaway PostgreSQL server for the tests and the benchmarks.

Owns finding Debian's (or any) ``initdb``/``pg_ctl``, starting a private
cluster in a temporary directory on a loopback port (as an unprivileged user
when run as root: PostgreSQL refuses to run as root), handing out fresh
databases cloned from a migrated template, and stopping it all again. Or, when
``TODO_TEST_POSTGRES_URL`` names a server, using that one instead: it needs a
role allowed to CREATE DATABASE, and every database made here is dropped again.

Usable outside pytest, e.g. from the benchmarks::

    from tests.pg import start_cluster
    url, stop = start_cluster()          # postgresql://... of an empty database
    try:
        ...                              # create_app(database=url) / TODO_DATABASE=url
    finally:
        stop()

Must not import the application beyond ``store_pg`` (for the template's schema).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ENV_URL = "TODO_TEST_POSTGRES_URL"

HOW_TO_ENABLE = (
    "install PostgreSQL's server binaries (Debian: apt-get install postgresql, "
    "which puts initdb and pg_ctl in /usr/lib/postgresql/*/bin) or set "
    f"{ENV_URL}=postgresql://USER:PASSWORD@HOST/DB (a role allowed to CREATE DATABASE)"
)

# Settings for a disposable cluster: durability off (the data dies with the
# test run anyway), room for every app's pool plus the multi-server tests.
_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "listen_addresses": "127.0.0.1",
}


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl, newest version first, or None."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in versions]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def unavailable_reason() -> str | None:
    """Why the PostgreSQL half cannot run here, or None when it can."""
    if os.environ.get(ENV_URL):
        return None
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -e '.[test]' (it lists psycopg[binary] and psycopg_pool)"
    if find_bindir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl) found"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_database(url: str, name: str) -> str:
    """``url`` with its database (the path) replaced by ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(name)))


class Cluster:
    """One PostgreSQL server: its admin URL, fresh databases, and stop()."""

    def __init__(self, admin_url: str, stop: Callable[[], None]) -> None:
        self.admin_url = admin_url
        self._stop = stop
        self._names = itertools.count(1)
        self._prefix = f"todo_test_{os.getpid()}_{secrets.token_hex(2)}"
        self._template: str | None = None
        self._lock = threading.Lock()
        self._made: set[str] = set()
        # Databases handed back, emptied, with a connection kept open on each.
        self._spare: list[tuple[str, Any]] = []
        self._lent: dict[str, Any] = {}

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(statement)

    def url_of(self, name: str) -> str:
        """The URL of database ``name`` on this server."""
        return _with_database(self.admin_url, name)

    def create_database(self, migrated: bool = True) -> str:
        """Create a new database and return its URL.

        ``migrated`` clones a template that already holds the schema, which
        costs a file copy instead of a migration; otherwise the database is
        empty, as an operator's new one is.
        """
        with self._lock:
            name = f"{self._prefix}_{next(self._names)}"
            if migrated and self._template is None:
                self._template = self._make_template()
            template = self._template if migrated else "template0"
            # UTF8 whatever the server's default: to-do text is any Unicode but NUL.
            self._admin(f"CREATE DATABASE {name} TEMPLATE {template} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
            self._made.add(name)
        return self.url_of(name)

    def _make_template(self) -> str:
        import psycopg

        import store_pg

        name = f"{self._prefix}_template"
        self._admin(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
        self._made.add(name)
        with psycopg.connect(self.url_of(name), autocommit=True) as conn:
            store_pg.migrate(conn)
        return name

    def take_database(self) -> str:
        """A migrated, empty database for one test; give it back when done.

        CREATE DATABASE costs a tenth of a second or more; emptying a used
        one costs a few milliseconds, so databases are reused.
        """
        import psycopg

        with self._lock:
            spare = self._spare.pop() if self._spare else None
        if spare is None:
            url = self.create_database()
            spare = (url, psycopg.connect(url, autocommit=True))
        self._lent[spare[0]] = spare[1]
        return str(spare[0])

    def give_back(self, url: str) -> None:
        """Empty a database from take_database() for the next test, or drop it."""
        conn = self._lent.pop(url)
        try:
            _empty(conn)
        except Exception:
            conn.close()
            self.drop_database(url)
            return
        with self._lock:
            self._spare.append((url, conn))

    def drop_database(self, url: str) -> None:
        """Drop a database made here, ending any session still connected to it."""
        name = urlsplit(url).path.lstrip("/")
        with self._lock:
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            self._made.discard(name)

    def stop(self) -> None:
        """Drop what was made here (on a named server) and stop a private one."""
        for _, conn in self._spare + list(self._lent.items()):
            conn.close()
        self._spare.clear()
        self._lent.clear()
        with contextlib.suppress(Exception):
            for name in sorted(self._made):
                self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._made.clear()
        self._stop()


def _empty(conn: Any) -> None:
    """Make a used test database as a fresh clone of the template would be.

    Ends the sessions a test left behind, then deletes every row and restarts
    every sequence, so ids start at 1 again; one round trip. A schema the
    test changed is not repaired: the database is dropped instead (the
    caller's except).
    """
    import store_pg

    conn.execute(_EMPTY.replace("{version}", str(int(store_pg.SCHEMA_VERSION))))


_EMPTY = """
DO $$
DECLARE name text;
BEGIN
    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid();
    IF (SELECT version FROM schema_version) <> {version} THEN
        RAISE EXCEPTION 'schema changed by the test';
    END IF;
    FOR name IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_version' LOOP
        EXECUTE format('DELETE FROM %I', name);
    END LOOP;
    FOR name IN SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' LOOP
        EXECUTE format('ALTER SEQUENCE %I RESTART', name);
    END LOOP;
END
$$
"""


def start_cluster(directory: str | Path | None = None) -> tuple[str, Callable[[], None]]:
    """Start a private PostgreSQL server; return (URL of an empty database, stop).

    ``directory`` holds the data and socket (a new temporary one by default,
    removed by ``stop``). Raises RuntimeError, saying how to install
    PostgreSQL, when there is no server to run.
    """
    cluster = open_cluster(directory)
    url = cluster.create_database(migrated=False)
    return url, cluster.stop


def open_cluster(directory: str | Path | None = None) -> Cluster:
    """The server named by TODO_TEST_POSTGRES_URL, else a private one started here."""
    named = os.environ.get(ENV_URL)
    if named:
        return Cluster(named, lambda: None)
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(f"PostgreSQL is not available: {HOW_TO_ENABLE}")
    return _start_private(bindir, directory)


def _start_private(bindir: Path, directory: str | Path | None) -> Cluster:
    owned = directory is None
    root = Path(tempfile.mkdtemp(prefix="todo-pg-") if directory is None else directory)
    root.mkdir(parents=True, exist_ok=True)
    run_as = _unprivileged_user()
    password = secrets.token_urlsafe(24)
    (root / "pwfile").write_text(password + "\n")
    if run_as is not None:
        uid, gid = run_as
        os.chown(root, uid, gid)
        os.chown(root / "pwfile", uid, gid)
    data = root / "data"

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        if run_as is None:
            return subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False, timeout=120)
        return subprocess.run(
            argv, cwd=root, capture_output=True, text=True, check=False, timeout=120,
            user=run_as[0], group=run_as[1], extra_groups=[],
        )  # fmt: skip

    # --no-sync: nothing written here needs to survive a power cut.
    made = run(
        str(bindir / "initdb"), "--no-sync", "--no-instructions", "-D", str(data), "-U", "postgres",
        "--auth=scram-sha-256", f"--pwfile={root / 'pwfile'}", "-E", "UTF8", "--locale=C",
    )  # fmt: skip
    if made.returncode != 0:
        _remove(root, owned)
        raise RuntimeError(f"initdb failed: {made.stderr or made.stdout}")
    (root / "pwfile").unlink()

    # If this process dies without stop() (killed, timed out), the watchdog
    # ends the server and removes its directory, so no run leaves one behind.
    watchdog = subprocess.Popen(
        ["sh", "-c", _WATCHDOG, "watchdog", str(os.getpid()), str(data), str(root) if owned else ""],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip

    def stop() -> None:
        run(str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w")
        watchdog.kill()
        watchdog.wait()
        _remove(root, owned)

    for _attempt in range(3):  # a free port can be taken between our probe and the server's bind
        port = free_port()
        options = " ".join(f"-c {k}={v}" for k, v in {**_SERVER_SETTINGS, "port": str(port)}.items())
        options += f" -c unix_socket_directories={root}"
        started = run(
            str(bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data),
            "-l", str(root / "server.log"), "-o", options,
        )  # fmt: skip
        if started.returncode == 0:
            url = f"postgresql://postgres:{quote(password, safe='')}@127.0.0.1:{port}/postgres"
            return Cluster(url, stop)
    log = (root / "server.log").read_text(errors="replace")[-2000:] if (root / "server.log").exists() else ""
    stop()
    raise RuntimeError(f"pg_ctl start failed: {started.stderr or started.stdout}\n{log}")


# sh -c script: $1 the pid to outlive, $2 the data directory, $3 a directory to remove (or "").
_WATCHDOG = """
while kill -0 "$1" 2>/dev/null; do sleep 1; done
server=$(head -n 1 "$2/postmaster.pid" 2>/dev/null) && kill -QUIT "$server" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$server" 2>/dev/null || break; sleep 0.5; done
[ -n "$3" ] && rm -rf "$3"
"""


def _unprivileged_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and no unprivileged user (postgres or nobody) to run PostgreSQL as")


def _remove(root: Path, owned: bool) -> None:
    if owned:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A server for the length of a ``with`` block."""
    server = open_cluster()
    try:
        yield server
    finally:
        server.stop()
