#!/bin/sh
# run.sh CONNINFO [FILE.sql ...] — the SQL-level tests of the migrations' functions.
#
# CONNINFO names an EMPTY database (libpq conninfo or URI; the tests truncate every
# table). The script applies migrations/[0-9]*.sql in order with psql, loads lib.sql
# (assertion helpers, schema cmdb_test), then runs each test file (default: every
# tests/sql/t_*.sql) in its own psql session with ON_ERROR_STOP: a failed assertion
# RAISEs and fails that file. A file is one test case, named after it (t_01_nodes).
# Prints one line per case, "PASS t_01_nodes (0.31 s)" or "FAIL t_01_nodes (0.12 s)"
# followed by psql's output indented by four spaces (tests/e2e/runner.py reads these
# lines: make test reports each case by name). Exits 1 if any failed, 2 on usage or
# set-up errors.
set -u

if [ $# -lt 1 ]; then
    echo "usage: $0 CONNINFO [FILE.sql ...]   (CONNINFO: an empty database)" >&2
    exit 2
fi
conn=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
psql="psql -X -q -v ON_ERROR_STOP=1"
PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
export PGOPTIONS

for m in "$root"/migrations/[0-9]*.sql; do
    if ! $psql -d "$conn" -f "$m" >/dev/null; then
        echo "FAIL migration $(basename "$m")" >&2
        exit 2
    fi
done
if ! $psql -d "$conn" -f "$here/lib.sql" >/dev/null; then
    echo "FAIL lib.sql" >&2
    exit 2
fi

[ $# -gt 0 ] || set -- "$here"/t_*.sql
failed=0
for t in "$@"; do
    name=$(basename "$t" .sql)
    t0=$(date +%s.%N)
    if out=$($psql -o /dev/null -d "$conn" -f "$t" 2>&1); then
        status=PASS
    else
        status=FAIL
        failed=1
    fi
    secs=$(echo "$t0 $(date +%s.%N)" | awk '{ printf "%.2f", $2 - $1 }')
    echo "$status $name ($secs s)"
    if [ $status = FAIL ]; then
        printf '%s\n' "$out" | sed 's/^/    /'
    fi
done
exit $failed
