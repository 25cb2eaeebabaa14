"""Database URLs the operator's commands print never show a password (copy-to, error lines)."""

from __future__ import annotations

import pytest

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
    ],
)
def test_a_printed_database_url_hides_the_password_in_user_info_and_query(url, shown):
    assert redact(url) == shown
    assert "s3cret" not in redact(url)


def test_copy_to_an_unreachable_url_with_a_query_password_never_prints_it(database, app, run_command):
    result = run_command(database, "copy-to", "postgresql://127.0.0.1:1/nothing?password=s3cret&connect_timeout=2")
    assert result.returncode == 1
    assert "s3cret" not in result.stdout + result.stderr
