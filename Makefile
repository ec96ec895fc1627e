# The QueueJob operator: the work-queue pattern for Kubernetes operators in Python.
#
#   make demo   - set everything up, bring up a local control plane + Redis, run the operator, show a QueueJob
#   make test   - set everything up and run the whole test suite (what .ci/run calls)
#
# Everything is installed into this checkout: a virtualenv in .venv/, the control-plane binary in .build/.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BASE  ?= python3
VENV         ?= .venv
PY           := $(VENV)/bin/python
BUILD        ?= .build
KUBE_LOCAL   := $(BUILD)/bin/kube-local
IMAGE        ?= queuejob:dev
KIND_CLUSTER ?= queuejob
PYTEST_ARGS  ?=
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# ---------------------------------------------------------------------------------------------
# Installation

.PHONY: install install-system install-python controlplane
install: install-system install-python controlplane ## Install everything: Debian packages, Python venv, control-plane binary

install-system: ## Debian packages: redis-server (skipped when present)
	@if command -v redis-server >/dev/null 2>&1; then \
	  echo "==> redis-server present: $$(redis-server --version | cut -d' ' -f3)"; \
	else \
	  echo "==> installing redis-server from Debian"; \
	  $(SUDO) apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends redis-server; \
	fi
	@command -v go >/dev/null 2>&1 || { echo "ERROR: Go is required to build the local control plane (go.dev/dl)" >&2; exit 1; }

$(PY):
	@echo "==> creating virtualenv $(VENV)"
	$(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install-python: $(PY) ## Python packages into .venv (editable install with dev extras)
	@echo "==> installing Python packages into $(VENV)"
	$(PY) -m pip install -q --progress-bar off -e '.[dev]'

controlplane: ## Build (or reuse) the control-plane binary from the Kubernetes Go modules
	bash controlplane/build.sh

# ---------------------------------------------------------------------------------------------
# Local control plane

.PHONY: cluster-up cluster-down cluster-env
cluster-up: ## Start etcd, kube-apiserver, controller-manager, scheduler and the node agent
	$(PY) -m localkube up

cluster-down: ## Stop the local control plane and remove its state
	$(PY) -m localkube down

cluster-env: ## Print the shell lines that put this kubectl first on PATH and set KUBECONFIG
	@$(PY) -m localkube env

# ---------------------------------------------------------------------------------------------
# The two README commands

.PHONY: test demo
test: install ## Run the whole test suite on the local control plane (what .ci/run calls)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install ## Run the demo: control plane + Redis + operator + an example QueueJob, with live progress
	$(PY) -m queuejob.demo

# ---------------------------------------------------------------------------------------------
# Quality and benchmarks

.PHONY: lint bench-queue bench-operator
lint: ## ruff and mypy
	$(VENV)/bin/ruff check operator controlplane tests benchmarks
	$(VENV)/bin/ruff format --check operator controlplane tests benchmarks
	$(VENV)/bin/mypy

bench-queue: install ## Redis queue throughput: ours (single, batched) vs the docs' algorithm, 1/4/16 workers
	$(PY) benchmarks/bench_queue.py

bench-operator: install ## 200 QueueJobs to Running: operator vs a no-kopf floor; API requests and peak RSS
	$(PY) benchmarks/bench_operator.py
