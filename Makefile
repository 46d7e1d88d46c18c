# securepipe — the README's commands. `make demo` and `make test` work on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JARS_DIR ?= .cache/jars
ROWS ?= 10000
DATE ?= $(shell date -d yesterday +%F)
PYTEST_ARGS ?=
# The suite runs on every core, one test file per worker (module fixtures stay in one process).
PYTEST_XDIST ?= -n auto --dist loadfile

export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(VENV))/bin/python

.PHONY: setup jars s3-jars system-deps demo test unit lint typecheck bench clean dist cluster-test docker-test

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/constraints.txt -e '.[dev]'
	touch $@

$(JARS_DIR)/.fetched: src/securepipe/jars.py | $(STAMP)
	$(PY) -m securepipe.jars fetch --dest $(JARS_DIR)
	touch $@

# hadoop-aws + the AWS SDK bundle (~650 MB): only an s3a:// lakehouse needs them (the tests do).
$(JARS_DIR)/.fetched-s3: src/securepipe/jars.py | $(STAMP)
	$(PY) -m securepipe.jars fetch --s3 --dest $(JARS_DIR)
	touch $@

## setup: virtualenv, package and dev tools, Delta jars (cached in .cache/jars)
setup: $(STAMP) $(JARS_DIR)/.fetched
jars: $(JARS_DIR)/.fetched
## s3-jars: the S3A jars too, for an s3a:// lakehouse
s3-jars: $(JARS_DIR)/.fetched-s3

## system-deps: Debian packages the tests use: SoftHSM2 (PKCS#11 tests), docker-compose (compose
## file validation), prometheus (promtool: alert rules), prometheus-pushgateway (metrics tests)
## and chromium (the report pages in a headless browser); needs root or sudo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_PACKAGES := softhsm2 docker-compose prometheus prometheus-pushgateway chromium
system-deps:
	@command -v softhsm2-util >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1 && \
	  command -v promtool >/dev/null 2>&1 && command -v prometheus-pushgateway >/dev/null 2>&1 && \
	  command -v chromium >/dev/null 2>&1 || \
	  { DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $(SYSTEM_PACKAGES) || \
	    { $(SUDO) apt-get update -q && \
	      DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $(SYSTEM_PACKAGES); }; }

## demo: synthetic batch → nightly job on local Spark → ./lakehouse (master key in ./.secrets)
demo: setup
	$(VENV)/bin/securepipe demo --rows $(ROWS) --date $(DATE)

## test: the whole suite (unit, integration with local Spark + Delta, e2e with spark-submit);
## installs what it needs first: the S3A jars, the Debian packages (system-deps)
test: setup s3-jars system-deps
	$(VENV)/bin/ruff check src tests jobs bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

## bench: the shipped configuration against a hand-written peer and a plain job (bench/shipped.py),
## security tax and scaling (500k-4M rows, bench/scale.py), operators, per-subject keys,
## 30 nights into one lakehouse (bench/history.py) → bench-results/*.json, docs/benchmarks.md and
## its charts (about 45 minutes on 2 cores)
BENCH_ROWS ?= 2000000
BENCH_SIZES ?= 500000,1000000,2000000,4000000
BENCH_NIGHTS ?= 30
BENCH_NIGHT_ROWS ?= 200000
BENCH_SHIPPED_SIZES ?= 1000000,4000000
bench: setup
	$(PY) bench/shipped.py --sizes $(BENCH_SHIPPED_SIZES) --out bench-results
	$(PY) bench/history.py --nights $(BENCH_NIGHTS) --rows $(BENCH_NIGHT_ROWS) --out bench-results
	$(PY) bench/scale.py --sizes $(BENCH_SIZES) --out bench-results
	$(PY) bench/operators.py --rows $(BENCH_ROWS) --out bench-results
	$(PY) bench/erasure.py --rows 1000000 --out bench-results
	$(PY) bench/summary.py

## dist: the package as a wheel for spark-submit --py-files (dist/securepipe-<version>-py3-none-any.whl)
dist: $(STAMP)
	rm -rf build
	$(PY) -m pip wheel -q --no-deps -w dist .

## cluster-test: spark-submit onto a standalone master + worker on 127.0.0.1, hardened profile
cluster-test: setup
	$(VENV)/bin/pytest tests/e2e/test_cluster.py $(PYTEST_ARGS)

## docker-test: build docker/Dockerfile with podman, run the demo in the image, then start
## docker/compose.yaml with podman-compose (secret, master, worker, nightly job) and read its tables
## back (root; installs podman, podman-compose, runc and debootstrap from Debian). Not part of
## `make test`: about 15 minutes on 2 cores.
docker-test: setup
	@command -v podman >/dev/null 2>&1 && command -v podman-compose >/dev/null 2>&1 && \
	  command -v debootstrap >/dev/null 2>&1 || \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q podman podman-compose runc debootstrap
	bash docker/podman-test.sh

unit: setup
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests jobs bench
	$(VENV)/bin/ruff format --check src tests jobs bench

typecheck: setup
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .cache lakehouse landing .pytest_cache
