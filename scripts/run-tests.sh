#!/usr/bin/env bash
# Runs the test suite: starts a throwaway PostgreSQL cluster (when the server is installed and
# we are root) so the store's tests run against it as well as SQLite, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
pg_dir=""
cleanup() { [ -n "$pg_dir" ] && su postgres -c "$(ls -d /usr/lib/postgresql/*/bin | tail -1)/pg_ctl -D $pg_dir -m immediate stop" >/dev/null 2>&1 || true; }
trap cleanup EXIT
if [ -z "${PREFLOOP_TEST_PG_URL:-}" ] && [ "$(id -u)" = 0 ] && ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
  pg_dir=$(mktemp -d /tmp/prefloop-pg.XXXXXX)
  chown postgres "$pg_dir"
  port=55432
  su postgres -c "$pgbin/initdb -D $pg_dir -A trust -U postgres" >/dev/null
  su postgres -c "$pgbin/pg_ctl -D $pg_dir -o '-p $port -k /tmp -c listen_addresses=127.0.0.1' -l $pg_dir/log -w start" >/dev/null
  export PREFLOOP_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
fi
"$BIN/python" -m pytest "$@"
