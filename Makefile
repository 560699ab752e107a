# Two entry points: `make repro` (the whole DVC pipeline -> reports/site/index.html) and `make test`.
# Both create .venv when missing, install echolib with its dependencies and register the Jupyter kernel
# that every notebook stage runs in.

PYTHON ?= python3
VENV ?= .venv
KERNEL ?= echolib
PY := $(VENV)/bin/python
STAMP := $(VENV)/.echolib-installed
PYTEST_ARGS ?=
# test workers (pytest-xdist): the long pipeline test on one, everything else beside it; 0 runs them in this process
TEST_WORKERS ?= 2

export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: setup repro test lint clean-outputs lab browser quicklook check-site dvc-plots-template

setup: $(STAMP)

# A .venv that is a link (.quicklook/ links the main checkout's) belongs to another checkout: never reinstalled
# from here, which would point the shared environment's echolib at this checkout's files.
$(STAMP): pyproject.toml echolib/lab.py
	@if [ -L $(VENV) ]; then echo "$(VENV) links to another checkout's environment: not reinstalled from here"; else \
	  set -e; test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	  echo "installing echolib into $(VENV)"; \
	  $(PY) -m pip install -q --upgrade pip; \
	  $(PY) -m pip install -q -e '.[dev]'; \
	  $(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (echolib)" >/dev/null; \
	  $(PY) -m echolib.lab install >/dev/null; \
	  touch $@; fi

# `dvc repro` without DVC's `git add dvc.lock` hint: dvc.lock is never committed here (echolib/dvc_cli.py)
repro: setup
	$(PY) -m echolib.dvc_cli repro $(DVC_ARGS)
	@$(PY) -m echolib.report summary

# The browser tests need Debian's chromium and a Japanese font; installed here when missing (as root, or with
# sudo). Without them those tests are skipped (CI sets ECHOLIB_REQUIRE_BROWSER=1: then they fail).
browser:
	@command -v chromium >/dev/null 2>&1 && fc-list :lang=ja 2>/dev/null | grep -q . || { \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "installing chromium and fonts-noto-cjk (apt)"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null \
	  || echo "could not install chromium: the browser tests will be skipped"; }

test: setup browser
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist worksteal) $(PYTEST_ARGS)

# The report site in headless Chromium, offline: every chart drawn, no missing Japanese glyph, screenshots.
check-site: setup browser
	$(PY) -m tests.browser reports/site --screenshots reports/screenshots --out reports/browser_check.json

# A quick look at the whole pipeline on the tiny profile (about 10 minutes on 2 cores) in a separate checkout
# (.quicklook/, a git worktree of HEAD): params.yaml here is not touched, so a later `make repro` runs the default.
quicklook: setup
	@test -d .quicklook || git worktree add --detach -q .quicklook HEAD
	cd .quicklook && ln -sfn $(abspath $(VENV)) .venv && \
	  $(abspath $(PY)) -m echolib.config show tiny --params params.yaml > params.yaml.tiny && mv params.yaml.tiny params.yaml && \
	  $(abspath $(VENV))/bin/dvc repro $(DVC_ARGS) && $(abspath $(PY)) -m echolib.report summary

# Regenerate .dvc/plots/offline.html (Vega, Vega-Lite and vega-embed inlined, so `dvc plots show` works offline)
# from the npm registry; committed, so only needed to change their versions.
VEGA_PACKAGES ?= vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
dvc-plots-template: setup
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack -q $(VEGA_PACKAGES) >/dev/null && \
	  for f in *.tgz; do mkdir -p $${f%.tgz} && tar xzf $$f -C $${f%.tgz}; done && cd - >/dev/null && \
	  $(PY) -m echolib.site dvc-plots-template $$tmp/vega-5*/package/build/vega.min.js \
	    $$tmp/vega-lite-*/package/build/vega-lite.min.js $$tmp/vega-embed-*/package/build/vega-embed.min.js

lint: setup
	$(VENV)/bin/ruff check .

lab: setup
	$(VENV)/bin/jupyter lab --allow-root --no-browser
