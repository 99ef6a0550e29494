#!/usr/bin/env bash
# `make run`: migrate, seed and serve with gunicorn on http://$HOST:$PORT.
# Without DATABASE_URL (in the environment or .env) an embedded PostgreSQL is
# started, with its data kept under instance/pgdata, and stopped on exit. In
# development the signing keys are made on first run and kept in
# instance/secrets.json (mode 0600).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

export APP_ENV="${APP_ENV:-$("$BIN/python" -c 'from dotenv import dotenv_values; print(dotenv_values(".env").get("APP_ENV") or "development")')}"
if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL="$("$BIN/python" -c 'from dotenv import dotenv_values; print(dotenv_values(".env").get("DATABASE_URL") or "")')"
fi
if [ -z "$DATABASE_URL" ]; then
  echo "DATABASE_URL is not set: starting the embedded PostgreSQL (data in instance/pgdata)"
  DATABASE_URL="$("$BIN/python" scripts/embedded_pg.py start)"
  trap '"$BIN/python" scripts/embedded_pg.py stop' EXIT
fi
# A superuser URL (the embedded server's, or one you gave): create the service's
# roles from it and use them instead (wafaa/db_roles.py). Any other URL is taken
# as set up by a DBA, with MIGRATION_DATABASE_URL naming the schema owner.
eval "$("$BIN/python" -m wafaa.db_roles "$DATABASE_URL")"
export DATABASE_URL
if [ -n "${MIGRATION_DATABASE_URL:-}" ]; then export MIGRATION_DATABASE_URL; fi

# Before anything is seeded: development on a non-loopback address needs a
# password of your own for the demo admins (wafaa/startup_checks.py).
"$BIN/python" -m wafaa.startup_checks "${HOST:-127.0.0.1}"
"$BIN/flask" --app wsgi db upgrade
"$BIN/flask" --app wsgi seed
echo "Serving on http://${HOST:-127.0.0.1}:${PORT:-8000} (API docs: /docs). Ctrl-C stops."
# The service itself never holds the schema owner's credentials.
env -u MIGRATION_DATABASE_URL "$BIN/gunicorn" -c gunicorn.conf.py wsgi:app
