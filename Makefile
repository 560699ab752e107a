# Two entry points: `make repro` (the whole DVC pipeline -> reports/index.html) and `make test`.
# Both create .venv when missing, install echolib with its dependencies and register the Jupyter kernel
# that every notebook stage runs in.

PYTHON ?= python3
VENV ?= .venv
KERNEL ?= echolib
PY := $(VENV)/bin/python
STAMP := $(VENV)/.echolib-installed
PYTEST_ARGS ?=

export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: setup repro test lint clean-outputs lab

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (echolib)" >/dev/null
	@touch $@

repro: setup
	$(VENV)/bin/dvc repro $(DVC_ARGS)
	@echo "Report: $(abspath reports/index.html)"

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

lab: setup
	$(VENV)/bin/jupyter lab --allow-root --no-browser
