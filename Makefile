# The README's two commands: `make run` and `make test`, each doing its own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/gatehouse.example.toml

.PHONY: run test lint bench fuzz screenshots clean

$(BIN)/gatehouse: pyproject.toml
	@$(PYTHON) -c 'import venv' 2>/dev/null && $(PYTHON) -m ensurepip --version >/dev/null 2>&1 \
		|| sh scripts/debian-deps.sh python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

run: $(BIN)/gatehouse
	mkdir -p var
	$(BIN)/gatehouse --config $(CONFIG) run

test: $(BIN)/gatehouse
	sh scripts/debian-deps.sh mosquitto mosquitto-clients socat ffmpeg postgresql chromium fonts-wqy-microhei
	sh scripts/start-postgres.sh
	$(BIN)/ruff check .
	$(BIN)/pytest

fuzz: $(BIN)/gatehouse  ## the fuzz harnesses at length (make test runs them with a few examples)
	GATEHOUSE_FUZZ_EXAMPLES=$${GATEHOUSE_FUZZ_EXAMPLES:-20000} $(BIN)/pytest -q --timeout=0 tests/security/test_fuzz_parsers.py tests/security/test_fuzz_inputs.py

screenshots: $(BIN)/gatehouse  ## the console's pictures in docs/, taken by its browser tests
	sh scripts/debian-deps.sh mosquitto socat chromium fonts-wqy-microhei
	mkdir -p docs/screenshots
	GATEHOUSE_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/pytest -q tests/test_console.py

lint: $(BIN)/gatehouse
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(BIN)/gatehouse
	sh scripts/debian-deps.sh mosquitto mosquitto-clients socat
	$(BIN)/python bench/swipe_latency.py
	$(BIN)/python bench/mqtt_ingest.py
	$(BIN)/python bench/memory_startup.py
	$(BIN)/python bench/pass_import.py
	$(BIN)/python bench/alarm_flood.py
	sh scripts/debian-deps.sh ffmpeg
	$(BIN)/python bench/camera.py
	$(BIN)/python bench/sync_drain.py
	$(BIN)/python bench/office_long_polls.py
	sh scripts/debian-deps.sh chromium
	$(BIN)/python bench/console_latency.py

clean:
	rm -rf $(VENV) var .pytest_cache
