# Two commands for a fresh machine: `make demo` and `make test`. Everything they need is installed from here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install browser demo test test-fast golden lint bench bench-webhook bench-compare clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU torch pin goes first: a bare `torch` requirement would fetch a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[agent,dev]'
	touch $(STAMP)

install: $(STAMP)

# The web view's browser tests (tests/bot/web/) drive Debian's Chromium through its chromedriver; nothing is downloaded
# by Selenium itself.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

demo: $(STAMP)
	$(VENV)/bin/tunebot demo

# The suite keeps about one core busy (real ms-swift and EvalScope subprocesses, loopback servers), so two workers
# halve its time on a 2-core machine (20.5 -> 9.8 min; the machine peaked at 3.5 GB in use). A fixed count, not
# `auto`: every worker may be running ms-swift, and a many-core laptop has no more memory per core.
TEST_WORKERS ?= 2

test: $(STAMP) browser
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup tests

test-fast: $(STAMP) browser
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup -m "not slow" tests

# Rewrites tests/golden/ from the renderers after an intended message change (the tests only compare): review the
# diff before committing it.
golden: $(STAMP)
	$(PY) -m tests.commands.render.update_golden

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict commands

bench: $(STAMP)
	$(PY) bench/agent_overhead.py

bench-webhook: $(STAMP)
	bench/webhook_load.sh

bench-compare: $(STAMP)
	$(PY) bench/compare.py

clean:
	rm -rf $(VENV) runs .tunebot
