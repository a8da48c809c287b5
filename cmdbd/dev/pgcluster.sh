#!/bin/sh
# pgcluster.sh start|stop|status|url|destroy DIR [DBNAME]
#
# A private PostgreSQL 15 cluster for development and tests, owned by the directory DIR
# (`make run` uses .cmdb/). It listens on a unix socket only (listen_addresses=''), so
# any number of such clusters coexist with each other and with a system cluster.
#
#   start    initdb if needed, start the server if it is not running, create the
#            database `cmdb` if absent. Idempotent: a second start reuses everything.
#   stop     stop the server (fast shutdown); no-op when it is not running.
#   status   exit 0 when the server runs, 3 when not (like pg_ctl status).
#   url      print the libpq conninfo of database DBNAME (default cmdb).
#   destroy  stop, then delete the data directory and its socket directory.
#
# Where the data lives. Normally in DIR/pg/. When we are root the server runs as the
# `postgres` user, which cannot traverse a checkout under a 0700 home (/root/...); then the
# cluster goes to /var/tmp/cmdbd-<hash of DIR's real path>/ and that path is recorded in
# DIR/pgdata.location, so the next start finds the same data. The unix socket path must
# fit in sun_path (~107 bytes): if BASE/run is too long the socket goes to a short
# directory under /tmp instead.
#
# Environment: PGCLUSTER_THROWAWAY=1 trades durability for speed (initdb --no-sync,
# fsync=off): for test clusters that are deleted afterwards.
set -eu

PGBIN=/usr/lib/postgresql/15/bin # never $PATH: some machines carry stray copies
PGPORT=5432

die() {
    echo "pgcluster: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start|stop|status|url|destroy DIR [DBNAME]" >&2
    exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
dbname=${3:-cmdb}

[ -x "$PGBIN/pg_ctl" ] || die "$PGBIN/pg_ctl not found: install postgresql-15 (cmdbd/dev/deps.sh run)"

is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1

# Run a server-side program as the cluster's owner. From / so that a cwd the postgres
# user cannot read (a 0700 home) produces no warnings.
as_owner() {
    if [ $is_root -eq 1 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# Can the cluster's owner reach (search) this directory, ancestors included?
owner_can_reach() {
    if [ $is_root -eq 1 ]; then
        (cd / && runuser -u postgres -- test -x "$1" -a -r "$1") 2>/dev/null
    else
        test -x "$1"
    fi
}

# Make a directory owned by the cluster's owner, mode 0700 (what initdb wants).
make_owned_dir() {
    mkdir -p "$1"
    if [ $is_root -eq 1 ]; then
        chown postgres:postgres "$1"
    fi
    chmod 700 "$1"
}

# --- locate the cluster -------------------------------------------------------------

case $cmd in
start) mkdir -p "$dir" ;;
stop | status | url | destroy) [ -d "$dir" ] || die "$dir: no such directory" ;;
*) usage ;;
esac
dir=$(cd "$dir" && pwd -P)
hash=$(printf '%s' "$dir" | sha256sum | cut -c1-12)

if [ -f "$dir/pgdata.location" ]; then
    base=$(head -n1 "$dir/pgdata.location")
    [ -n "$base" ] || die "$dir/pgdata.location is empty"
elif [ -d "$dir/pg" ] || owner_can_reach "$dir"; then
    base=$dir/pg
else
    base=/var/tmp/cmdbd-$hash
    [ "$cmd" = start ] && printf '%s\n' "$base" >"$dir/pgdata.location"
fi
data=$base/data
logfile=$base/postgres.log
sockdir=$base/run
# ".s.PGSQL.5432.lock" is the longest name the server puts in the socket directory.
if [ $((${#sockdir} + 20)) -ge 100 ]; then
    sockdir=/tmp/cmdbd-$hash
fi

conninfo() {
    echo "host=$sockdir port=$PGPORT dbname=$1 user=postgres"
}

running() {
    [ -f "$data/PG_VERSION" ] && as_owner "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1
}

# --- commands -----------------------------------------------------------------------

do_start() {
    if [ ! -f "$data/PG_VERSION" ]; then
        make_owned_dir "$base"
        nosync=""
        [ "${PGCLUSTER_THROWAWAY:-0}" = 1 ] && nosync=--no-sync
        locale=C.UTF-8
        locale -a 2>/dev/null | grep -qix 'C\.UTF-\?8' || locale=C
        as_owner "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 \
            --locale="$locale" $nosync >"$base/initdb.log" 2>&1 ||
            {
                cat "$base/initdb.log" >&2
                die "initdb failed"
            }
    fi
    if ! running; then
        make_owned_dir "$sockdir"
        opts="-k $sockdir -c listen_addresses='' -p $PGPORT"
        if [ "${PGCLUSTER_THROWAWAY:-0}" = 1 ]; then
            opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        fi
        # The log file must be writable by the server's owner.
        touch "$logfile"
        if [ $is_root -eq 1 ]; then
            chown postgres:postgres "$logfile"
        fi
        if ! as_owner "$PGBIN/pg_ctl" -D "$data" -l "$logfile" -w -t 60 -o "$opts" start >/dev/null; then
            tail -n 20 "$logfile" >&2
            die "could not start the cluster in $data"
        fi
    fi
    # Create the application database once. Connect as the superuser over the socket.
    exists=$("$PGBIN/psql" -X -q -t -A -d "$(conninfo postgres)" \
        -c "SELECT 1 FROM pg_database WHERE datname = 'cmdb'") ||
        die "cannot connect to the cluster at $sockdir"
    if [ "$exists" != 1 ]; then
        "$PGBIN/createdb" -h "$sockdir" -p $PGPORT -U postgres cmdb ||
            die "createdb cmdb failed"
    fi
}

do_stop() {
    if running; then
        as_owner "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null ||
            die "could not stop the cluster in $data"
    fi
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
status)
    if running; then
        echo "running: $data (socket $sockdir)"
    else
        echo "not running: $data"
        exit 3
    fi
    ;;
url) conninfo "$dbname" ;;
destroy)
    do_stop
    # Remove only what start made; never `rm -rf $base` on a path read from a file.
    rm -rf "$data" "$sockdir" "$base/run"
    rm -f "$logfile" "$base/initdb.log" "$dir/pgdata.location"
    rmdir "$base" 2>/dev/null || true
    ;;
esac
