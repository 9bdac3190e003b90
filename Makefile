# Two commands for a fresh machine with Python 3.11+ and make: `make run` and `make test`.
# Everything they need (virtualenv, pinned packages, generated stubs, Debian tools the tests
# use) is installed by the targets below.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PROTOS := $(shell find proto -name '*.proto')
STUBS_STAMP := mesh/.stubs
# Debian packages the test suite shells out to (independent decoders and archivers).
DEBIAN_TOOLS := ffprobe:ffmpeg bsdtar:libarchive-tools 7z:p7zip-full unzip:unzip xz:xz-utils bzip2:bzip2 \
	gzip:gzip chromium:chromium pdfinfo:poppler-utils
PYTEST_ARGS ?=

.PHONY: run test test-slow lint format bench bench-io bench-deps bench-media bench-archive \
	bench-image bench-compress stubs install system-deps clean

run: $(STUBS_STAMP)
	$(PY) -m launcher

test: $(STUBS_STAMP) system-deps
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STUBS_STAMP) system-deps
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

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

bench-media bench-archive bench-image bench-compress: bench-%: $(STUBS_STAMP) system-deps
	$(PY) -m bench.$*

install: $(INSTALLED)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): $(VENV)/bin/python requirements.lock pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	touch $@

stubs: $(STUBS_STAMP)

$(STUBS_STAMP): $(INSTALLED) $(PROTOS)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --mypy_out=. \
		--mypy_grpc_out=. $(PROTOS)
	touch $@

system-deps:
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
	rm -rf $(VENV) $(STUBS_STAMP) mesh/jobs mesh/tasks .data
