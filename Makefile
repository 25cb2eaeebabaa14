# todo-wsgi: every command a developer or operator needs, each self-installing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: `make run` installs what serving needs (PyJWT, waitress);
# `make test` adds the test extra. Each is redone when the metadata changes.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# make run LISTEN=127.0.0.1:9000 serves elsewhere.
LISTEN ?= 127.0.0.1:8080
# One CPU for the server (the last one) where taskset exists: about twice the
# requests/s on a small VM (docs/performance.md). Without taskset, unpinned.
PIN := $(shell command -v taskset >/dev/null 2>&1 && echo "taskset -c $$(( $$(nproc) - 1 ))")

.PHONY: run lint test bench bench-scale clean

# A fresh machine needs only Python 3.11 or later with pip and venv.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(RUN_STAMP)
	$(PIN) $(BIN)/python -m todo_wsgi serve --listen $(LISTEN)

# Style and types first: a lint failure fails the tests.
lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every test, on SQLite and (where initdb or TODO_TEST_POSTGRES_URL is found)
# PostgreSQL, with the line coverage of the service's modules (at least 95%),
# spread over the cores (pytest-xdist; at most 4 workers, each with its own
# throwaway PostgreSQL server). docs/testing.md says what each file holds.
test: lint
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 --dist worksteal \
		--cov --cov-report=term-missing:skip-covered --cov-fail-under=95

# Speed against the server's own ceiling, then SQLite against PostgreSQL and
# two servers on one PostgreSQL (needs wrk and, for the last, initdb: apt-get
# install wrk postgresql); about 20 minutes. docs/performance.md has the figures.
# HTTP and threads twice: every server on one CPU, as make run serves (taskset),
# then unpinned.
bench: $(TEST_STAMP)
	$(BIN)/python bench/inprocess.py
	$(BIN)/python bench/http_bench.py --server-cpu last
	$(BIN)/python bench/http_bench.py
	$(BIN)/python bench/threads.py --server-cpu last
	$(BIN)/python bench/threads.py
	$(BIN)/python bench/pg_bench.py
	$(BIN)/python bench/login_flood.py
	$(BIN)/python bench/full_account.py

# Cost and memory as the data grows (1,000,000 to-dos; about 2 minutes).
bench-scale: $(TEST_STAMP)
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
