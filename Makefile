# spakinect-pipeline — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
UP_ARGS ?=
# The browser tests drive Debian's chromium; nothing may download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed (PYTHON=$(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

.PHONY: venv
venv: $(STAMP) ## Create .venv and install the pinned dependencies

.PHONY: up
up: venv ## Run the whole pipeline on real local services (foreground; Ctrl-C stops it)
	$(PY) -m devstack up $(UP_ARGS)

.PHONY: test
test: venv lint k8s-tools promtool chaos-tools chromium postgresql ## Lint, then run every test (integration tests start real local services)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv k8s-tools promtool ## Run the unit tests only (no services)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: chaos
chaos: venv chaos-tools ## Fault injection (kills, a cluster, gray faults, full disks, partition; kills again with the CPU starved; restart torture; root): chaos/results/*.json
	$(PY) -m chaos.run --scenario all --events 5000 --rate 100
	$(PY) -m chaos.run --scenario kills --events 5000 --rate 100 --starve 2
	$(MAKE) torture

.PHONY: torture
torture: venv ## Long restart/rebalance torture: 100 kill rounds per stage, 60 rolling graceful restarts
	TORTURE_ROUNDS=100 TORTURE_ROLLS=60 $(PY) -m pytest tests/integration/test_restart_torture.py -s -o timeout=0

.PHONY: bench
bench: venv bench-tools ## All benchmarks on the real local stack (~40 min): tables, bench/results/*.json
	$(PY) -m bench.ingress_throughput
	$(PY) -m bench.e2e_latency --events 30000 --rate 600 --out bench/results/e2e_latency_600.json
	$(PY) -m bench.e2e_latency --events 30000 --rate 1200 --out bench/results/e2e_latency_1200.json
	$(PY) -m bench.e2e_latency --events 600 --rate 12 --out bench/results/e2e_latency_12.json
	$(PY) -m bench.pipeline_throughput --events 200000 --duplicates 0.2
	$(PY) -m bench.state_bound --events 1000000 --window 60
	$(PY) -m bench.summary

.PHONY: bench-pipeline
bench-pipeline: venv ## Drain 200k preloaded events into Postgres: ours vs aiokafka+COPY vs Quix Streams
	$(PY) -m bench.pipeline_throughput --events 200000 --duplicates 0.2

.PHONY: bench-state
bench-state: venv ## 1M distinct events through a dedupe worker, DEDUPE_WINDOW=60s: RSS, entries, changelog
	$(PY) -m bench.state_bound --events 1000000 --window 60

.PHONY: bench-tools
bench-tools: ## Install the native load generators (wrk, hey) if missing (Debian, as root)
	@command -v wrk >/dev/null && command -v hey >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq wrk hey; \
	  else echo "make bench needs wrk and hey: sudo apt-get install wrk hey" >&2; exit 1; fi; }

.PHONY: k8s-tools
k8s-tools: ## Install kubectl if missing, to render deploy/k8s (Debian, as root)
	@command -v kubectl >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && { apt-get install -y -qq kubectl || apt-get install -y -qq kubernetes-client; }; \
	  else echo "the manifest tests need kubectl: sudo apt-get install kubernetes-client" >&2; exit 1; fi; }

.PHONY: chaos-tools
chaos-tools: ## Install ip (Debian's iproute2) if missing: the partition scenario's network namespace
	@command -v ip >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends iproute2; \
	  else echo "make chaos needs ip: sudo apt-get install iproute2" >&2; exit 1; fi; }

.PHONY: promtool
promtool: ## Install promtool (Debian's prometheus package) if missing: the alert-rule tests need it
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; \
	  else echo "make test needs promtool: sudo apt-get install prometheus" >&2; exit 1; fi; }

.PHONY: postgresql
# No default cluster: it would start on 5432, the port make up's own Postgres uses.
postgresql: ## Install Debian's PostgreSQL server if missing: the secured stack's TLS-only Postgres
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    mkdir -p /etc/postgresql-common; \
	    [ -e /etc/postgresql-common/createcluster.conf ] || \
	      echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 \
	      apt-get install -y -qq --no-install-recommends postgresql; \
	  else echo "the secured stack needs PostgreSQL with TLS: sudo apt-get install postgresql" >&2; exit 1; fi; }

.PHONY: chromium
chromium: ## Install Debian's chromium if missing: the console's browser tests drive it (never a downloaded browser)
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; \
	  else echo "the console's browser tests need chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

.PHONY: alerts-test
alerts-test: promtool ## Check the alert rules and run their promtool unit tests (deploy/prometheus/)
	promtool check rules deploy/prometheus/alerts.yml
	promtool check config deploy/prometheus/prometheus.yml
	promtool test rules deploy/prometheus/alerts.test.yml

.PHONY: lint
lint: venv ## ruff (lint + format check), mypy --strict and the layer contracts (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

.PHONY: fmt
fmt: venv ## Format and auto-fix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: schemas
schemas: venv ## Export the JSON Schemas of the envelope and payloads to docs/schemas/
	$(PY) -m cli.main schemas --out docs/schemas

# The running `make up` stack's settings (.data/stack.env) and its patient-data keys
# (.data/phi.env), exported for one command; the installed CLI itself never reads .data/.
LOCAL_ENV = set -a; for f in .data/stack.env .data/phi.env; do if [ -f $$f ]; then . ./$$f; fi; done; set +a

.PHONY: cli
cli: venv ## Run a CLI command against the `make up` stack: make cli ARGS='phi forget --gfe-id gfe_1'
	@test -f .data/stack.env || { echo "no .data/stack.env: start the stack with make up first" >&2; exit 1; }
	@$(LOCAL_ENV); $(VENV)/bin/spakinect-pipeline $(ARGS)

.PHONY: send-sample
send-sample: venv ## Post the vendor's sample events to the running ingress
	@$(LOCAL_ENV); $(PY) -m cli.main send-sample

.PHONY: lock
lock: ## Re-resolve dependencies and rewrite constraints.txt
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[test]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^spakinect-pipeline' > constraints.txt
	rm -rf .lock-venv

.PHONY: clean
clean: ## Remove the venv and caches (keeps .data and the jar cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

.PHONY: clean-data
clean-data: ## Remove local service data and logs (.data/)
	rm -rf .data
