# Thin shortcuts over setup.sh, the `marketmon` CLI, pytest, ruff, mypy and Celery.
# `make help` lists them.

VENV := .venv
BIN := $(VENV)/bin
CELERY := $(BIN)/celery -A app.workers.celery_app
PYTEST_ARGS ?=
RUN_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup run test lint fmt migrate screenshots worker-monitoring worker-alerts beat flower bench bench-full

help: ## List the commands
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-20s %s\n", $$1, $$2}'

# The virtualenv is created by setup.sh the first time any command needs it.
$(BIN)/marketmon:
	./setup.sh

setup: ## Create .venv, install, write .env, migrate and load templates (idempotent)
	./setup.sh

run: $(BIN)/marketmon ## Run the API with migrations applied: http://127.0.0.1:8000 (RUN_ARGS="--port 9000")
	$(BIN)/marketmon run $(RUN_ARGS)

test: $(BIN)/marketmon ## Run the test suite on SQLite and PostgreSQL (PYTEST_ARGS="-k auth")
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(BIN)/marketmon ## ruff check, ruff format --check, mypy (strict) on app/
	@status=0; \
	echo "ruff check ."; $(BIN)/ruff check . || status=1; \
	echo "ruff format --check ."; $(BIN)/ruff format --check . || status=1; \
	echo "mypy app"; $(BIN)/mypy app || status=1; \
	exit $$status

fmt: $(BIN)/marketmon ## Format and auto-fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: $(BIN)/marketmon ## Upgrade the database to the newest migration
	$(BIN)/marketmon migrate

screenshots: $(BIN)/marketmon ## Refresh README's screenshots from a real Chromium (docs/screenshots)
	DASHBOARD_SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest -q tests/web/test_browser.py -k "finds_hides"

bench: $(BIN)/marketmon ## Benchmarks, quick size (a few minutes; needs PostgreSQL and Redis)
	$(BIN)/python -m bench --quick

bench-full: $(BIN)/marketmon ## Benchmarks at the sizes the README quotes (10-15 min), into bench/results/full.json
	$(BIN)/python -m bench --full
	cp bench/results/latest.json bench/results/full.json

worker-monitoring: $(BIN)/marketmon ## Celery worker for the marketplace_monitoring queue
	$(CELERY) worker -Q marketplace_monitoring -l info -c 4

worker-alerts: $(BIN)/marketmon ## Celery worker for the alerts queue
	$(CELERY) worker -Q alerts -l info -c 2

beat: $(BIN)/marketmon ## Celery beat (the scheduler; run exactly one)
	$(CELERY) beat -l info

flower: $(BIN)/marketmon ## Flower, the Celery dashboard, on http://127.0.0.1:5555
	$(CELERY) flower --address=127.0.0.1 --port=5555
