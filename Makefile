# todo-wsgi: every command a developer or operator needs, each self-installing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run lint test bench bench-scale clean

# The venv is (re)built when pyproject.toml changes; a fresh machine needs
# only Python 3.11 with pip and venv.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# taskset keeps the server on one CPU: about twice the requests/s on a small VM (docs/performance.md).
run: $(STAMP)
	taskset -c $$(( $$(nproc) - 1 )) $(BIN)/python -m todo_wsgi serve --listen 127.0.0.1:8080

# Style and types first: a lint failure fails the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every test, on SQLite and (where initdb or TODO_TEST_POSTGRES_URL is found)
# PostgreSQL, with the line coverage of the service's modules (at least 95%),
# spread over the cores (pytest-xdist; at most 4 workers, each with its own
# throwaway PostgreSQL server).
test: lint
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 --dist worksteal \
		--cov --cov-report=term-missing:skip-covered --cov-fail-under=95

# Speed against the server's own ceiling, then SQLite against PostgreSQL and
# two servers on one PostgreSQL (needs wrk and, for the last, initdb: apt-get
# install wrk postgresql); about 20 minutes. Rounds, seconds, threads:
# see bench/http_bench.py and bench/pg_bench.py.
# HTTP and threads twice: every server on one CPU, as make run serves (taskset),
# then unpinned.
bench: $(STAMP)
	$(BIN)/python bench/inprocess.py
	$(BIN)/python bench/http_bench.py --server-cpu last
	$(BIN)/python bench/http_bench.py
	$(BIN)/python bench/threads.py --server-cpu last
	$(BIN)/python bench/threads.py
	$(BIN)/python bench/pg_bench.py

# Cost and memory as the data grows (1,000,000 to-dos; about 2 minutes).
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
