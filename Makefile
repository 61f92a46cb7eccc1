# Two commands do all the set-up on a fresh machine:
#   make demo   -> venv + install + inference of the three bundles with the shipped weights (images in demo_output/)
#   make test   -> venv + install + the test suite
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
PYTEST_ARGS ?=
DEMO_DIR ?= demo_output

.PHONY: setup test demo clean

$(VENV)/.installed: pyproject.toml
	@if [ -z "$$VIRTUAL_ENV" ] && [ ! -x "$(VENV)/bin/python" ]; then python3 -m venv $(VENV); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	@mkdir -p $(VENV) && touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(PY) scripts/demo.py --output_dir $(DEMO_DIR)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
