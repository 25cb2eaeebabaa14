"""bench/compare_revisions.py, bench/login_flood.py and bench/instructions.py: the parts that need
neither wrk nor valgrind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import compare_revisions
import instructions
import login_flood
import revserve


def test_a_revision_given_twice_is_numbered_in_the_report():
    one = revserve.Revision("HEAD", "abc", "/x")
    assert revserve.labels([one, one]) == ["HEAD (abc) #1", "HEAD (abc) #2"]
    assert revserve.labels([one, revserve.Revision("worktree", "working tree", "/y")]) == [
        "HEAD (abc)",
        "worktree (working tree)",
    ]


def test_percentile_is_nearest_rank():
    values = [float(n) for n in range(1, 101)]
    assert login_flood.percentile(values, 99) == 99.0
    assert login_flood.percentile([3.0, 1.0, 2.0], 99) == 3.0


@pytest.mark.skipif(not (Path(revserve.REPO) / ".git").exists(), reason="not a git checkout")
def test_compare_in_process_serves_each_revision_its_own_code(capsys, monkeypatch):
    monkeypatch.setattr(revserve, "stop_on_signals", lambda: None)  # leave the test runner's signals alone
    # HEAD is exported by git archive, worktree is served in place: both seeded over HTTP.
    argv = ["HEAD", "worktree", "--no-http", "--inprocess", "--rounds", "1", "--batch", "20", "--iterations", "1000"]
    assert compare_revisions.main(argv) == 0
    out = capsys.readouterr().out
    assert "/rev0-" in out and str(Path(revserve.REPO) / "todo_wsgi.py") in out
    rows = [line for line in out.splitlines() if line.startswith(("| list |", "| get |"))]
    assert len(rows) == 4 and all(line.endswith("x |") for line in rows)


@pytest.fixture
def worktree(tmp_path):
    """This working tree as a revision, with the settings of a database that holds its admin."""
    rev = revserve.Revision(revserve.WORKTREE, "working tree", revserve.REPO)
    database = str(tmp_path / "todo.db")
    env = revserve.environment(rev, revserve.settings(database, 1000))
    revserve.create_admin(rev, env, database)
    return rev, env


@pytest.mark.skipif(not (Path(revserve.REPO) / ".git").exists(), reason="not a git checkout")
def test_make_run_serves_a_revision_by_its_own_serve_command_and_its_logging(tmp_path, worktree):
    rev, env = worktree
    log = tmp_path / "server.log"
    with revserve.Server(rev, env, 2, str(log), serve="make-run") as server:
        assert server.proc is not None and server.proc.args[1:4] == ["-m", "todo_wsgi", "serve"]
        seeded = revserve.seed(server.port)
        assert len(seeded.todo_ids) == 3
    # Stopped by SIGTERM: serve wrote its batched access lines before it exited, the last
    # request's (seed's list) among them.
    lines = [line for line in log.read_text().splitlines() if line.startswith("INFO:todo_wsgi.access:")]
    assert lines[-1].split(" ")[2:5] == ["GET", "/todo", "200"]


@pytest.mark.skipif(not (Path(revserve.REPO) / ".git").exists(), reason="not a git checkout")
def test_a_restarted_server_is_a_new_process_on_the_same_database(tmp_path, worktree):
    rev, env = worktree
    with revserve.Server(rev, env, 2, str(tmp_path / "server.log")) as server:
        seeded = revserve.seed(server.port)
        first = server.proc
        server.restart()
        assert first is not None and first.poll() is not None  # the first process ended
        assert server.proc is not first and server.proc is not None and server.proc.poll() is None
        # The seeded token and to-dos still answer: same database, same signing key.
        status, body = revserve.request(server.port, "GET", f"/todo/{seeded.todo_ids[0]}", token=seeded.reader_token)
        assert status == 200 and body["todo"]["id"] == seeded.todo_ids[0]


def test_an_unknown_way_to_serve_is_refused():
    with pytest.raises(ValueError, match="serve must be one of"):
        revserve.Server(revserve.Revision("x", "x", "/x"), {}, 1, "/dev/null", serve="gunicorn")


def test_instructions_per_request_are_the_difference_of_two_runs_over_the_difference_of_their_requests():
    assert instructions.per_request((300, 1_000_000), (1300, 3_500_000)) == 2500.0


def test_a_callgrind_total_is_read_from_its_totals_or_summary_line(tmp_path):
    out = tmp_path / "callgrind.out"
    out.write_text("# callgrind format\nevents: Ir\nfn=main\n1 5\ntotals: 123456\n")
    assert instructions.callgrind_total(str(out)) == 123456
    out.write_text("events: Ir\nsummary: 99\n")
    assert instructions.callgrind_total(str(out)) == 99
    out.write_text("events: Ir\n")
    with pytest.raises(ValueError, match="no totals line"):
        instructions.callgrind_total(str(out))


def test_instructions_refuses_a_longer_run_no_longer_than_the_shorter():
    with pytest.raises(SystemExit):
        instructions.parse_args(["HEAD", "--few", "300", "--many", "300"])
