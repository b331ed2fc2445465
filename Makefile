# x0tta6bl4 build and test entry points. `make run` and `make test` are the two commands a user needs.
# Each area adds its own targets, apt packages and test prerequisites in mk/<area>.mk.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
BOARD ?= x86_64
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages every area needs; mk/*.mk append theirs.
APT_PKGS := python3-venv iproute2 nftables iputils-ping
TEST_PREREQS :=
BENCHES :=

include $(sort $(wildcard mk/*.mk))

.PHONY: help deps deps-run test test-fast lint bench run clean
help:
	@echo "make run    - set up, build the $(BOARD) image, boot it in QEMU joined to 5 x0node neighbours (web UI on localhost)"
	@echo "make test   - set up and run every test (unit, sim, property, integration, ui, image)"
	@echo "make deps   - install Debian packages (apt-get) and pinned Python packages into $(VENV)"
	@echo "make lint   - ruff and the sans-I/O import contract (tests/sans_io_contract.py)"
	@echo "make bench  - run the benchmarks in bench/"

APT_STAMP := $(STAMPS)/apt-$(shell echo $(sort $(APT_PKGS)) | sha256sum | cut -c1-12)
$(APT_STAMP):
	@mkdir -p $(STAMPS)
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $(sort $(APT_PKGS))
	@touch $@

# x0node plus the development package x0lab (lab/: testbed, fault lab, scenario generator), which
# router images never contain. `make run` needs only those (pip-run); tests also need the [test] extras.
# --no-compile: modules are byte-compiled when first imported, only those that are (a fifth of the
# install's time went to compiling every module of every package up front).
# --no-build-isolation with the pinned setuptools installed first: otherwise pip made a fresh build
# environment, installing setuptools into it, for each of the two editable projects (about 60 % of the
# step's time on a fresh checkout).
PIP_INSTALL = [ -x $(PY) ] || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install -q --no-compile -c requirements.lock setuptools && \
	$(PY) -m pip install -q --no-compile --no-build-isolation -c requirements.lock
$(STAMPS)/pip-run: pyproject.toml lab/pyproject.toml requirements.lock
	@mkdir -p $(STAMPS)
	$(PIP_INSTALL) -e . -e ./lab
	@touch $@

$(STAMPS)/pip: pyproject.toml lab/pyproject.toml requirements.lock
	@mkdir -p $(STAMPS)
	$(PIP_INSTALL) -e '.[test]' -e ./lab
	@touch $@ $(STAMPS)/pip-run

deps: $(APT_STAMP) $(STAMPS)/pip
deps-run: $(APT_STAMP) $(STAMPS)/pip-run

# Lint first, then every test; prints statement coverage of x0node (pytest-cov; config in pyproject.toml).
test: lint $(TEST_PREREQS)
	$(PY) -m pytest -q -ra --durations=30 --cov --cov-report=term tests

test-fast: deps
	$(PY) -m pytest -q -m "not integration and not ui and not slow" tests

lint: deps
	$(VENV)/bin/ruff check x0node lab tests bench models image rootfs/usr/lib/x0tta6bl4
	$(PY) tests/sans_io_contract.py

bench: deps $(TEST_PREREQS)
	@set -e; for b in $(BENCHES); do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(STAMPS) out build
