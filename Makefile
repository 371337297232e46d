# The few commands a person types. Everything else is `llmhub --help`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
# The CPU build of torch lies on the build machines' disk; elsewhere it comes from PyTorch's index.
TORCH_WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu)

export LLMHUB_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5433/llmhub
export LLMHUB_KAFKA_BOOTSTRAP ?= 127.0.0.1:9092
# psycopg2 named explicitly: SQLAlchemy 2.1 defaults to psycopg 3, whose server-side parameters
# break dagster-postgres's `NOTIFY run_events, %(id)s`.
export LLMHUB_DAGSTER_STORAGE_URL ?= postgresql+psycopg2://postgres@127.0.0.1:5433/dagster
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export MLFLOW_TRACKING_URI ?= http://127.0.0.1:5000

.PHONY: help setup stack demo test dev bench bench-query bench-score bench-correlation lint down contract bench-api bench-alerts

help:
	@echo "make demo   set up, start the local stack, run the pipeline end to end, print a summary"
	@echo "make test   set up, start the local stack, run the whole test suite"
	@echo "make dev    start Dagit (dagster dev) against the same stack"
	@echo "make bench  ingestion throughput benchmark (1M events; prints JSON)"
	@echo "make bench-query  analyst query latency + dbt build times (10M events, 30 days; prints JSON)"
	@echo "make bench-score  hourly anomaly scoring of 300 series with the fitted fleet (prints JSON)"
	@echo "make bench-correlation  one correlation pass: 1,000 anomalies, 10,000 events (prints JSON)"
	@echo "make bench-api    HTTP API: OTLP spans/s into Kafka, query p50/p95/p99 at 50/200 clients (JSON)"
	@echo "make bench-alerts 10,000 incidents fanned out to 4 channels at local receivers (prints JSON)"
	@echo "make down   stop the local stack"

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install -q --python $(PY) --compile-bytecode $(TORCH_WHEELS) -r requirements.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	# Bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set (as on the build machines)
	# every process would otherwise recompile every module it imports (2 s per CLI start).
	$(PY) -m compileall -q -j 0 llmhub assets orchestration ml >/dev/null
	touch $@

$(DAGSTER_HOME)/dagster.yaml: infra/local/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp $< $@

setup: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml

stack: setup
	$(VENV)/bin/llmhub stack up
	$(VENV)/bin/dagster instance migrate >/dev/null

demo: stack
	$(PY) -m llmhub.demo

test: stack
	LLMHUB_REQUIRE_STACK=1 $(VENV)/bin/pytest

dev: stack
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: stack
	$(PY) benchmarks/ingest_throughput.py

bench-query: stack
	$(PY) benchmarks/query_latency.py

bench-score: setup
	$(PY) benchmarks/score_latency.py

bench-correlation: setup
	$(PY) benchmarks/correlation_pass.py
# Dashboards (0.5-1.5 s between a user's requests), then closed-loop clients on the same marts
# (--reuse; that run drops the bench database).
bench-api: stack
	$(PY) benchmarks/api_load.py --keep
	$(PY) benchmarks/api_load.py --only query --reuse --think 0
bench-alerts: stack
	$(PY) benchmarks/alert_fanout.py

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

contract: setup
	$(VENV)/bin/llmhub contract export

down: setup
	$(VENV)/bin/llmhub stack down
