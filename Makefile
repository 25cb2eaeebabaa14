# todo-wsgi: every command a developer or operator needs, each self-installing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench bench-scale clean

# The venv is (re)built when pyproject.toml changes; a fresh machine needs
# only Python 3.11 with pip and venv.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m todo_wsgi serve --listen 127.0.0.1:8080

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Speed against the server's own ceiling (needs wrk: apt-get install wrk);
# about 6 minutes. Rounds, seconds, threads: see bench/http_bench.py.
bench: $(STAMP)
	$(BIN)/python bench/inprocess.py
	$(BIN)/python bench/http_bench.py
	$(BIN)/python bench/threads.py

# Cost and memory as the data grows (1,000,000 to-dos; about 2 minutes).
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
