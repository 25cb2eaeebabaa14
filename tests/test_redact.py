"""Database URLs the operator's commands print never show a password (copy-to, error lines)."""

from __future__ import annotations

import pytest

from tests.test_cli_errors import error_line
from todo_wsgi_cli import redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://todo:s3cret@db.example/todo", "postgresql://todo:***@db.example/todo"),
        ("postgresql://db.example/todo?password=s3cret", "postgresql://db.example/todo?password=***"),
        (
            "postgresql://todo@db.example/todo?sslmode=require&PASSWORD=s3cret&application_name=x",
            "postgresql://todo@db.example/todo?sslmode=require&password=***&application_name=x",
        ),
        ("postgresql://todo:a:b@db/todo?password=c", "postgresql://todo:***@db/todo?password=***"),
        ("postgresql://db.example/todo", "postgresql://db.example/todo"),
        # libpq decodes a query key before it reads it, and takes a repeated one.
        ("postgresql://todo@db/todo?pass%77ord=s3cret", "postgresql://todo@db/todo?password=***"),
        ("postgresql://db/todo?password=x&password=s3cret", "postgresql://db/todo?password=***&password=***"),
        ("postgresql://db/todo?sslpassword=s3cret", "postgresql://db/todo?sslpassword=***"),
        # libpq reads the user-info to its @: a password may hold ?, # or / unescaped.
        ("postgresql://todo:s3?c#r/et@db/todo", "postgresql://todo:***@db/todo"),
        ("postgresql://todo:s3%ZZcret@db/todo", "postgresql://todo:***@db/todo"),
    ],
)
def test_a_printed_database_url_hides_the_password_in_user_info_and_query(url, shown):
    assert redact(url) == shown
    assert "s3cret" not in redact(url)


def test_copy_to_an_unreachable_url_with_a_query_password_never_prints_it(database, app, run_command):
    result = run_command(database, "copy-to", "postgresql://127.0.0.1:1/nothing?password=s3cret&connect_timeout=2")
    assert result.returncode == 1
    assert "s3cret" not in result.stdout + result.stderr


BAD_ESCAPE = "postgresql://u:s3%ZZcret@127.0.0.1:1/db"


def test_a_password_libpq_cannot_decode_is_never_printed_and_copy_to_says_so_in_one_line(database, app, run_command):
    """libpq quotes the token it cannot decode: the password, in its message."""
    listed = run_command(BAD_ESCAPE, "list-users")
    copied = run_command(database, "copy-to", BAD_ESCAPE)
    for result in (listed, copied):
        assert result.returncode == 1
        assert "ZZcret" not in result.stdout + result.stderr
        assert error_line(result.stderr).startswith("error: cannot use the ")  # one line, no traceback
    assert "postgresql://u:***@127.0.0.1:1/db" in copied.stderr


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("pass%77ord=s3cret", "password=***"),
        ("password=0ther-pw&password=s3cret", "password=***&password=***"),
    ],
)
def test_a_percent_encoded_or_repeated_password_key_is_never_printed(database, app, run_command, query, shown):
    """``pass%77ord`` is ``password`` to libpq; of two, it takes the last."""
    url = f"postgresql://u@127.0.0.1:1/db?{query}&connect_timeout=2"
    listed = run_command(url, "list-users")
    copied = run_command(database, "copy-to", url)
    for result in (listed, copied):
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert result.stderr.splitlines()[-1].startswith("error: cannot use the ")
        for password in ("s3cret", "0ther-pw"):
            assert password not in result.stdout + result.stderr
    assert listed.stderr.endswith(f"(postgresql://u@127.0.0.1:1/db?{shown}&connect_timeout=2)\n")
