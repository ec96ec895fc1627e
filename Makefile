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
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# ---------------------------------------------------------------------------------------------
# Installation

.PHONY: install install-system install-python controlplane
install: install-system install-python controlplane ## Install everything: Debian packages, Python venv, control-plane binary

# redis-server for the queue; the rest for the real node (`localkube up --node=kubelet`, the tests
# in tests/controlplane/test_cp_realnode.py): containerd 1.6 + runc, the CNI plugins (bridge,
# host-local, loopback), iptables and conntrack for kube-proxy, busybox-static for test images.
SYSTEM_PACKAGES ?= redis-server containerd runc containernetworking-plugins iptables conntrack busybox-static

install-system: ## Debian packages: redis-server and the real node's containerd, runc, CNI plugins, iptables, ... (only missing ones)
	@missing="$$(for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || echo "$$p"; \
	done | tr '\n' ' ')"; \
	if [ -z "$${missing// }" ]; then \
	  echo "==> Debian packages present: $(SYSTEM_PACKAGES)"; \
	else \
	  echo "==> installing from Debian: $$missing"; \
	  $(SUDO) apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@command -v go >/dev/null 2>&1 || { echo "ERROR: Go is required to build the local control plane (go.dev/dl)" >&2; exit 1; }

$(PY):
	@echo "==> creating virtualenv $(VENV)"
	$(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install-python: $(PY) ## Python packages into .venv (editable install with dev extras)
	@echo "==> installing Python packages into $(VENV)"
	$(PY) -m pip install -q --progress-bar off -c requirements.lock -e '.[dev]'

controlplane: ## Build (or reuse) the control-plane binary from the Kubernetes Go modules
	bash controlplane/build.sh

.PHONY: controlplane-check
controlplane-check: controlplane ## go vet + go test of the control-plane module (reuses the build cache)
	bash controlplane/build.sh --check

# ---------------------------------------------------------------------------------------------
# Local control plane

.PHONY: cluster-up cluster-down cluster-env
NODE ?= agent
cluster-up: controlplane ## Start etcd, kube-apiserver, controller-manager, scheduler and the node agent (NODE=kubelet: a real node, root)
	$(PY) -m localkube up --node=$(NODE)

cluster-down: ## Stop the local control plane and remove its state
	$(PY) -m localkube down

cluster-env: ## Print the shell lines that put this kubectl first on PATH and set KUBECONFIG
	@$(PY) -m localkube env

# ---------------------------------------------------------------------------------------------
# The two README commands

.PHONY: test demo
test: install lint controlplane-check ## Lint, Go checks, then the whole pytest suite on the local control plane (.ci/run)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install ## Run the demo: control plane + Redis + operator + an example QueueJob, with live progress
	$(PY) -m queuejob.demo

# ---------------------------------------------------------------------------------------------
# Quality and benchmarks

.PHONY: lint bench-queue bench-operator
lint: install-python ## ruff and mypy
	$(VENV)/bin/ruff check operator controlplane tests benchmarks
	$(VENV)/bin/ruff format --check operator controlplane tests benchmarks
	$(VENV)/bin/mypy

bench-queue: install ## Redis queue throughput: ours (single, batched) vs the docs' algorithm, 1/4/16 workers
	$(PY) benchmarks/bench_queue.py

bench-operator: install ## 200 QueueJobs to Running: operator vs a no-kopf floor; API requests and peak RSS
	$(PY) benchmarks/bench_operator.py

# ---------------------------------------------------------------------------------------------
# Container image and kind (these need Docker; they stop at once with a clear message without it)

KIND_VERSION   ?= v0.30.0
KIND           ?= $(shell command -v kind 2>/dev/null || echo $(BUILD)/bin/kind)
KUBECTL        ?= $(BUILD)/bin/kubectl
KIND_KUBECONFIG := $(BUILD)/kind/kubeconfig
DEPLOY_NS      := queuejob-system
KIND_KUBECTL    = $(KUBECTL) --kubeconfig $(KIND_KUBECONFIG)

.PHONY: docker-check image kind-up kind-down deploy undeploy e2e-kind
docker-check:
	@command -v docker >/dev/null 2>&1 || { \
	  echo "ERROR: '$(MAKECMDGOALS)' needs Docker, but the docker command is not installed." >&2; \
	  echo "       Install Docker (or use 'make test' / 'make demo', which need no Docker)." >&2; exit 1; }
	@timeout 30 docker info >/dev/null 2>&1 || { \
	  echo "ERROR: '$(MAKECMDGOALS)' needs Docker, but 'docker info' failed: the Docker daemon is not reachable." >&2; \
	  echo "       Start Docker and retry (or use 'make test' / 'make demo', which need no Docker)." >&2; exit 1; }

image: docker-check ## Build the container image queuejob:dev (operator and worker) with Docker
	docker build -t $(IMAGE) .

$(BUILD)/bin/kind:
	@echo "==> installing kind $(KIND_VERSION) into $(BUILD)/bin (go install)"
	GOBIN=$(abspath $(BUILD)/bin) go install sigs.k8s.io/kind@$(KIND_VERSION)

kind-up: docker-check $(KIND) ## Create the kind cluster "queuejob" unless it exists (kubeconfig: .build/kind/kubeconfig)
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "==> kind cluster $(KIND_CLUSTER) exists"; \
	else \
	  echo "==> creating kind cluster $(KIND_CLUSTER)"; \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --wait 180s; \
	fi
	@mkdir -p $(dir $(KIND_KUBECONFIG))
	$(KIND) get kubeconfig --name $(KIND_CLUSTER) > $(KIND_KUBECONFIG)
	@echo "==> export KUBECONFIG=$(abspath $(KIND_KUBECONFIG))"

kind-down: docker-check $(KIND) ## Delete the kind cluster "queuejob"
	$(KIND) delete cluster --name $(KIND_CLUSTER)
	rm -f $(KIND_KUBECONFIG)

deploy: image kind-up $(KUBECTL) ## Load the image into kind, apply the CRDs and manifests/deploy, wait until ready
	@# Docker's containerd image store can make `kind load docker-image` fail ("content digest
	@# not found", kind issue #3795): then load a single-platform archive instead.
	$(KIND) load docker-image $(IMAGE) --name $(KIND_CLUSTER) || { \
	  echo "==> retrying with a single-platform image archive"; \
	  docker image save --platform "$$(docker version -f '{{.Server.Os}}/{{.Server.Arch}}')" \
	    -o $(BUILD)/kind/image.tar $(IMAGE); \
	  $(KIND) load image-archive $(BUILD)/kind/image.tar --name $(KIND_CLUSTER); \
	  rm -f $(BUILD)/kind/image.tar; }
	$(KIND_KUBECTL) apply -f crds/
	$(KIND_KUBECTL) wait --for=condition=Established --timeout=60s crd/queuejobs.workqueue.example.com
	$(KIND_KUBECTL) apply -k manifests/deploy
	@if ! $(KIND_KUBECTL) -n $(DEPLOY_NS) get secret redis-auth >/dev/null 2>&1; then \
	  echo "==> creating Secret $(DEPLOY_NS)/redis-auth with a random Redis password"; \
	  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' | \
	    $(KIND_KUBECTL) -n $(DEPLOY_NS) create secret generic redis-auth \
	      --from-file=password=/dev/stdin >/dev/null; \
	fi
	$(KIND_KUBECTL) -n $(DEPLOY_NS) rollout status deployment/redis --timeout=300s
	$(KIND_KUBECTL) -n $(DEPLOY_NS) rollout status deployment/queuejob-operator --timeout=300s
	@echo "==> deployed. Try: KUBECONFIG=$(KIND_KUBECONFIG) $(KUBECTL) apply -f manifests/examples/minimal.yaml"

undeploy: docker-check $(KUBECTL) ## Delete all QueueJobs (while the operator still runs), then manifests/deploy and the CRDs
	-$(KIND_KUBECTL) delete queuejobs --all --all-namespaces --timeout=120s
	$(KIND_KUBECTL) delete -k manifests/deploy --ignore-not-found --timeout=180s

# The `cluster` fixture's kind backend (pytest-kind) re-uses the cluster of kind-up (same name, its
# kubeconfig fetched from kind), with our kind and kubectl binaries, and never deletes a cluster it
# did not create; the operator deployed above is found in queuejob-system.
e2e-kind: deploy ## Run the end-to-end tests against the kind cluster (pytest --cluster=kind)
	$(PY) -m pytest --cluster=kind --cluster-name=$(KIND_CLUSTER) --kind-bin=$(KIND) \
	  --kind-kubectl-bin=$(KUBECTL) tests/e2e $(PYTEST_ARGS)

$(KUBECTL):
	bash controlplane/build.sh
