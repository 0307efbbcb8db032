# Ordo — one entry point for set-up, tests and benchmarks.
# `make test` works on a fresh Debian 12 machine as root: system packages, the locked
# Python environment (uv.lock), then ruff, the import contracts, mypy and pytest.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PROMTOOL := $(TOOLS)/bin/promtool
APT_PACKAGES := python3 pcscd pcsc-tools vsmartcard-vpcd libpcsclite-dev swig gcc python3-dev python3-venv \
	softhsm2 opensc opensc-pkcs11 \
	poppler-utils fonts-dejavu-core dovecot-imapd \
	ca-certificates
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: test lint unit integration system-deps env bench demo clean

# The suite runs on two pytest-xdist workers (the appliance and CI machines have two cores;
# most integration tests wait on daemons and subprocesses); the tests that use the machine's
# pcscd all go to one of them (tests/integration/conftest.py). PYTEST_WORKERS=0 runs it in
# one process.
PYTEST_WORKERS ?= 2

test: env lint
	@rc=0; $(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadgroup || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

unit: env
	$(VENV)/bin/pytest tests/unit

integration: env
	$(VENV)/bin/pytest tests/integration

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q uv==0.13.8

# promtool checks and unit-tests the Prometheus alert rules shipped in ops/prometheus. It is
# taken out of Debian 12's prometheus package (apt-get download, the same version as the
# distribution's) without installing that package: installing it would also create a
# prometheus user and install, enable and start a Prometheus server, which neither the
# appliance nor the tests run. promtool is one static binary (about 48 MB).
$(PROMTOOL): | $(UV)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	fetch() { (cd "$$tmp" && apt-get -q -o APT::Sandbox::User=root download prometheus >/dev/null); }; \
	fetch || { apt-get update -qq && fetch; }; \
	dpkg-deb --fsys-tarfile "$$tmp"/prometheus_*.deb | tar -xO ./usr/bin/promtool > "$$tmp/promtool"; \
	install -m 0755 "$$tmp/promtool" $@; \
	echo "installed $$($@ --version 2>&1 | head -1) in $@"

# Bytecode is compiled at install time: on the appliance the code is read-only to the ordo
# user, and without .pyc files every start of the kiosk would compile its sources again.
env: system-deps $(UV) $(PROMTOOL)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON) --quiet
	$(VENV)/bin/python -m compileall -q appliance drivers sync bench > /dev/null

bench: env
	$(VENV)/bin/python -m bench

demo: env
	$(VENV)/bin/ordo demo

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .mypy_cache
