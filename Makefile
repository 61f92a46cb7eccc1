# Two commands do all the set-up on a fresh machine:
#   make demo   -> venv + install + inference of the three bundles with the shipped weights (images in demo_output/)
#   make test   -> venv + install + lint (ruff, mypy) + the test suite, the data-dependent tests once more without data (they must
#                  skip), then the MONAI Label server test in its own venv
# An active virtual environment ($VIRTUAL_ENV) is used as it is; otherwise .venv is created.
SHELL := /bin/bash
VENV ?= .venv
ifdef VIRTUAL_ENV
PY := python
else
PY := $(VENV)/bin/python
endif
# CPU build of torch first, so that no multi-GB CUDA build is pulled in by the `torch>=2.8` requirement.
TORCH_SPEC ?= torch==2.13.0
# MONAI Label needs torchvision; torch 2.14.1 + torchvision 0.29.1 install together (separate venv).
LABEL_VENV ?= .venv-label
LABEL_TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
DEMO_DIR ?= demo_output

.PHONY: setup setup-label lint test test-main test-nodata test-label demo clean

$(VENV)/.installed: pyproject.toml
	@if [ -z "$$VIRTUAL_ENV" ] && [ ! -x "$(VENV)/bin/python" ]; then python3 -m venv $(VENV); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev,export]"
	@mkdir -p $(VENV) && touch $@

$(LABEL_VENV)/.installed: pyproject.toml
	@if [ ! -x "$(LABEL_VENV)/bin/python" ]; then python3 -m venv $(LABEL_VENV); fi
	$(LABEL_VENV)/bin/python -m pip install -q --upgrade pip
	$(LABEL_VENV)/bin/python -m pip install -q $(LABEL_TORCH_SPEC)
	$(LABEL_VENV)/bin/python -m pip install -q -e ".[dev,label]"
	@touch $@

setup: $(VENV)/.installed

setup-label: $(LABEL_VENV)/.installed

# lint and format (ruff) and types (mypy), as configured in pyproject.toml
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test-main: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# the tests that read the real datasets, once more with none: they must skip (or fall back), never fail
test-nodata: setup
	@empty=$$(mktemp -d) && EMGAN_DATA=$$empty $(PY) -m pytest -q -m needs_data $(PYTEST_ARGS); rc=$$?; rmdir $$empty; exit $$rc

test-label: setup-label
	$(LABEL_VENV)/bin/python -m pytest -q tests/test_monailabel.py

test: lint test-main test-nodata test-label

demo: setup
	$(PY) scripts/demo.py --output_dir $(DEMO_DIR)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache dist
