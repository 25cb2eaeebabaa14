"""How ``serve`` writes its log (todo_wsgi_cli.BatchingHandler): in batches, off the request's
thread, every line exactly once and in order, warnings at once, nothing left behind at close."""

from __future__ import annotations

import logging
import random
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
    handler = handler_for(stream, interval=0.01)
    with handler._writing:  # the thread waits while the lines are queued
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


def test_lines_logged_by_many_threads_while_batches_are_written_are_each_written_once_in_order(handler_for):
    class Slow(Recording):
        """Each write takes a while, so two batches written at once would interleave."""

        def write(self, text: str) -> None:
            time.sleep(random.uniform(0, 0.002))
            super().write(text)

    stream = Slow()
    handler = handler_for(stream, interval=0.001, batch=7)
    threads, per_thread = 8, 300
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


def test_a_line_writer_hides_the_database_password_as_the_handlers_filter_does(handler_for):
    from todo_wsgi_cli import Redacting

    stream = Recording()
    handler = handler_for(stream)
    handler.addFilter(Redacting("postgresql://todo:s3cretpw@db.example/todo"))
    handler.line_writer(logging.getLogger("todo_wsgi.access"))("127.0.0.1 GET /x/s3cretpw 404")
    handler.handle(record("also %s", args=("s3cretpw",)))
    handler.flush()
    assert stream.lines == ["INFO:todo_wsgi.access:127.0.0.1 GET /x/*** 404", "INFO:todo_wsgi.access:also ***"]


def test_a_line_writer_is_refused_for_a_format_with_a_time(handler_for):
    handler = handler_for(Recording())
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    with pytest.raises(ValueError, match="without a time"):
        handler.line_writer(logging.getLogger("todo_wsgi.access"))


def test_a_record_is_written_as_it_was_when_logged(handler_for):
    stream = Recording()
    handler = handler_for(stream)
    names = ["alice"]
    handler.handle(record("users: %s", args=(names,)))
    names.append("bob")
    handler.flush()
    assert stream.lines == ["INFO:todo_wsgi.access:users: ['alice']"]


def test_a_value_that_logs_while_it_is_formatted_does_not_block_the_handler(handler_for):
    stream = Recording()
    handler = handler_for(stream)

    class Noisy:
        def __str__(self) -> str:
            handler.handle(record("formatting a value", logging.WARNING))
            return "noisy"

    done = threading.Event()

    def log() -> None:
        handler.handle(record("value %s", logging.WARNING, (Noisy(),)))
        done.set()

    threading.Thread(target=log, daemon=True).start()
    assert done.wait(10), "the handler blocked"
    assert stream.lines == ["WARNING:todo_wsgi.access:formatting a value", "WARNING:todo_wsgi.access:value noisy"]


def test_a_write_interrupted_by_a_stop_keeps_its_lines_for_close(handler_for):
    class Interrupted(Recording):
        interrupt = True

        def write(self, text: str) -> None:
            if self.interrupt:
                self.interrupt = False
                raise KeyboardInterrupt
            super().write(text)

    stream = Interrupted()
    handler = handler_for(stream)
    handler.handle(record("first"))
    with pytest.raises(KeyboardInterrupt):
        handler.handle(record("stopping", logging.WARNING))
    handler.close()
    assert stream.lines == ["INFO:todo_wsgi.access:first", "WARNING:todo_wsgi.access:stopping"]


def test_after_close_each_line_is_written_as_it_comes(handler_for):
    stream = Recording()
    handler = handler_for(stream)
    handler.close()
    handler.line_writer(logging.getLogger("todo_wsgi.access"))("late")
    handler.handle(record("later"))
    assert stream.lines == ["INFO:todo_wsgi.access:late", "INFO:todo_wsgi.access:later"]


def test_a_closed_stream_is_not_reported_again_while_nothing_waits(handler_for, capsys):
    stream = Recording()
    handler = handler_for(stream, interval=0.01)
    handler.flush()
    stream.flush = None  # type: ignore[assignment,method-assign]  # calling it would fail
    time.sleep(0.1)  # ten ticks of the thread with nothing to write
    assert "Logging error" not in capsys.readouterr().err
