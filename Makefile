# Every target installs what it needs first (pinned: pyproject.toml + constraints.txt).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SOURCES := src tests dags include devtools

.PHONY: install services emulators test test-deep test-compat test-unit lint demo up plan bench bench-stores bench-tables integration clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

## lint: ruff check + format check, mypy (strict) over src/, actionlint over .github/workflows
lint: install
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy
	$(BIN)/actionlint -shellcheck= .github/workflows/*.yml

## services: Debian's redis-server (the broker of the CeleryExecutor check, tests/e2e/test_distributed.py) when missing;
## needs root and apt-get, else that test is skipped with the reason. Pinned; the newest when the pin is gone.
REDIS_DEB := 5:7.0.15-1~deb12u10
## emulators: Azurite (npm) and fake-gcs-server (Go module proxy), pinned, under .tools/ (the stores' tests)
emulators: install
	$(BIN)/python -m devtools.emulators install

services:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && export DEBIAN_FRONTEND=noninteractive && \
	    { apt-get install -y -qq redis-server=$(REDIS_DEB) redis-tools=$(REDIS_DEB) || \
	      { echo "redis-server $(REDIS_DEB) is gone from the archive: installing the current one"; apt-get install -y -qq redis-server; }; }; \
	  else echo "redis-server not installed (needs root and apt-get): the CeleryExecutor check will be skipped"; fi; }

## test: lint, then the whole suite (unit, grammar, end-to-end through Airflow, leak checks, two Celery workers,
## a bounded run of the oracle) on TEST_WORKERS pytest-xdist workers (default 2: most tests wait on servers;
## each worker has its own), in the process time zone TEST_TZ (default Asia/Kathmandu, UTC+05:45: far from
## UTC with an odd offset, so that nothing may rely on the machine being in UTC)
TEST_WORKERS ?= 2
TEST_TZ ?= Asia/Kathmandu
test: install lint services emulators
	TZ=$(TEST_TZ) $(BIN)/python -m pytest -n $(TEST_WORKERS)

## test-deep: the oracle (tests/oracle.py) at length on PostgreSQL (ORACLE_EXAMPLES sequences of up to
## ORACLE_STEPS steps), then with each planted bug of tests/e2e/test_oracle_plants.py, which it must find
ORACLE_EXAMPLES ?= 150
ORACLE_STEPS ?= 50
test-deep: install services
	TZ=$(TEST_TZ) ORACLE_EXAMPLES=$(ORACLE_EXAMPLES) ORACLE_STEPS=$(ORACLE_STEPS) ORACLE_PLANTS=1 \
	  $(BIN)/python -m pytest -n $(TEST_WORKERS) tests/e2e/test_oracle.py tests/e2e/test_oracle_plants.py

## test-compat: the package installed into each supported Airflow (the newest release of every minor from
## the lowest pyproject.toml admits, frozen in compat/): fails if installing it changed any installed package,
## then runs the unit tests and the shipped DAG end to end there (devtools/compat.py)
COMPAT_AIRFLOW ?= 3.2.2 3.3.2
test-compat: install
	TZ=$(TEST_TZ) $(BIN)/python -m devtools.compat check $(COMPAT_AIRFLOW)

## test-unit: the unit tests alone (tests/unit: no servers, under a minute), mirroring src/
test-unit: install
	TZ=$(TEST_TZ) $(BIN)/python -m pytest tests/unit

## demo: local PostgreSQL + S3, sample data, one DAG run through Airflow, print what landed
demo: install
	$(BIN)/python -m devtools.demo

## up: like demo, then keep Airflow (standalone, 127.0.0.1) running with the UI until Ctrl-C
up: install
	$(BIN)/python -m devtools.demo --up

## bench: rows/s and peak RSS of the stream engine vs SqlToS3Operator (BENCH_ROWS, default 2000000)
bench: install
	$(BIN)/python -m devtools.bench

## bench-stores: one 512 MiB streaming upload per store client (boto3, the Azure and Google SDKs, obstore) to
## moto, Azurite and fake-gcs-server (both installed pinned under .tools/ on first use: npm, go)
bench-stores: install
	$(BIN)/python -m devtools.store_bench

## bench-tables: how long the DAG file takes to parse with 50, 500 and 1000 configured tables
bench-tables: install
	$(BIN)/python -m devtools.many_tables

## integration: the CrateDB suite against a running CrateDB + S3 (`docker compose up -d --wait`, see compose.yaml)
CRATEDB_URL ?= postgresql://crate@127.0.0.1:5432/doc
integration: install
	TZ=$(TEST_TZ) CRATEDB_URL=$(CRATEDB_URL) \
	CRATEDB_S3_ENDPOINT=$(or $(CRATEDB_S3_ENDPOINT),http://127.0.0.1:9000) \
	CRATEDB_S3_ACCESS_KEY=$(or $(CRATEDB_S3_ACCESS_KEY),minioadmin) \
	CRATEDB_S3_SECRET_KEY=$(or $(CRATEDB_S3_SECRET_KEY),minioadmin) \
	CRATEDB_S3_BUCKET=$(or $(CRATEDB_S3_BUCKET),cratedb-export) \
	$(BIN)/python -m pytest -m cratedb -v

## plan: dry run of the shipped config for DATE (default 2024-01-04)
plan: install
	$(BIN)/cratedb-export plan --date $(or $(DATE),2024-01-04)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .demo .compat
