"""The serve command's log handler: lines in batches, none lost (configure_logging)."""

from __future__ import annotations

import io
import logging
import sys

import pytest

import todo_wsgi


@pytest.fixture
def batched():
    """A BatchedStreamHandler on a StringIO whose timer never fires during a test; closed at the end."""
    stream = io.StringIO()
    handler = todo_wsgi.BatchedStreamHandler(stream, interval=3600, batch=3)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    try:
        yield handler, stream
    finally:
        handler.close()


def record(level, message):
    return logging.LogRecord("todo_wsgi.access", level, __file__, 0, message, None, None)


def test_batched_handler_holds_info_lines_until_flushed(batched):
    handler, stream = batched
    handler.handle(record(logging.INFO, "GET /todo 200"))
    assert stream.getvalue() == ""
    handler.flush()
    assert stream.getvalue() == "INFO GET /todo 200\n"


def test_batched_handler_writes_a_full_batch_at_once(batched):
    handler, stream = batched
    for n in range(3):
        handler.handle(record(logging.INFO, f"line {n}"))
    assert stream.getvalue() == "INFO line 0\nINFO line 1\nINFO line 2\n"


def test_batched_handler_writes_warnings_at_once_after_the_waiting_lines(batched):
    handler, stream = batched
    handler.handle(record(logging.INFO, "before"))
    handler.handle(record(logging.ERROR, "boom"))
    assert stream.getvalue() == "INFO before\nERROR boom\n"


class CountingFormatter(logging.Formatter):
    """A formatter that counts its calls."""

    calls = 0

    def format(self, record):
        self.calls += 1
        return super().format(record)


def test_batched_handler_logs_an_argument_that_can_change_as_it_was_when_logged(batched):
    handler, stream = batched
    handler.setFormatter(formatter := CountingFormatter("%(message)s"))
    changing = ["before"]
    handler.handle(logging.LogRecord("other", logging.INFO, __file__, 0, "saw %s", (changing,), None))
    assert formatter.calls == 1
    changing[0] = "after"
    handler.flush()
    assert stream.getvalue() == "saw ['before']\n"


def test_batched_handler_formats_a_record_with_an_exception_at_once(batched):
    handler, stream = batched
    handler.setFormatter(formatter := CountingFormatter("%(message)s"))
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("other", logging.INFO, __file__, 0, "failed", None, sys.exc_info())
    handler.handle(failed)
    assert formatter.calls == 1
    handler.flush()
    assert stream.getvalue().startswith("failed\nTraceback")


def test_batched_handler_reports_a_line_that_cannot_be_formatted_and_writes_the_rest_in_order(batched, monkeypatch):
    handler, stream = batched
    reported = []
    monkeypatch.setattr(handler, "handleError", reported.append)
    bad = logging.LogRecord("other", logging.INFO, __file__, 0, "%d", ("x",), None)
    handler.handle(record(logging.INFO, "first"))
    handler.handle(bad)
    handler.handle(record(logging.INFO, "third"))
    handler.flush()
    assert stream.getvalue() == "INFO first\nINFO third\n"
    assert reported == [bad]


def test_batched_handler_writes_what_is_left_on_close():
    stream = io.StringIO()
    handler = todo_wsgi.BatchedStreamHandler(stream, interval=3600)
    handler.handle(record(logging.INFO, "last"))
    handler.close()
    assert stream.getvalue() == "last\n"


def test_configure_logging_sends_the_access_log_to_the_stream_in_the_serve_format():
    stream, root = io.StringIO(), logging.getLogger()
    level = root.level
    handler = todo_wsgi.configure_logging(stream)
    try:
        logging.getLogger("todo_wsgi.access").info("GET /healthz 200 0.1ms -")
        handler.flush()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(" INFO todo_wsgi.access GET /healthz 200 0.1ms -")


def test_log_formatter_writes_the_time_as_the_standard_formatter_does():
    standard, cached = logging.Formatter(todo_wsgi.LOG_FORMAT), todo_wsgi.LogFormatter(todo_wsgi.LOG_FORMAT)
    for created in (1_700_000_000.25, 1_700_000_000.999, 1_700_000_001.0, 1_600_000_000.5):
        line = record(logging.INFO, "GET / 200")
        line.created, line.msecs = created, (created - int(created)) * 1000
        assert cached.format(line) == standard.format(line)


def test_batched_handler_can_be_closed_twice_as_logging_shutdown_does_at_exit():
    stream = io.StringIO()
    handler = todo_wsgi.BatchedStreamHandler(stream, interval=3600)
    handler.handle(record(logging.INFO, "last"))
    handler.close()
    handler.close()  # logging.shutdown closes every handler again at exit
    assert stream.getvalue() == "last\n"
