#!/bin/bash
# tests/bench/bench.sh [s|l] — `make bench`: every cmdbd figure of issue 7 beside a
# baseline measured in the same run, on this machine.
#
# Expects the binaries built in $CMDB_BUILD_DIR (default build/bench): cmdbd, loadgen,
# minimal_http (`make bench` builds them first). Then, with everything it starts
# stopped and deleted on exit, Ctrl-C included:
#   1. a private PostgreSQL 15 cluster (cmdbd/dev/pgcluster.sh; durable: fsync and
#      synchronous_commit on) with pg_stat_statements, a migrated database and an admin
#      token, and cmdbd serving on a free port;
#   2. the estate (tests/bench/gen_estate.py, seeded) posted through POST /v1/manifests by
#      8 keep-alive clients: first apply, next generation, identical re-post;
#   3. GET node and owners (8 connections, DURATION s each) beside minimal_http;
#   4. dependents/dependencies of the hubs (one client, sequential) beside the same walk
#      as WITH RECURSIVE in PostgreSQL (pgbench, one client);
#   5. pgbench -S and -N, and fdatasync/s, on the same cluster;
#   6. cmdbd restarted on the loaded map: exec to /readyz 200; RSS;
#   6b. a hot standby of the cluster and a second cmdbd reading it: its lag behind
#      writes made through the first (tests/bench/standby_lag.py);
#   7. as_of one day back on ~1M change rows at SIZE=l (history.sql, synthetic);
#   8. the Backstage-like catalog fed per deploy into a fresh database, beside the same
#      catalog as one bulk manifest into another fresh database.
# Prints the table and writes $CMDB_BUILD_DIR/results-SIZE.md and .json (report.py),
# plus pgss-SIZE.txt (the top statements of pg_stat_statements during ingest).
#
# Environment: CMDB_BENCH_DURATION (seconds per GET rate, default 5), CMDB_BENCH_COMMIT
# (what to call the code measured when it is not a git checkout),
# CMDB_BENCH_KEEP=1 (keep the temp dir: estate, logs; the cluster is still destroyed).
set -euo pipefail

size=${1:-s}
case $size in s | l) ;; *)
    echo "usage: $0 [s|l]" >&2
    exit 2
    ;;
esac
repo=$(cd "$(dirname "$0")/../.." && pwd -P)
cd "$repo"
build=$repo/${CMDB_BUILD_DIR:-build/bench}
here=$repo/tests/bench
duration=${CMDB_BENCH_DURATION:-5}
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3 # Debian's, standard library only
CMDBD=$build/cmdbd
LOADGEN=$build/loadgen
for bin in "$CMDBD" "$LOADGEN" "$build/minimal_http"; do
    [ -x "$bin" ] || {
        echo "bench: $bin is missing: run make bench" >&2
        exit 1
    }
done

# 0755 so that the postgres user can reach the cluster and the COPY files inside.
tmp=$(mktemp -d /tmp/cmdbd-bench.XXXXXX)
chmod 755 "$tmp"
raw=$tmp/raw.jsonl
: >"$raw"
server_pid=""
minimal_pid=""

stop_pid() { # PID: SIGTERM, wait up to 15 s, then SIGKILL
    local pid=$1 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_pid "$server_pid"
    stop_pid "$minimal_pid"
    sh cmdbd/dev/pgcluster.sh destroy "$tmp/cluster" >/dev/null 2>&1 || true
    if [ "${CMDB_BENCH_KEEP:-0}" = 1 ]; then
        echo "bench: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

say() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }

# note KEY VALUE: one raw figure (a number or a JSON value).
note() { printf '{"label":"%s","value":%s}\n' "$1" "$2" >>"$raw"; }

free_port() {
    $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# load LABEL MODE ARGS...: run loadgen, keep its JSON line, show it.
load() {
    local label=$1 mode=$2 line
    shift 2
    line=$("$LOADGEN" "$mode" -l "$label" "$@")
    echo "$line" >>"$raw"
    say "$line"
}

psql_q() { # DB_URL SQL...
    local url=$1
    shift
    "$PGBIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 -d "$url" "$@"
}

# --- PostgreSQL -----------------------------------------------------------------------

start_cluster() {
    say "starting a private PostgreSQL cluster (durable: fsync on) in $tmp/cluster"
    sh cmdbd/dev/pgcluster.sh start "$tmp/cluster"
    admin=$(sh cmdbd/dev/pgcluster.sh url "$tmp/cluster" postgres)
    # pg_stat_statements needs a preload, hence one restart.
    psql_q "$admin" -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
    sh cmdbd/dev/pgcluster.sh stop "$tmp/cluster"
    sh cmdbd/dev/pgcluster.sh start "$tmp/cluster"
    # Statements inside the SQL functions too: that is where a manifest's time goes.
    # (Known to the server only once the library is loaded.)
    psql_q "$admin" -c "ALTER SYSTEM SET pg_stat_statements.track = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
    note pg_settings "$(psql_q "$admin" -c "SELECT json_object_agg(name, setting) FROM pg_settings
        WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers',
                       'wal_level', 'max_connections', 'server_version')")"
}

new_db() { # NAME: create a database; print its conninfo
    psql_q "$admin" -c "CREATE DATABASE \"$1\""
    sh cmdbd/dev/pgcluster.sh url "$tmp/cluster" "$1"
}

# --- cmdbd ------------------------------------------------------------------------------

# prepare_db URL: migrate; print an admin token. Their logs are shown only on failure.
prepare_db() {
    local log=$tmp/cmdbd-migrate.log
    CMDB_DATABASE_URL=$1 "$CMDBD" migrate >/dev/null 2>>"$log" &&
        CMDB_DATABASE_URL=$1 "$CMDBD" token create --name "bench-$RANDOM" --scope admin \
            2>>"$log" || {
        cat "$log" >&2
        exit 1
    }
}

# serve URL LOG: start cmdbd, wait for /readyz; sets server_pid, port and ready_s.
serve() {
    local t0 t1
    port=$(free_port)
    t0=$(date +%s%N)
    CMDB_DATABASE_URL=$1 "$CMDBD" serve --listen "127.0.0.1:$port" >>"$2" 2>&1 &
    server_pid=$!
    t1=$("$LOADGEN" ready -u "http://127.0.0.1:$port" -T 600) || {
        tail -n 20 "$2" >&2
        exit 1
    }
    ready_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
}

# --- phases -----------------------------------------------------------------------------

generate() {
    say "generating the estate (SIZE=$size)"
    $PY "$here/gen_estate.py" --size "$size" --out "$tmp/estate" >/dev/null
    note estate "$($PY -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))' \
        "$tmp/estate/meta.json")"
}

ingest() {
    local lg=(-u "$url" -t "$token" -c 8)
    say "ingest: first apply, next generation, identical re-post (8 clients)"
    load first_apply post "${lg[@]}" "$tmp/estate/gen1.bodies"
    load next_generation post "${lg[@]}" "$tmp/estate/gen2.bodies"
    load identical_repost post "${lg[@]}" "$tmp/estate/gen2.bodies"
    note rss_after_load_kb "$(rss_kb "$server_pid")"
    psql_q "$db" -c "SELECT json_build_object('nodes', (SELECT count(*) FROM nodes),
        'edges', (SELECT count(*) FROM edges))" | { read -r v && note map_in_db "$v"; }
    psql_q "$db" >"$build/pgss-$size.txt" <<'SQL' || true
\pset format aligned
\pset tuples_only off
SELECT calls, round(total_exec_time) AS total_ms, round(mean_exec_time::numeric, 2) AS mean_ms,
       rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query
  FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25;
SQL
}

gets() {
    local lg=(-t "$token" -c 8 -d "$duration")
    say "GET rates: minimal evhttp server, node, owners (8 connections, $duration s each)"
    local mport
    mport=$(free_port)
    "$build/minimal_http" "$mport" &
    minimal_pid=$!
    "$LOADGEN" ready -u "http://127.0.0.1:$mport" -T 10 >/dev/null
    load get_minimal get -u "http://127.0.0.1:$mport" "${lg[@]}" "$tmp/estate/get-nodes.paths"
    stop_pid "$minimal_pid"
    minimal_pid=""
    load get_node get -u "$url" "${lg[@]}" "$tmp/estate/get-nodes.paths"
    load get_owners get -u "$url" "${lg[@]}" "$tmp/estate/get-owners.paths"
    say "graph queries: dependents and dependencies of the hubs (1 client)"
    load dependents get -u "$url" -t "$token" -c 1 "$tmp/estate/dependents.paths"
    load dependencies get -u "$url" -t "$token" -c 1 "$tmp/estate/dependencies.paths"
    note rss_after_queries_kb "$(rss_kb "$server_pid")"
}

# pgb_latency LABEL PGBENCH-ARGS...: one client, per-transaction log → p50/p99.
pgb_latency() {
    local label=$1 out
    shift
    out=$("$PGBIN/pgbench" -n -c 1 -l --log-prefix="$tmp/pgb-$label" "$@" 2>&1) || {
        echo "$out" >&2
        exit 1
    }
    out=$($PY "$here/report.py" pgbench-log "$label" "$tmp"/pgb-"$label".*)
    echo "$out" >>"$raw"
    say "$out"
}

sql_walks() {
    say "the same walks as WITH RECURSIVE in PostgreSQL (pgbench, 1 client)"
    local walk n req
    walk=$(new_db walk)
    psql_q "$walk" -v dir="$tmp/estate" -f "$here/walk.sql" | { read -r v && note walk_db "\"$v\""; }
    # As many as cmdbd answered; on the large map a walk takes ~1 s, so 100 there.
    req=$(wc -l <"$tmp/estate/dependents.paths")
    [ "$size" = l ] && req=100
    for what in dependents dependencies; do
        n=$(wc -l <"$tmp/estate/walk-$what.roots")
        pgb_latency "sql_$what" -t "$req" -D nroots="$n" -f "$here/walk_$what.sql" "$walk"
    done
}

# pgb_tps LABEL ARGS...: pgbench's "tps = N (without initial connection time)".
pgb_tps() {
    local label=$1 tps
    shift
    tps=$("$PGBIN/pgbench" -n "$@" 2>&1 | awk '/^tps = / { print $3 }')
    [ -n "$tps" ] || {
        echo "bench: pgbench $* printed no tps" >&2
        exit 1
    }
    note "$label" "$tps"
    say "$label: $tps tps"
}

pg_baselines() {
    say "pgbench -S and -N (8 clients, 2 threads, 10 s each), fdatasync/s"
    local pgb
    pgb=$(new_db pgbench)
    "$PGBIN/pgbench" -i -q -s 10 "$pgb" >/dev/null 2>&1
    pgb_tps pgbench_select_only -S -c 8 -j 2 -T 10 "$pgb"
    pgb_tps pgbench_simple_update -N -c 8 -j 2 -T 10 "$pgb"
    # pg_test_fsync's one-8kB-write-then-fdatasync loop, on the cluster's file system.
    note fdatasync_per_s "$($PY -c '
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
buf, n, t0 = b"\0" * 8192, 0, time.monotonic()
while time.monotonic() - t0 < 2:
    os.pwrite(fd, buf, 0); os.fdatasync(fd); n += 1
print("%.0f" % (n / (time.monotonic() - t0)))
os.close(fd); os.unlink(sys.argv[1])' "$tmp/fsync.test")"
}

restart() {
    say "restart on the loaded map: exec to /readyz 200"
    stop_pid "$server_pid"
    serve "$db" "$tmp/cmdbd.log"
    note start_to_ready_s "$ready_s"
    note rss_after_restart_kb "$(rss_kb "$server_pid")"
    local ms
    ms=$(grep -o 'event=graph_loaded.* ms=[0-9]*' "$tmp/cmdbd.log" | tail -n 1 | sed 's/.*ms=//')
    note graph_loaded_ms "${ms:-null}"
}

standby() {
    say "a second cmdbd reading a hot standby (CMDB_READ_DATABASE_URL): lag behind writes"
    local line
    line=$($PY "$here/standby_lag.py" "$(sh cmdbd/dev/pgcluster.sh url "$tmp/cluster" postgres | sed 's/ dbname=postgres//')" \
        cmdb "http://127.0.0.1:$port" "$token" "$CMDBD" "$tmp/standby") || exit 1
    echo "$line" >>"$raw"
    say "$line"
}

catalog() {
    say "Backstage-like catalog fed per deploy into a fresh database, then as one bulk manifest"
    stop_pid "$server_pid"
    local cdb ctok
    cdb=$(new_db catalog)
    ctok=$(prepare_db "$cdb")
    serve "$cdb" "$tmp/cmdbd-catalog.log"
    load catalog_per_deploy post -u "http://127.0.0.1:$port" -t "$ctok" -c 8 "$tmp/estate/catalog.bodies"
    stop_pid "$server_pid"
    cdb=$(new_db catalog_bulk)
    ctok=$(prepare_db "$cdb")
    serve "$cdb" "$tmp/cmdbd-catalog.log"
    load catalog_bulk post -u "http://127.0.0.1:$port" -t "$ctok" -c 1 "$tmp/estate/catalog-bulk.bodies"
    stop_pid "$server_pid"
    server_pid=""
}

# as_of (issue 9): synthetic history (history.sql), then the same graph questions one day
# back (one moment, as an investigation asks them) beside the same questions now, and
# a new moment every request (each one a build).
history() {
    local n=25000 seq have t lo url=http://127.0.0.1:$port # restart() moved the port
    [ "$size" = l ] && n=250000
    say "history: $n pairs of synthetic change rows (history.sql), at spread over 30 days"
    seq=$(psql_q "$db" -v pairs="$n" -f "$here/history.sql" | tail -n 1)
    note change_rows "$seq"
    for _ in $(seq 600); do # the tailer applies the new rows
        have=$($PY -c 'import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1] + "/readyz")).get("seq", 0))' "$url")
        [ "$have" -ge "$seq" ] && break
        sleep 1
    done
    t=$(date -u -d '1 day ago' +%Y-%m-%dT%H:%M:%SZ)
    { head -n 100 "$tmp/estate/dependents.paths"; head -n 100 "$tmp/estate/get-owners.paths"
      head -n 100 "$tmp/estate/get-nodes.paths"; } >"$tmp/now.paths"
    sed "s|\$|?as_of=$t|" "$tmp/now.paths" >"$tmp/as_of.paths"
    say "as_of one day back ($t): dependents of the hubs, owners, node GET (1 client)"
    load as_of_now get -u "$url" -t "$token" -c 1 -n 600 "$tmp/now.paths"
    load as_of_day_back get -u "$url" -t "$token" -c 1 -n 600 "$tmp/as_of.paths"
    grep -o 'event=as_of_built.*' "$tmp/cmdbd.log" | tail -n 1 |
        sed 's/.*how=\([a-z]*\) rows=\([0-9]*\).* bytes=\([0-9]*\) ms=\([0-9.]*\).*/{"how":"\1","rows":\2,"bytes":\3,"ms":\4}/' |
        { read -r v && note as_of_build "$v"; }
    # A new moment each request: 12 seqs within the last day, each a build.
    lo=$(psql_q "$db" -c "SELECT min(seq) FROM changes WHERE at > now() - interval '1 day'")
    head -n 1 "$tmp/estate/dependents.paths" | while read -r p; do
        for i in $(seq 12); do echo "$p?as_of=$((lo + (seq - lo) * i / 13))"; done
    done >"$tmp/as_of_new.paths"
    load as_of_new_moment get -u "$url" -t "$token" -c 1 -n 12 "$tmp/as_of_new.paths"
    note rss_after_as_of_kb "$(rss_kb "$server_pid")"
}

machine() {
    local commit dirty
    commit=${CMDB_BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
    dirty=$({ git status --porcelain 2>/dev/null || true; } | wc -l)
    note machine "$($PY "$here/report.py" machine "$commit" "$dirty" "$size")"
}

# --- main -------------------------------------------------------------------------------

t_start=$(date +%s)
mkdir -p "$build"
machine
generate
start_cluster
db=$(sh cmdbd/dev/pgcluster.sh url "$tmp/cluster" cmdb)
psql_q "$db" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
token=$(prepare_db "$db")
psql_q "$db" -c "SELECT pg_stat_statements_reset()" >/dev/null
serve "$db" "$tmp/cmdbd.log"
url=http://127.0.0.1:$port
note start_to_ready_empty_s "$ready_s"
ingest
gets
sql_walks
pg_baselines
restart
history
standby
catalog
note bench_seconds "$(($(date +%s) - t_start))"
note loadavg_at_end "$($PY "$here/report.py" loadavg)"
$PY "$here/report.py" table "$raw" "$build/results-$size"
