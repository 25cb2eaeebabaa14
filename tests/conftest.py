"""Shared fixtures: a fresh database per test, the app wrapped in wsgiref's validator.

Tests use a low PBKDF2 iteration count for speed; the production default is
exercised by the settings tests only.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.validate import validator

import pytest
from webtest import TestApp

import todo_wsgi

ITERATIONS = 1000
ADMIN_PASSWORD = "admin-password-1"
USER_PASSWORD = "user-password-1"


class FakeClock:
    """A settable clock: tests move time instead of sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def database(tmp_path: Any) -> str:
    """A fresh database for each test: a SQLite file in the test's own directory."""
    return str(tmp_path / "todo.db")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(database: str, clock: FakeClock) -> Iterator[Callable[..., todo_wsgi.TodoApp]]:
    """Build apps on the test's database; each closed when the test ends."""
    apps: list[todo_wsgi.TodoApp] = []

    def make(**settings: Any) -> todo_wsgi.TodoApp:
        settings.setdefault("database", database)
        settings.setdefault("pbkdf2_iterations", ITERATIONS)
        settings.setdefault("clock", clock)
        app = todo_wsgi.create_app(**settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app: Callable[..., todo_wsgi.TodoApp]) -> todo_wsgi.TodoApp:
    return make_app()


@pytest.fixture
def client(app: todo_wsgi.TodoApp) -> TestApp:
    """WebTest over wsgiref's validator, so PEP 3333 mistakes fail loudly."""
    return TestApp(validator(app))


def add_account(app: todo_wsgi.TodoApp, name: str, password: str, admin: bool = False) -> dict[str, Any]:
    """Create an account directly in the store, as the command line does."""
    import uuid

    password_hash = todo_wsgi.hash_password(password, app.settings.pbkdf2_iterations)
    with app.db.connection() as conn:
        return app.store.create_user(conn, str(uuid.uuid4()), name, password_hash, admin)  # type: ignore[no-any-return]


def basic(name: str, password: str) -> dict[str, str]:
    """An HTTP Basic Authorization header."""
    encoded = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def login(client: TestApp, name: str, password: str) -> str:
    """Log in and return the token."""
    response = client.post("/login", headers=basic(name, password), status=200)
    return str(response.json["token"])


@pytest.fixture
def admin(app: todo_wsgi.TodoApp) -> dict[str, Any]:
    return add_account(app, "admin", ADMIN_PASSWORD, admin=True)


@pytest.fixture
def user(app: todo_wsgi.TodoApp) -> dict[str, Any]:
    return add_account(app, "alice", USER_PASSWORD)


@pytest.fixture
def admin_headers(client: TestApp, admin: dict[str, Any]) -> dict[str, str]:
    return {"x-access-token": login(client, "admin", ADMIN_PASSWORD)}


@pytest.fixture
def user_headers(client: TestApp, user: dict[str, Any]) -> dict[str, str]:
    return {"x-access-token": login(client, "alice", USER_PASSWORD)}
