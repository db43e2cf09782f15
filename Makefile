# The suite's commands. `make demo` and `make test` work on a fresh clone:
# they create the virtual environment and install what they need.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
NODE_CLIENT_STAMP := clients/node/node_modules/.installed-stamp

.PHONY: help venv tools system-deps protos docs certs lint test demo up down status clean

help:
	@echo "make demo    start the suite in the background and show it at work"
	@echo "make up      run the suite in the foreground (Ctrl-C stops it)"
	@echo "make down    stop a suite started by make demo"
	@echo "make test    install what the tests need, lint, run every test"
	@echo "make protos  regenerate the Python stubs from protos/"
	@echo "make docs    regenerate the generated tables of docs/api.md and docs/configuration.md"
	@echo "make certs   the services' mutual TLS certificates for docker compose, in certs/"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# buf (proto lint) comes from npm, pinned exactly in package.json (buf pins its
# platform binaries exactly too). No lock file: registries that carry only some
# platforms' binaries make `npm ci` refuse any lock.
tools: $(NODE_STAMP) $(NODE_CLIENT_STAMP)

$(NODE_STAMP): package.json
	npm install --no-package-lock --no-audit --no-fund --loglevel=error
	touch $@

# The example Node.js client (clients/node), which a test runs against the gateway.
$(NODE_CLIENT_STAMP): clients/node/package.json
	npm install --prefix clients/node --no-package-lock --no-audit --no-fund --loglevel=error
	touch $@

protos: venv
	$(PY) scripts/gen_protos.py
	$(PY) scripts/gen_openapi.py

docs: venv
	$(PY) scripts/gen_docs.py

# Mutual TLS certificates of the services, for docker compose (certs/, git-ignored).
certs: venv
	$(PY) scripts/make_certs.py certs --readable-keys

lint: venv tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) scripts/gen_protos.py --googleapis build/googleapis
	npx --no-install buf lint

# PostgreSQL (real server for the storage tests) and unixODBC (pyodbc), from apt when missing.
system-deps:
	bash scripts/install-system-deps.sh

test: lint system-deps
	$(PY) -m pytest

demo: venv
	$(PY) scripts/suite.py demo

up: venv
	$(PY) scripts/suite.py up

down:
	@if [ -x $(PY) ]; then $(PY) scripts/suite.py down; else echo "nothing to stop"; fi

status: venv
	$(PY) scripts/suite.py status

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .ruff_cache
