#!/bin/sh
# run.sh CONNINFO — the SQL-level tests of the migrations' functions.
#
# CONNINFO names an EMPTY database (libpq conninfo or URI; the tests truncate every
# table). The script applies migrations/[0-9]*.sql in order with psql, loads lib.sql
# (assertion helpers, schema cmdb_test), then runs each tests/sql/t_*.sql in its own
# psql session with ON_ERROR_STOP: a failed assertion RAISEs and fails that file.
# Prints one "ok"/"FAIL" line per file; exits 1 if any failed, 2 on usage/set-up errors.
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 CONNINFO   (an empty database)" >&2
    exit 2
fi
conn=$1
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

failed=0
for t in "$here"/t_*.sql; do
    name=$(basename "$t" .sql)
    if out=$($psql -o /dev/null -d "$conn" -f "$t" 2>&1); then
        echo "ok   $name"
    else
        echo "FAIL $name"
        printf '%s\n' "$out" | sed 's/^/    /'
        failed=1
    fi
done
exit $failed
