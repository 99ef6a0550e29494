#!/usr/bin/env bash
# scripts/lane.sh LANE TEST_FILE...: run the API tests in another setup (TEST_LANE,
# tests/conftest.py). A lane whose engine is not installed is skipped, saying so,
# except in CI (CI=true), where that is a failure.
set -euo pipefail
lane=$1
shift
case "$lane" in
  pgbouncer)
    missing=""
    command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing="PgBouncer is not installed (apt-get install pgbouncer)"
    ;;
  citus)
    missing="$(.venv/bin/python -c 'from tests.citus_cluster import citus_installed; print(citus_installed() or "")')"
    ;;
  *)
    echo "unknown lane: $lane" >&2
    exit 2
    ;;
esac
if [ -n "$missing" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "lane $lane: $missing; CI runs every lane" >&2
    exit 1
  fi
  echo "=== lane $lane SKIPPED: $missing ==="
  exit 0
fi
echo "=== lane $lane: ${#@} test files ==="
TEST_LANE="$lane" exec .venv/bin/pytest -q -p no:cacheprovider --no-cov "$@"
