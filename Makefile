# Engage: two commands on a fresh machine with Python 3.11.
#   make run    set up, build the embedded warehouse, run every batch program, print the results
#   make test   set up and run the whole test suite (what .ci/run calls)
PYTHON  ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export ENGAGE_HOME ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
SCALE ?= 1.0

.PHONY: setup run test lint dev bench validate clean serve smtp

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	@touch $(STAMP)

setup: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	@$(BIN)/python -m resources.dbt >/dev/null

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# The demo replays each program's latest complete partition today: win-back's is last month's, whose touches are
# older than its delivery.staleAfterHours, so a plain `engage run` records them `stale` (as a backfill should);
# the demo sends them anyway to show every channel.
run: setup
	$(BIN)/engage run --scale $(SCALE) --send-stale

# The house rules first (seconds), then the suite: lint and format, layers (import-linter), types, tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

# One worker by default: on 2 cores shared with a batch writer (and the bench's load generator) the tail is shorter
# and steadier with one (bench, p99 during a 25k write: 6.6-8.0 ms at 3,700-3,900 req/s; two workers: 7.6-12.4 ms
# at 4,900-6,300 req/s).  On more cores: make serve SERVE_WORKERS=<cores>.
SERVE_WORKERS ?= 1
SERVE = $(BIN)/uvicorn engage_assets.serving.server:app_from_settings --factory --host 127.0.0.1 --port 8000 \
	--loop uvloop --http httptools --no-access-log --timeout-graceful-shutdown 10 --workers $(SERVE_WORKERS)

# Dagster UI + daemon (schedules, due-touch sensors), with the SMTP capture server and the serving API beside it.
dev: setup
	$(BIN)/python -m engage_assets.demo.smtp_capture & SMTP=$$!; \
	$(SERVE) & API=$$!; \
	trap 'kill $$SMTP $$API' EXIT INT TERM; \
	$(BIN)/dagster dev -w workspace.yaml

# Local SMTP capture server (port 2525): every e-mail delivery sends becomes $(ENGAGE_HOME)/mail/<program>/<key>.eml
smtp: setup
	$(BIN)/python -m engage_assets.demo.smtp_capture --workers 2

# Serving API on the embedded store (ENGAGE_HOME); no access log (paths hold customer ids): the app logs routes.
serve: setup
	$(SERVE)

# Program configs, their messages and filter expressions (engage validate), then the whole Dagster graph.
validate: setup
	$(BIN)/engage validate
	$(BIN)/dagster definitions validate -w workspace.yaml

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(ENGAGE_HOME) $(DAGSTER_HOME) dbt_project/target
