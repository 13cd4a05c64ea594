# twinmon: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lock pin-images venv demo test test-unit test-js test-integration bench lint services-stop clean chaos audit

venv: $(STAMP)

# Every package comes from requirements/dev.lock, pinned and hash-checked (pip refuses a file whose hash differs);
# twinmon itself is installed on top without resolving anything.
$(STAMP): pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

## Pin every third-party image in deploy/ to the digest its registry serves now (needs the registries and Go).
pin-images:
	bash deploy/local/pin-images.sh

## Re-resolve requirements/*.lock after a change to pyproject.toml's dependencies (needs PyPI; uv from PyPI).
lock:
	bash deploy/local/lock.sh

## Run the monitor on simulated patients with a local Kafka broker and Redis (Ctrl-C stops everything).
demo: venv
	bash deploy/local/demo.sh

## axe-core for the page's accessibility check in the browser test, from npm, as package-lock.json pins it.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## The care-team page's JavaScript (feed/static/board.js) under Node's built-in test runner.
test-js:
	node --test tests/js/

## The whole test suite, unit and integration, against real Kafka and Redis that it starts itself. PYTEST_WORKERS
## processes (pytest-xdist) share one broker and one Redis (tests/conftest.py); PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 3
test: venv node_modules/.installed test-js
	bash deploy/local/kafka.sh fetch
	bash deploy/local/chromium.sh
	$(BIN)/pytest -n $(PYTEST_WORKERS) --durations=15 tests

## Fault tests, long variants: more load, ten SIGKILLs, three Redis and two Kafka restarts (figures printed).
chaos: venv
	bash deploy/local/kafka.sh fetch
	TWINMON_CHAOS=1 $(BIN)/pytest -s tests/e2e/test_faults.py

test-unit: venv test-js
	$(BIN)/pytest tests/unit tests/test_architecture.py

## Throughput (vs raw consume and Faust alone), latency, memory, recovery, scale-out on the local broker and Redis.
## BENCH_ARGS=--quick for a short run; BENCH_ARGS='--only latency' for one stage (twinmon bench --help).
bench: venv
	bash deploy/local/kafka.sh fetch
	$(BIN)/python -m bench.kalman
	$(BIN)/twinmon bench $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

## The supply chain: the lock's hashes and yanked pins against PyPI, known vulnerabilities (pip-audit where a
## vulnerability service answers, PyPI's advisories of latest releases, an offline floor). Exit 3: incomplete.
audit: venv
	bash deploy/local/audit.sh

clean:
	rm -rf $(VENV) .twinmon .pytest_cache node_modules
