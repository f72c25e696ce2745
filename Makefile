# make run: the service on http://127.0.0.1:$(PORT) (SQLite + the Midtrans simulator unless configured):
#   migrations, then the Procfile's gunicorn and background worker under honcho; Ctrl-C stops both.
# make test: the test suite against the local PostgreSQL server.

PYTHON ?= python3
VENV ?= .venv
PORT ?= 8003
export PORT

BIN := $(VENV)/bin

.PHONY: run test test-fast simulator lint clean bench bench-growth drills

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/activate
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# honcho reads no .env (compose's substitutions live there) and gives the worker line PORT+100,
# hence WEB_PORT; exec leaves honcho as make's child, so SIGTERM to make reaches it too.
run: $(VENV)/.runtime
	$(BIN)/flask --app wsgi db upgrade
	PATH="$(abspath $(BIN)):$$PATH" WEB_PORT=$(PORT) PYTHONUNBUFFERED=1 \
		exec $(BIN)/honcho start --env /dev/null --port $(PORT)

# The simulator as its own process, for MIDTRANS_SIMULATOR=true MIDTRANS_BASE_URL=http://127.0.0.1:8004.
simulator: $(VENV)/.runtime
	$(BIN)/python -m midtrans_simulator --port 8004 --notification-url http://127.0.0.1:$(PORT)/payments/webhook

test: $(VENV)/.dev
	$(BIN)/pytest $(PYTEST_ARGS)

# The quick tier while working: no browser, drill or slow tests (pyproject.toml's markers), one
# pytest-xdist worker per core, each with a test database of its own.
test-fast: $(VENV)/.dev
	$(BIN)/pytest -n auto -m "not browser and not drill and not slow" $(PYTEST_ARGS)

# The load benchmarks and the fault drills (docs/benchmarks.md, docs/drills.md); they need
# PostgreSQL on 127.0.0.1:5432 and wrk. Each drill runs even if one before it failed.
bench: $(VENV)/.dev
	$(BIN)/python -m benchmarks.webhook_load --drop
	$(BIN)/python -m benchmarks.mixed_load --drop

# The data growth benchmark (docs/benchmarks.md, "Data growth"): the same operations at 10,000
# and 1,000,000 payments of history, seeded into scratch databases (about 4 minutes and 8 GB for
# the larger);
# they are dropped at the end unless GROWTH_ARGS="--keep" keeps them for the next run to re-use.
bench-growth: $(VENV)/.dev
	$(BIN)/python -m benchmarks.data_growth $(GROWTH_ARGS)

DRILLS := storm db_restart gateway_faults worker_kill slow_clients

drills: $(VENV)/.dev
	@status=0; for drill in $(DRILLS); do $(BIN)/python -m drills.$$drill || status=1; done; exit $$status

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

clean:
	rm -rf $(VENV) instance
