#!/usr/bin/python3
"""walk_ab.py — `dependents` / `dependencies` over HTTP for two cmdbd builds side by side.

    make BUILD=build/bench build/bench/loadgen
    tests/bench/gen_estate.py --size l --out /tmp/estate
    tests/bench/walk_ab.py --estate /tmp/estate --a OLD/cmdbd --b build/cmdbd [--rounds 5]

Loads the estate's final map (walk-nodes.tsv, walk-edges.tsv: the map `make bench`
leaves after gen2) straight into a freshly migrated database (nodes in random order, as
an ingested map holds them: not sorted by ref), starts both builds on it, and then, for
each round, runs the bench's request lists (dependents.paths: the 16 hubs with the most
dependents; dependencies.paths: the 16 services that need the most; default limit) with
`loadgen get -c 1` against each build in turn, alternating which goes first. Prints, per
build and direction, the median over rounds of each round's p50 and p99, and b / a.
Asserts nothing; not part of `make test`.

  CMDB_TEST_ADMIN_URL  superuser conninfo of a cluster to use (a database is made in it).
                       Unset: a private throwaway cluster in a temp dir, destroyed after.
  --loadgen            the load tool (default build/bench/loadgen).
"""

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import lib  # noqa: E402
from load_graph import admin_or_private_cluster, new_database, rss_mib  # noqa: E402

SQL_MAP = r"""
\set ON_ERROR_STOP 1
CREATE TEMP TABLE wn (kind text, name text);
CREATE TEMP TABLE we (f text, t text, tt text);
\copy wn FROM '{nodes}'
\copy we FROM '{edges}'
SELECT setseed(0.7);
CREATE TEMP TABLE ids AS SELECT gen_random_uuid() AS id, kind, name, kind || '/' || name AS ref
  FROM wn ORDER BY random();
INSERT INTO nodes (id, kind, name) SELECT id, kind, name FROM ids;
CREATE INDEX ON ids (ref);
INSERT INTO edges (from_id, type, to_id)
SELECT f.id, we.t, t.id FROM we JOIN ids f ON f.ref = we.f JOIN ids t ON t.ref = we.tt;
ANALYZE nodes;
ANALYZE edges;
SELECT (SELECT count(*) FROM nodes) || ' ' || (SELECT count(*) FROM edges);
"""


def serve(binary, srv, label):
    port = lib.free_port()
    log_path = srv.log_path + "." + label
    log = open(log_path, "ab")
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:%d" % port],
                            env=srv._env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            preexec_fn=lib._pdeathsig)
    while True:
        if proc.poll() is not None:
            raise SystemExit("%s exited; log %s" % (binary, log_path))
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        if time.monotonic() - t0 > 600:
            raise SystemExit("%s not ready; log %s" % (binary, log_path))
        time.sleep(0.05)
    ready = time.monotonic() - t0
    m = re.search(r"event=graph_loaded .*", open(log_path).read())
    print("%s: %s ready in %.2f s, RSS %.0f MiB; %s" % (label, binary, ready, rss_mib(proc.pid),
                                                       m.group(0) if m else "?"), flush=True)
    return proc, port


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--estate", required=True)
    ap.add_argument("--a", required=True, help="cmdbd binary A (the baseline)")
    ap.add_argument("--b", required=True, help="cmdbd binary B")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--loadgen", default=os.path.join(lib.REPO, "build", "bench", "loadgen"))
    a = ap.parse_args()
    lib.CMDBD_BIN = os.path.abspath(a.a)  # migrate and tokens with A

    admin, cluster = admin_or_private_cluster()
    procs = []
    try:
        srv, token = new_database(admin, "walkab")
        t0 = time.monotonic()
        # \copy takes no psql variables: the paths go into the text (quotes doubled).
        files = {k: os.path.abspath(os.path.join(a.estate, "walk-%s.tsv" % k)).replace("'", "''")
                 for k in ("nodes", "edges")}
        p = subprocess.run([lib.PSQL, "-X", "-q", "-A", "-t", "-d", srv.db_url],
                           input=SQL_MAP.replace("{nodes}", files["nodes"])
                           .replace("{edges}", files["edges"]),
                           capture_output=True, text=True, timeout=3600)
        if p.returncode != 0:
            raise SystemExit("loading the map failed:\n" + p.stderr)
        print("map: %s nodes/edges, loaded in %.1f s" % (p.stdout.split()[-2:],
                                                         time.monotonic() - t0), flush=True)
        builds = []
        for label, binary in (("a", a.a), ("b", a.b)):
            proc, port = serve(os.path.abspath(binary), srv, label)
            procs.append(proc)
            builds.append((label, port))
        figures = {}
        for r in range(a.rounds):
            order = builds if r % 2 == 0 else builds[::-1]
            for label, port in order:
                for what in ("dependents", "dependencies"):
                    out = subprocess.run(
                        [a.loadgen, "get", "-u", "http://127.0.0.1:%d" % port, "-t", token,
                         "-c", "1", "-l", what, os.path.join(a.estate, what + ".paths")],
                        capture_output=True, text=True, timeout=600)
                    if out.returncode != 0:
                        raise SystemExit("loadgen failed: " + out.stderr)
                    j = json.loads(out.stdout)
                    if j["errors"]:
                        raise SystemExit("%s: %d errors: %s" % (what, j["errors"], out.stderr))
                    figures.setdefault((label, what), []).append((j["p50_ms"], j["p99_ms"]))
                    print("round %d %s %-12s n=%d p50 %.2f p99 %.2f max %.2f ms" %
                          (r + 1, label, what, j["count"], j["p50_ms"], j["p99_ms"],
                           j["max_ms"]), flush=True)
        print("\nmedian over %d rounds of each round's p50 / p99 (ms), and b / a:" % a.rounds)
        for what in ("dependents", "dependencies"):
            med = {}
            for label, _ in builds:
                v = figures[(label, what)]
                med[label] = (statistics.median(x[0] for x in v),
                              statistics.median(x[1] for x in v))
                print("  %s %-12s p50 %6.2f  p99 %6.2f" % (label, what, *med[label]))
            print("  b/a %-12s p50 %6.2f  p99 %6.2f" % (
                what, med["b"][0] / med["a"][0], med["b"][1] / med["a"][1]))
        for (label, _), proc in zip(builds, procs):
            print("%s: RSS %.0f MiB after the runs" % (label, rss_mib(proc.pid)))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        if cluster is not None:
            cluster.destroy()


if __name__ == "__main__":
    main()
