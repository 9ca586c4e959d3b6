# The README's two commands: `make run` and `make test`, each doing its own set-up;
# `sudo make install` puts the service on a guard-room PC or an office (scripts/install.sh).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/gatehouse.example.toml
# make install: DESTDIR lays the files out under another root (and touches nothing else);
# PREFIX holds the units, sysusers.d, tmpfiles.d and the commands; INSTALL_PYTHON is the
# service's interpreter (Debian's: a pyenv or home-directory one is hidden by ProtectHome=).
DESTDIR ?=
PREFIX ?= /usr
INSTALL_PYTHON ?= /usr/bin/python3
# What is installed in $(VENV): the project with its runtime dependencies (make run), and
# the test tools on top (make test and the rest). Each stamp is remade when pyproject.toml
# changes; `make test` after `make run` adds the test tools.
RUNTIME := $(VENV)/.runtime-installed
TESTING := $(VENV)/.test-installed

.PHONY: run test lint bench fuzz screenshots clean install

$(BIN)/python:
	@$(PYTHON) -c 'import venv' 2>/dev/null && $(PYTHON) -m ensurepip --version >/dev/null 2>&1 \
		|| sh scripts/debian-deps.sh python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@touch $@

$(TESTING): $(RUNTIME)
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

run: $(RUNTIME)
	mkdir -p var
	$(BIN)/gatehouse --config $(CONFIG) run

install:
	DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' PYTHON='$(INSTALL_PYTHON)' sh scripts/install.sh

test: $(TESTING)
	sh scripts/debian-deps.sh mosquitto mosquitto-clients socat ffmpeg postgresql chromium fonts-wqy-microhei
	sh scripts/start-postgres.sh
	$(BIN)/ruff check .
	$(BIN)/pytest

fuzz: $(TESTING)  ## the fuzz harnesses at length (make test runs them with a few examples)
	GATEHOUSE_FUZZ_EXAMPLES=$${GATEHOUSE_FUZZ_EXAMPLES:-20000} $(BIN)/pytest -q --timeout=0 tests/security/test_fuzz_parsers.py tests/security/test_fuzz_inputs.py

screenshots: $(TESTING)  ## the console's pictures in docs/, taken by its browser tests
	sh scripts/debian-deps.sh mosquitto socat chromium fonts-wqy-microhei
	mkdir -p docs/screenshots
	GATEHOUSE_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/pytest -q tests/test_console.py

lint: $(TESTING)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(TESTING)
	sh scripts/debian-deps.sh mosquitto mosquitto-clients socat
	$(BIN)/python bench/swipe_latency.py
	$(BIN)/python bench/mqtt_ingest.py
	$(BIN)/python bench/memory_startup.py
	$(BIN)/python bench/pass_import.py
	$(BIN)/python bench/alarm_flood.py
	$(BIN)/python bench/cli_startup.py
	$(BIN)/python bench/list_routes.py
	sh scripts/debian-deps.sh ffmpeg
	$(BIN)/python bench/camera.py
	$(BIN)/python bench/sync_drain.py
	$(BIN)/python bench/office_long_polls.py
	sh scripts/debian-deps.sh chromium
	$(BIN)/python bench/console_latency.py

clean:
	rm -rf $(VENV) var .pytest_cache
