# Two commands for a new user: `make dev` (run the all-in-one server) and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test lint typecheck unit venv clean bench-store interop-deps bench bench-quick bench-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The official clients of other languages and Apache RocketMQ's own jars, fetched from their registries
# (Maven Central, the Go module proxy) into caches outside the repo; rebuilt only when their sources change.
interop-deps: $(STAMP)
	$(BIN)/python bench/peers/apache_rocketmq.py fetch
	$(BIN)/python tests/interop/java_driver.py build
	$(BIN)/python tests/interop/go_driver.py build

unit: $(STAMP) interop-deps
	$(BIN)/pytest -q

test: lint typecheck unit

dev: $(STAMP)
	$(BIN)/tidemq dev

bench-store: $(STAMP)
	$(BIN)/python bench/store_bench.py --runs 3

bench-deps: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'

# tidemq and Apache RocketMQ side by side -> bench/results/, docs/benchmarks.md, docs/img/ (JDK 17 + Maven needed)
bench: bench-deps
	$(BIN)/python bench/run.py --full --profile

bench-quick: bench-deps
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
