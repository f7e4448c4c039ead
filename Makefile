# Quick start: `make demo` then `make test` (each creates .venv and installs on first use).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SUITE ?= quick

.PHONY: install demo test test-fast lint format clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/mmint benchmark suite=$(SUITE)

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check mmint tests benchmarks

format: install
	$(BIN)/ruff format mmint tests benchmarks

clean:
	rm -rf runs multirun outputs .pytest_cache
