# mi-worker — two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PY      = $(BIN)/python
STAMP   = $(VENV)/.installed
TSTAMP  = $(VENV)/.installed-test

.PHONY: install install-test system-deps run test test-fast lint bench bench-quick wheelhouse clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[odbc]'
	touch $(STAMP)

install: $(STAMP)                 ## venv with mi-worker (SQLite needs nothing else)

$(TSTAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[odbc,test]'
	touch $(TSTAMP)

install-test: $(TSTAMP)

system-deps:                      ## unixODBC + psqlODBC; Chromium for the dashboard browser test
	@sh deploy/scripts/odbc-deps.sh
	@if [ "$$(id -u)" = 0 ]; then sh deploy/scripts/psqlodbc-nolog.sh; fi
	@sh deploy/scripts/browser-deps.sh

run: install                      ## embedded SQLite + built-in sandbox gateway
	$(BIN)/mi-worker run

lint: install-test                ## ruff + the T-SQL parse gate
	$(BIN)/ruff check mi_worker tests $(wildcard bench)
	$(PY) -m pytest -q tests/static/test_tsql_parse.py

# The suite runs in TEST_JOBS processes (pytest-xdist; each has its own PostgreSQL template
# and sandbox ports), then, one at a time, the tests that must not share the machine: serial
# (they stop the shared PostgreSQL or build wheels in build/) and slow (several worker
# processes each: beside other tests their heartbeats starve on 2 cores and leases run out).
TEST_JOBS ?= 3
test: install-test system-deps    ## the whole suite (SQLite, PostgreSQL; SQL Server if Docker)
	$(BIN)/ruff check mi_worker tests $(wildcard bench)
	$(PY) -m pytest -q -ra -n $(TEST_JOBS) --dist loadgroup -m "not serial and not slow" $(PYTEST_ARGS)
	$(PY) -m pytest -q -ra -m "serial or slow" $(PYTEST_ARGS) || [ $$? = 5 ]  # 5: none selected

test-fast: install-test           ## unit + per-statement tests on SQLite only (seconds)
	MI_WORKER_TEST_DIALECTS=sqlite $(PY) -m pytest -q -x tests/unit tests/queries $(PYTEST_ARGS)

bench: install-test system-deps   ## throughput/latency benchmark, writes bench/results/
	$(PY) -m bench $(BENCH_ARGS)

bench-quick: install-test system-deps
	$(PY) -m bench --quick

# make wheelhouse [TARGET=win_amd64-py39|…py313|manylinux_x86_64-py3XX|manylinux_aarch64-py3XX]
# [EXTRAS=odbc,gm]: the complete wheel set for that server, markers evaluated for it, verified.
TARGET ?= host
EXTRAS ?= odbc
WHEELHOUSE ?= $(if $(filter host,$(TARGET)),wheelhouse,wheelhouse/$(TARGET))
wheelhouse: install               ## wheels for an offline hospital server (TARGET=…, EXTRAS=…)
	$(PY) deploy/wheelhouse.py build --target $(TARGET) --extras $(EXTRAS) --out $(WHEELHOUSE)

clean:
	rm -rf $(VENV) build dist wheelhouse *.egg-info .pytest_cache .ruff_cache
