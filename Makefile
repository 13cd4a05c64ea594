# twinmon: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-unit test-integration bench lint services-stop clean chaos audit

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the monitor on simulated patients with a local Kafka broker and Redis (Ctrl-C stops everything).
demo: venv
	bash deploy/local/demo.sh

## The whole test suite, unit and integration, against real Kafka and Redis that it starts itself.
test: venv
	bash deploy/local/kafka.sh fetch
	bash deploy/local/chromium.sh
	$(BIN)/pytest tests

## Fault tests, long variants: more load, ten SIGKILLs, three Redis and two Kafka restarts (figures printed).
chaos: venv
	bash deploy/local/kafka.sh fetch
	TWINMON_CHAOS=1 $(BIN)/pytest -s tests/integration/test_faults.py

test-unit: venv
	$(BIN)/pytest tests/unit

## Throughput (vs raw consume and Faust alone), latency, memory, recovery, scale-out on the local broker and Redis.
## BENCH_ARGS=--quick for a short run; BENCH_ARGS='--only latency' for one stage (twinmon bench --help).
bench: venv
	bash deploy/local/kafka.sh fetch
	$(BIN)/python -m tests.bench.kalman
	$(BIN)/twinmon bench $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check streams twin_state alerts feed tests
	$(BIN)/mypy

## Known vulnerabilities in the installed packages: pip-audit (needs PyPI's JSON API or OSV), offline floor.
## Not part of `make test`: it needs a vulnerability service that CI may not reach.
audit: venv
	bash deploy/local/audit.sh

clean:
	rm -rf $(VENV) .twinmon .pytest_cache
