# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Claude Code CLI for the end-to-end tests, cached outside the repo.
CLAUDE_CODE_VERSION ?= 2.1.332
NPM_CACHE_DIR ?= $(HOME)/.cache/toktoken-npm

.PHONY: run test test-fast demo bench bench-real lint format check claude-env claude-code clean

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "toktoken needs Python 3.11 or newer; $(PYTHON) is: $$($(PYTHON) --version 2>&1 || echo not found). Install one, then e.g. make PYTHON=python3.12" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "$(PYTHON) cannot create a virtualenv: install its venv module (Debian/Ubuntu: sudo apt install python3-venv)" >&2; exit 1; }
	$(PIP) install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements.txt $(VENV)/.installed
	$(PIP) install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

## run: create the venv if needed, install, serve the gateway on $HOST:$PORT (default 0.0.0.0:3456)
run: $(VENV)/.installed
	$(PY) -m toktoken serve

## check: print the effective configuration and probe the backends
check: $(VENV)/.installed
	$(PY) -m toktoken check

## claude-env: print the lines that point Claude Code at this gateway (MODEL=name to choose)
claude-env: $(VENV)/.installed
	$(PY) -m toktoken claude-env $(if $(MODEL),--model $(MODEL))

## claude-code: install the pinned Claude Code CLI (used by the end-to-end tests) if npm exists
claude-code:
	@if command -v npm >/dev/null 2>&1; then \
	  if [ ! -x "$(NPM_CACHE_DIR)/node_modules/.bin/claude" ] || \
	     ! "$(NPM_CACHE_DIR)/node_modules/.bin/claude" --version 2>/dev/null | grep -q "^$(CLAUDE_CODE_VERSION) "; then \
	    mkdir -p "$(NPM_CACHE_DIR)" && \
	    npm install --prefix "$(NPM_CACHE_DIR)" --no-audit --no-fund --loglevel=error \
	      @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION); \
	  fi; \
	else echo "npm not found: the Claude Code end-to-end tests will be skipped"; fi

## test: install what the tests need and run them all
test: $(VENV)/.installed-dev claude-code
	CLAUDE_BIN="$(NPM_CACHE_DIR)/node_modules/.bin/claude" $(PY) -m pytest $(PYTEST_ARGS)

## test-fast: everything but the real-model tier (no llama.cpp build)
test-fast: $(VENV)/.installed-dev claude-code
	CLAUDE_BIN="$(NPM_CACHE_DIR)/node_modules/.bin/claude" $(PY) -m pytest -m "not real_backend" $(PYTEST_ARGS)

## demo: a real local model (CPU) + the gateway, and the lines to paste for Claude Code
demo: $(VENV)/.installed
	bash deploy/local-model/demo.sh

## bench: the gateway's overhead against a fast fake backend (see docs/performance.md);
##        BASELINE=REV also measures the gateway as of git revision REV, beside it
bench: $(VENV)/.installed-dev
	$(PY) bench/run.py $(if $(BASELINE),--baseline $(BASELINE))

## bench-real: a Claude Code session through the gateway to a real llama-server (builds it once)
bench-real: $(VENV)/.installed-dev
	$(PY) bench/real_session.py

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
