# The two commands a newcomer needs: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export HOST ?= 127.0.0.1
export PORT ?= 8000

.PHONY: run test test-plain test-pgbouncer test-citus lint format bench lock clean

# The API tests that the lanes run again in other setups (scripts/lane.sh).
LANE_TESTS := tests/test_auth_login.py tests/test_oauth_token.py tests/test_auth_refresh.py tests/test_auth_logout_sessions.py \
	tests/test_auth_concurrency.py tests/test_tenant_api.py tests/test_admin_api.py tests/test_audit_api.py \
	tests/test_audit_trail.py tests/test_etags.py tests/test_cross_tenant.py tests/test_isolation_concurrency.py \
	tests/test_isolation_rls.py tests/test_hot_paths.py tests/test_abuse_api.py tests/test_ratelimit.py \
	tests/test_scale_out.py
# The Citus lane's: the API tests, and what only Citus shows (tests/test_citus.py).
CITUS_LANE_TESTS := tests/test_citus.py tests/test_auth_login.py tests/test_auth_refresh.py \
	tests/test_auth_logout_sessions.py tests/test_auth_concurrency.py tests/test_tenant_api.py \
	tests/test_admin_api.py tests/test_audit_api.py tests/test_cross_tenant.py tests/test_isolation_concurrency.py

# Create .venv and install the pinned requirements (again whenever they change).
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.txt -r requirements-dev.txt
	@touch $@

## Install, migrate, seed and serve on http://$(HOST):$(PORT) (embedded PostgreSQL without DATABASE_URL)
run: $(VENV)/.installed
	scripts/run.sh

## Lint, the whole suite with coverage (TEST_DATABASE_URL, else an embedded PostgreSQL), then every lane
## (a lane whose engine is not installed is skipped, saying so and why; never in CI)
test: test-plain test-pgbouncer test-citus

test-plain: $(VENV)/.installed lint
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=90

## The API tests with the service behind a PgBouncer in transaction mode (Debian's pgbouncer)
test-pgbouncer: $(VENV)/.installed
	scripts/lane.sh pgbouncer $(LANE_TESTS)

## The API tests against a Citus coordinator and two workers of the tests' own (ports 29501-29503)
test-citus: $(VENV)/.installed
	scripts/lane.sh citus $(CITUS_LANE_TESTS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Benchmark under gunicorn with production settings (prints a table and a JSON line)
bench: $(VENV)/.installed
	$(BIN)/python bench/run.py

## Re-pin requirements*.txt from requirements*.in
lock: $(VENV)/.installed
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links -o requirements.txt requirements.in
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links -o requirements-dev.txt requirements-dev.in

clean:
	-$(BIN)/python scripts/embedded_pg.py stop --data instance/pgdata
	rm -rf $(VENV) .pytest_cache .ruff_cache .coverage .coverage.* htmlcov
