"""How ``serve`` writes its log (todo_wsgi_cli.BatchingHandler): in batches, off the request's
thread, every line exactly once and in order, warnings at once, nothing left behind at close."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from webtest import TestApp

from todo_wsgi_cli import LOG_FORMAT, BatchingHandler


class Recording:
    """A stream that keeps each write call apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass

    @property
    def lines(self) -> list[str]:
        return "".join(self.writes).splitlines()


def record(message: str, level: int = logging.INFO, args: tuple = ()) -> logging.LogRecord:
    return logging.LogRecord("todo_wsgi.access", level, __file__, 0, message, args, None)


@pytest.fixture
def handler_for():
    made: list[BatchingHandler] = []

    def make(stream: Recording, interval: float = 3600, batch: int = 512) -> BatchingHandler:
        handler = BatchingHandler(stream, interval=interval, batch=batch)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close()


def wait_for(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_info_line_is_not_written_by_the_request_that_logs_it(handler_for):
    stream = Recording()
    handler = handler_for(stream)
    for n in range(3):
        handler.handle(record(f"line {n}"))
    assert stream.writes == []


def test_the_handlers_thread_writes_the_waiting_lines_in_one_call_in_order(handler_for):
    stream = Recording()
    handler = handler_for(stream, interval=0.05)
    for n in range(3):
        handler.handle(record(f"line {n}"))
    wait_for(lambda: stream.writes)
    assert stream.writes == ["".join(f"INFO:todo_wsgi.access:line {n}\n" for n in range(3))]


def test_a_warning_is_written_at_once_after_every_line_before_it(handler_for):
    stream = Recording()
    handler = handler_for(stream)
    handler.handle(record("served"))
    handler.handle(record("disk %s", logging.WARNING, ("full",)))
    assert stream.lines == ["INFO:todo_wsgi.access:served", "WARNING:todo_wsgi.access:disk full"]


def test_a_full_batch_is_written_at_once(handler_for):
    stream = Recording()
    handler = handler_for(stream, batch=3)
    for n in range(3):
        handler.handle(record(f"line {n}"))
    assert len(stream.writes) == 1 and len(stream.lines) == 3


def test_close_writes_what_is_left_and_stops_the_thread_and_a_second_close_does_nothing(handler_for):
    stream = Recording()
    handler = handler_for(stream)
    handler.handle(record("last"))
    handler.close()
    assert stream.lines == ["INFO:todo_wsgi.access:last"]
    handler._writer.join(10)
    assert not handler._writer.is_alive()
    handler.close()
    assert stream.lines == ["INFO:todo_wsgi.access:last"]


def test_a_record_that_cannot_be_formatted_is_reported_and_the_others_are_written(handler_for, capsys):
    stream = Recording()
    handler = handler_for(stream)
    handler.handle(record("before"))
    handler.handle(record("%d lines", args=("not a number",)))
    handler.handle(record("after"))
    handler.flush()
    assert stream.lines == ["INFO:todo_wsgi.access:before", "INFO:todo_wsgi.access:after"]
    assert "not a number" in capsys.readouterr().err  # logging's handleError: the bad record on stderr


def test_lines_logged_by_many_threads_while_batches_are_written_are_each_written_once(handler_for):
    stream = Recording()
    handler = handler_for(stream, interval=0.001, batch=7)
    threads, per_thread = 8, 500
    start = threading.Barrier(threads)

    def log(t: int) -> None:
        start.wait()
        for n in range(per_thread):
            handler.handle(record(f"{t}.{n}"))

    workers = [threading.Thread(target=log, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    handler.close()
    lines = [line.rpartition(":")[2] for line in stream.lines]
    assert sorted(lines) == sorted(f"{t}.{n}" for t in range(threads) for n in range(per_thread))
    for t in range(threads):  # each thread's own lines in the order it logged them
        assert [line for line in lines if line.startswith(f"{t}.")] == [f"{t}.{n}" for n in range(per_thread)]


def test_a_stream_that_fails_is_reported_and_the_next_batch_is_written(handler_for, capsys):
    class Failing(Recording):
        fail = True

        def write(self, text: str) -> None:
            if self.fail:
                self.fail = False
                raise OSError(28, "No space left on device")
            super().write(text)

    stream = Failing()
    handler = handler_for(stream, interval=0.01)
    handler.handle(record("lost"))
    handler.flush()
    assert "No space left on device" in capsys.readouterr().err
    handler.handle(record("written"))
    wait_for(lambda: stream.writes)
    assert stream.lines == ["INFO:todo_wsgi.access:written"]


def test_a_line_writer_queues_the_line_the_handler_would_write_for_its_loggers_info_record(handler_for):
    stream = Recording()
    handler = handler_for(stream)
    logger = logging.getLogger("todo_wsgi.access")
    handler.line_writer(logger)("2026-12-06T12:00:00.000Z 127.0.0.1 GET /todo 200 0.3ms -")
    handler.flush()
    made = logging.LogRecord(
        logger.name, logging.INFO, __file__, 0, "2026-12-06T12:00:00.000Z 127.0.0.1 GET /todo 200 0.3ms -", (), None
    )
    assert stream.writes == [logging.Formatter(LOG_FORMAT).format(made) + "\n"]


def test_lines_and_records_come_out_in_the_order_they_were_queued(handler_for):
    stream = Recording()
    handler = handler_for(stream)
    write = handler.line_writer(logging.getLogger("todo_wsgi.access"))
    write("first")
    handler.handle(record("second"))
    write("third")
    handler.handle(record("fourth", logging.ERROR))
    assert [line.rpartition(":")[2] for line in stream.lines] == ["first", "second", "third", "fourth"]


def test_a_full_batch_of_lines_is_written_at_once(handler_for):
    stream = Recording()
    handler = handler_for(stream, batch=2)
    write = handler.line_writer(logging.getLogger("todo_wsgi.access"))
    write("one")
    assert stream.writes == []
    write("two")
    assert len(stream.lines) == 2


def test_under_serves_writer_the_access_loggers_level_still_decides_whether_a_line_is_made(make_app, handler_for):
    app = make_app()
    stream = Recording()
    handler = handler_for(stream)
    app.write_access_line = handler.line_writer(app.access_log)
    client = TestApp(app)
    client.get("/healthz")
    handler.flush()
    assert [line.split(" ")[2:5] for line in stream.lines] == [["GET", "/healthz", "200"]]
    level = app.access_log.level
    app.access_log.setLevel(logging.WARNING)
    try:
        client.get("/healthz")
    finally:
        app.access_log.setLevel(level)
    handler.flush()
    assert len(stream.lines) == 1


def test_serve_hands_each_access_line_to_its_handler_without_making_a_record(tmp_path, monkeypatch, capsys):
    import waitress

    import todo_wsgi_cli

    seen: list[logging.LogRecord] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    watcher = Seen()

    def fake_serve(app, **kwargs):  # one request, then "stopped"
        logging.getLogger("todo_wsgi.access").addHandler(watcher)
        try:
            TestApp(app).get("/healthz")
        finally:
            logging.getLogger("todo_wsgi.access").removeHandler(watcher)

    monkeypatch.setattr(waitress, "serve", fake_serve)
    monkeypatch.setenv("TODO_PBKDF2_ITERATIONS", "1000")
    assert todo_wsgi_cli.main(["--database", str(tmp_path / "todo.db"), "serve", "--listen", "127.0.0.1:0"]) == 0
    assert seen == []  # no record went through the access logger
    written = [line for line in capsys.readouterr().err.splitlines() if line.startswith("INFO:todo_wsgi.access:")]
    assert [line.split(" ")[2:5] for line in written] == [["GET", "/healthz", "200"]]
