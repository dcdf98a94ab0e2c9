# RecLens: `make run` starts the app, `make test` runs the suite. Both set up what is
# missing first (a virtualenv with the pinned requirements) and are quick when set up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DB     ?= data/reclens.duckdb
PORT   ?= 8501
# The app binds to localhost; see README "Exposing the app" before changing this.
ADDRESS ?= localhost

.PHONY: run test setup setup-dev browser demo bench lint format clean

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: setup
	@echo "RecLens on http://$(ADDRESS):$(PORT)  (database: $(DB); Ctrl+C stops it)"
	@(sleep 4; $(PY) -m webbrowser -t http://$(ADDRESS):$(PORT) >/dev/null 2>&1 || true) &
	RECLENS_DB=$(DB) $(VENV)/bin/streamlit run app.py --server.port $(PORT) --server.address $(ADDRESS)

# The browser journey test drives Debian's Chromium (tests/test_browser.py); install it
# when missing and possible (root with apt), else that one test is skipped with a reason.
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		{ echo "installing chromium (for the browser test)"; \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		  || echo "warning: could not install chromium; the browser test will be skipped"; }

# One pytest worker per usable CPU, each pinned to its own (tests/conftest.py); a test
# module runs whole on one worker, so its module fixtures are made once.
TEST_JOBS ?= $(shell $(PYTHON) -c "import os; print(len(os.sched_getaffinity(0)))" 2>/dev/null || echo 2)

test: setup-dev browser
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile

demo: setup
	$(PY) -m core --db $(DB) demo --replace

bench: setup
	$(PY) bench/ingest.py
	$(PY) bench/sequences.py
	$(PY) bench/text.py
	$(PY) bench/train.py

lint: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache
