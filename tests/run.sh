#!/bin/bash
# tests/run.sh [--no-db | --valgrind] [TEST...] — run the Check runner (every suite, e2e
# included) against a throwaway PostgreSQL cluster made for this run and deleted
# afterwards, also on failure or Ctrl-C. `make test` builds first, then calls this.
#
#   --no-db     unit tests only: no cluster, CMDB_TEST_ADMIN_URL unset (`make check`)
#   --valgrind  the runner, and every cmdbd the e2e scripts start, under valgrind
#   TEST...     only these end-to-end or SQL tests, by name, and no C suite
#
# Every end-to-end test (tests/e2e/test_*.py, found by glob: a new file needs no
# registration) and every SQL test case (tests/sql/t_*.sql) is a Check test of its own
# (tests/check_e2e.c, tests/e2e/runner.py): the output has a line per test, such as
# "PASS  test_auth.py::Auth.test_expired (0.31 s)" or "PASS  sql::t_02_edges
# (0.28 s)", plus "test_auth.py::(file)" for each file as a whole; a failing test prints
# its output when it fails and is listed again, with its message, after Check's summary.
#
# Running one test by name (after `make`; `make SANITIZE=1` and CMDB_BUILD_DIR=build/san
# for the sanitizer build):
#
#   bash tests/run.sh test_auth.py::Auth.test_expired      one Python test
#   bash tests/run.sh test_auth.py::Auth sql::t_02_edges     a class; a SQL case
#   bash tests/run.sh test_auth                              a whole file
#   CK_RUN_SUITE=token bash tests/run.sh                     one C suite (Check's own
#   CK_RUN_SUITE=db CK_RUN_CASE=pool bash tests/run.sh       knobs), one C test case
#
# The same through make: CK_RUN_SUITE=e2e CMDB_E2E_TESTS=test_auth.py::Auth make test.
# A name that matches no test fails as "(selection)::NAME". Without the runner, one file
# against a cluster of your own: python3 tests/e2e/test_auth.py Auth.test_expired
# (environment as below).
#
# Environment in: CMDB_BUILD_DIR (build, or build/san for SANITIZE=1; default build),
# CMDB_SANITIZE=1 (sanitizer options), Check's own (CK_RUN_SUITE=token, CK_RUN_CASE,
# CK_FORK=no, CK_VERBOSITY=verbose), and the e2e runner's: CMDB_E2E_TESTS (the names
# above), CMDB_E2E_JOBS (units run at once, default 2), CMDB_E2E_TIMEOUT (seconds per
# file, default 600). Environment out, for the tests: CMDB_TEST_ADMIN_URL (superuser
# conninfo of the cluster's `postgres` database), CMDBD_BIN, CMDB_BIN, CMDB_CHECK_BIN
# (absolute paths of the binaries under test), CMDB_REPO (the repository root).
#
# The exit status is the runner's; its summary line is the last line printed: Check's
# "100%: Checks: N, Failures: 0, Errors: 0", counting every C, Python and SQL test.
set -euo pipefail

mode=full
case ${1:-} in
--no-db)
    mode=no-db
    shift
    ;;
--valgrind)
    mode=valgrind
    shift
    ;;
-*)
    echo "usage: $0 [--no-db | --valgrind] [TEST...]" >&2
    exit 2
    ;;
esac
if [ $# -gt 0 ]; then
    if [ $mode = no-db ]; then
        echo "$0: --no-db runs no end-to-end test: cannot select $*" >&2
        exit 2
    fi
    export CK_RUN_SUITE=e2e
    export CMDB_E2E_TESTS="$*"
fi

repo=$(cd "$(dirname "$0")/.." && pwd -P)
build=$repo/${CMDB_BUILD_DIR:-build}
cd "$repo"

if [ $mode = no-db ]; then
    sh cmdbd/dev/deps.sh build
else
    sh cmdbd/dev/deps.sh test
fi

runner=$build/check_cmdb
for bin in "$runner" "$build/cmdbd" "$build/cmdb"; do
    if [ ! -x "$bin" ]; then
        echo "tests/run.sh: $bin is missing: run make first" >&2
        exit 1
    fi
done

export CMDB_REPO=$repo
export CMDBD_BIN=$build/cmdbd
export CMDB_BIN=$build/cmdb
export CMDB_CHECK_BIN=$runner

if [ "${CMDB_SANITIZE:-0}" = 1 ] || [[ $build == */san ]]; then
    # Any sanitizer report ends the process with an error; user options win (last).
    export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:check_initialization_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
fi

if [ $mode = no-db ]; then
    unset CMDB_TEST_ADMIN_URL
    exec "$runner"
fi

# --- the throwaway cluster ----------------------------------------------------------

# 0755 so that the postgres user can reach the cluster inside; the path stays short
# enough for a unix socket.
tmp=$(mktemp -d /tmp/cmdbd-test.XXXXXX)
chmod 755 "$tmp"
cleanup() {
    sh cmdbd/dev/pgcluster.sh destroy "$tmp/cluster" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

PGCLUSTER_THROWAWAY=1 sh cmdbd/dev/pgcluster.sh start "$tmp/cluster"
CMDB_TEST_ADMIN_URL=$(sh cmdbd/dev/pgcluster.sh url "$tmp/cluster" postgres)
export CMDB_TEST_ADMIN_URL

run=("$runner")
if [ $mode = valgrind ]; then
    command -v valgrind >/dev/null || {
        echo "tests/run.sh: valgrind is not installed: apt-get install -y valgrind" >&2
        exit 1
    }
    mkdir "$tmp/valgrind"
    vg=(valgrind --quiet --error-exitcode=99 --leak-check=full
        --errors-for-leak-kinds=definite --show-leak-kinds=definite)
    # The e2e scripts start $CMDBD_BIN: make that cmdbd under valgrind, logging to a
    # file per process (the scripts would swallow its stderr).
    cat >"$tmp/cmdbd-valgrind" <<EOF
#!/bin/sh
exec ${vg[*]} --log-file=$tmp/valgrind/cmdbd.%p.log "$CMDBD_BIN" "\$@"
EOF
    chmod +x "$tmp/cmdbd-valgrind"
    export CMDBD_BIN=$tmp/cmdbd-valgrind
    # Everything is ~20x slower under valgrind.
    export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-10}
    run=("${vg[@]}" "$runner")
fi

set +e
"${run[@]}"
rc=$?
set -e

if [ $mode = valgrind ]; then
    # With --quiet a log holds only errors: any non-empty one fails the run.
    for log in "$tmp"/valgrind/*.log; do
        [ -s "$log" ] || continue
        echo "valgrind found errors in a cmdbd process ($log):"
        cat "$log"
        rc=1
    done
fi
exit $rc
