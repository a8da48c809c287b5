#!/bin/bash
# run.sh — `make run`: everything a fresh Debian 12 machine needs to serve cmdbd.
#
# Installs missing packages (apt when root, else prints the line), builds, starts the
# private PostgreSQL cluster under .cmdb/ (skipped when CMDB_DATABASE_URL is set: that
# database is used instead), migrates, makes an admin token in .cmdb/admin.token (0600)
# unless a valid one is there, and serves on ${CMDB_LISTEN:-127.0.0.1:8080} in the
# foreground. Ctrl-C or SIGTERM stops the server gracefully, then the cluster.
#
# The server dies with this script however the script dies, SIGKILL included (it gets
# SIGTERM from the kernel, see below); the cluster then keeps running, as after any
# unclean exit, and the next run reuses it.
#
# Environment: CMDB_LISTEN, CMDB_DATABASE_URL (above); CMDB_STATE_DIR, where the
# cluster and the token live (default .cmdb in the repository); CMDB_RUN_CMDBD, a cmdbd
# already built to serve with: no package check, no build (the tests use both).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd -P)
cd "$repo"
state=${CMDB_STATE_DIR:-$repo/.cmdb}
token_file=$state/admin.token
listen=${CMDB_LISTEN:-127.0.0.1:8080}
cmdbd=${CMDB_RUN_CMDBD:-$repo/build/cmdbd}

if [ -z "${CMDB_RUN_CMDBD:-}" ]; then
    sh cmdbd/dev/deps.sh run
    make --no-print-directory -j2 build/cmdbd build/cmdb
fi

mkdir -p "$state"
own_cluster=0
if [ -z "${CMDB_DATABASE_URL:-}" ]; then
    sh cmdbd/dev/pgcluster.sh start "$state"
    own_cluster=1
    CMDB_DATABASE_URL=$(sh cmdbd/dev/pgcluster.sh url "$state")
    export CMDB_DATABASE_URL
fi

stop_cluster() {
    if [ "$own_cluster" = 1 ]; then
        sh cmdbd/dev/pgcluster.sh stop "$state" || true
    fi
}
trap stop_cluster EXIT

"$cmdbd" migrate

# Is the saved token still one this database accepts? (A new cluster, or a revoked or
# expired token, needs a new one.) Only its hash is compared.
token_valid() {
    local hash n
    [ -s "$token_file" ] || return 1
    hash=$(tr -d '\n' <"$token_file" | sha256sum | cut -c1-64)
    n=$(psql -X -q -t -A -d "$CMDB_DATABASE_URL" -c "SELECT count(*) FROM tokens
        WHERE hash = '$hash' AND revoked_at IS NULL
          AND (expires_at IS NULL OR expires_at > now())" 2>/dev/null) || return 1
    [ "$n" = 1 ]
}

if ! token_valid; then
    [ -e "$token_file" ] && echo "run.sh: $token_file is not valid for this database; making a new one" >&2
    # umask 077: the file is 0600 from its first byte.
    (
        umask 077
        "$cmdbd" token create --name "admin-$(date +%s)" --scope admin >"$token_file.new"
    ) || {
        rm -f "$token_file.new"
        exit 1
    }
    mv "$token_file.new" "$token_file"
fi

cat <<BANNER

  cmdbd serving on http://$listen
  web UI:       http://$listen/ui/    (paste the admin token when it asks)
  admin token:  $token_file    (export CMDB_TOKEN=\$(cat $token_file))
  CLI:          $repo/build/cmdb    (CMDB_URL=http://$listen)
  database:     $CMDB_DATABASE_URL
  Ctrl-C stops the server$([ $own_cluster = 1 ] && echo " and the database").

BANNER

# The server runs in its own session, so a Ctrl-C on the terminal reaches only this
# script, which passes exactly one signal on and waits for a graceful exit.
#
# It dies with this script: setpriv (util-linux) asks the kernel to send it SIGTERM when
# its parent, this script, dies (PR_SET_PDEATHSIG, kept across exec). The sh between
# setpriv and cmdbd closes the one gap, a script that died before that request: then
# its parent is no longer this script and it exits instead of serving. setsid and
# setpriv exec, so cmdbd is the child started here and $! is its pid.
setsid setpriv --pdeathsig TERM -- \
    sh -c '[ "$PPID" = "$1" ] || exit 1; shift; exec "$@"' sh $$ \
    "$cmdbd" serve --listen "$listen" &
pid=$!
forward() {
    kill -s "$1" "$pid" 2>/dev/null || true
}
trap 'forward INT' INT
trap 'forward TERM' TERM HUP

# `wait` returns early when a trapped signal arrives: wait again until cmdbd is gone.
status=0
while kill -0 "$pid" 2>/dev/null; do
    wait "$pid" && status=0 || status=$?
done
exit $status
