# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Loopback only by default: the sidebar can open server folders (see README). ADDRESS=0.0.0.0 to share.
ADDRESS ?= 127.0.0.1
PORT ?= 8501
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: screenshots run test test-fast lint clean

# requirements.txt holds the pins; the package itself goes in editable (its lggdemo-* commands land in .venv/bin).
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PY) -m streamlit run streamlit_app.py --server.address $(ADDRESS) --server.port $(PORT)

# One pytest-xdist worker per core, at most 4 (tests/conftest.py gives each its share of threads; 0: none); a file's
# tests share a worker, so module fixtures (a tiny training run) are built once.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)

test: $(VENV)/.installed-dev
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# Everything but the slow tier (real training, the browser, whole command-line and page runs): the loop while you
# work, under 3 minutes on 2 cores (CI runs `make test`).
test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow and not e2e"

# The README's screenshots (docs/screenshots): the browser tests, told to save them there; `make test` keeps them in a temp folder.
screenshots: $(VENV)/.installed-dev
	LGG_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest tests/e2e

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
