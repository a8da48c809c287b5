#!/usr/bin/python3
"""load_graph.py — end-to-end load figures for cmdbd at CMDB scale.

Builds a 100k-node, ~1M-edge map directly in PostgreSQL (bulk INSERT … SELECT over
generate_series into the nodes and edges tables of a freshly migrated database), starts
the real cmdbd on it, and measures:
  - time to ready: wall time from exec to /readyz 200, and the server's own
    `event=graph_loaded ... ms=` figure; the server's RSS once loaded;
  - latency (median, p99, max) of dependents, dependencies and rootcause requests over
    N requests each, on one keep-alive connection, plus the average answer size.
Prints figures; asserts nothing (a request that does not answer 200 is counted and
reported). Not part of `make test`.

Run (from the project root, after `make`):
    /usr/bin/python3 tests/bench/load_graph.py [--nodes 100000]
                                                [--requests 200] [--seed 42] [--keep] [--fresh]
  CMDB_TEST_ADMIN_URL  superuser conninfo of a cluster to use (a new database is made in
                       it and left there). Unset: a private throwaway cluster is started
                       in a temp dir and destroyed at the end (as tests/e2e/lib.py does).
  CMDBD_BIN            the server binary (default build/cmdbd).
Takes a minute or two, most of it PostgreSQL building the edges' indexes.

The map (node numbers n = 1..N, kinds by range, like an estate):
  60% services in four tiers; 15% hosts; 10% containers; 5% databases; 3% queues;
  5% systems; 2% teams.
  Per service: depends_on 7 services of the next tier (tier 3: 3 data stores instead),
  connects_to 5 services of its own or the next tier, depends_on 2 databases,
  runs_on 1 container (containers run on hosts, data stores on hosts), part_of 1-2
  systems, owned_by a team half the time; systems are part_of systems and owned by
  teams, hosts owned by teams; 1% of services have a "back" dependency anywhere, so
  cycles exist.
"""

import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import lib  # noqa: E402

SQL_MAP = r"""
\set ON_ERROR_STOP 1
SELECT setseed(:seed);
CREATE TEMP TABLE ids AS
SELECT n, gen_random_uuid() AS id,
       CASE WHEN n <= :svc THEN 'service'
            WHEN n <= :host THEN 'host'
            WHEN n <= :ctr THEN 'container'
            WHEN n <= :db THEN 'database'
            WHEN n <= :q THEN 'queue'
            WHEN n <= :sys THEN 'system'
            ELSE 'team' END AS kind
  FROM generate_series(1, :N) n;
CREATE UNIQUE INDEX ON ids (n);
INSERT INTO nodes (id, kind, name, attributes)
SELECT id, kind, kind || '-' || lpad(n::text, 6, '0'),
       CASE WHEN kind = 'team' THEN jsonb_build_object('email', 't' || n || '@example.com')
            ELSE '{}'::jsonb END
  FROM ids;

-- rnd(lo, hi): a random node number in [lo, hi].
CREATE FUNCTION pg_temp.rnd(lo int, hi int) RETURNS int
LANGUAGE sql VOLATILE AS $$ SELECT lo + floor(random() * (hi - lo + 1))::int $$;

CREATE TEMP TABLE e (f int, t text, tt int);
-- Services: the tier of service n is (n-1) / tier_size (0..3).
INSERT INTO e
SELECT s, 'depends_on', pg_temp.rnd(((s - 1) / :tier + 1) * :tier + 1, ((s - 1) / :tier + 2) * :tier)
  FROM generate_series(1, 3 * :tier) s, generate_series(1, 7);
INSERT INTO e
SELECT s, 'depends_on', pg_temp.rnd(:ctr + 1, :q)
  FROM generate_series(3 * :tier + 1, :svc) s, generate_series(1, 3);
INSERT INTO e
SELECT s, 'connects_to', least(:svc, pg_temp.rnd(((s - 1) / :tier) * :tier + 1, ((s - 1) / :tier + 2) * :tier))
  FROM generate_series(1, :svc) s, generate_series(1, 5);
INSERT INTO e SELECT s, 'depends_on', pg_temp.rnd(:ctr + 1, :db) FROM generate_series(1, :svc) s, generate_series(1, 2);
INSERT INTO e SELECT s, 'runs_on', pg_temp.rnd(:host + 1, :ctr) FROM generate_series(1, :svc) s;
INSERT INTO e SELECT c, 'runs_on', pg_temp.rnd(:svc + 1, :host) FROM generate_series(:host + 1, :ctr) c;
INSERT INTO e SELECT d, 'runs_on', pg_temp.rnd(:svc + 1, :host) FROM generate_series(:ctr + 1, :q) d;
INSERT INTO e SELECT s, 'part_of', pg_temp.rnd(:q + 1, :sys) FROM generate_series(1, :svc) s;
INSERT INTO e SELECT s, 'part_of', pg_temp.rnd(:q + 1, :sys) FROM generate_series(1, :svc) s WHERE random() < 0.5;
INSERT INTO e SELECT y, 'part_of', pg_temp.rnd(:q + 1, :sys) FROM generate_series(:q + 1, :sys) y;
INSERT INTO e SELECT s, 'owned_by', pg_temp.rnd(:sys + 1, :N) FROM generate_series(1, :svc) s WHERE random() < 0.5;
INSERT INTO e SELECT y, 'owned_by', pg_temp.rnd(:sys + 1, :N) FROM generate_series(:q + 1, :sys) y;
INSERT INTO e SELECT h, 'owned_by', pg_temp.rnd(:sys + 1, :N) FROM generate_series(:svc + 1, :host) h;
INSERT INTO e SELECT s, 'depends_on', pg_temp.rnd(1, :svc) FROM generate_series(1, :svc) s WHERE random() < 0.01;

INSERT INTO edges (from_id, type, to_id)
SELECT f.id, e.t, t.id FROM e JOIN ids f ON f.n = e.f JOIN ids t ON t.n = e.tt
 WHERE e.f <> e.tt
ON CONFLICT DO NOTHING;
ANALYZE nodes;
ANALYZE edges;
SELECT (SELECT count(*) FROM nodes) || ' ' || (SELECT count(*) FROM edges);
"""


def build_map(db_url, n, seed):
    """Fill the migrated database; return (nodes, edges) as counted by PostgreSQL."""
    tier = int(n * 0.6) // 4
    bounds = {"N": n, "tier": tier, "svc": 4 * tier, "host": 4 * tier + int(n * 0.15)}
    bounds["ctr"] = bounds["host"] + int(n * 0.10)
    bounds["db"] = bounds["ctr"] + int(n * 0.05)
    bounds["q"] = bounds["db"] + int(n * 0.03)
    bounds["sys"] = bounds["q"] + int(n * 0.05)
    args = [lib.PSQL, "-X", "-q", "-A", "-t", "-d", db_url,
            "-v", "seed=%f" % (seed % 1000 / 1000.0)]
    for k, v in bounds.items():
        args += ["-v", "%s=%d" % (k, v)]
    p = subprocess.run(args, input=SQL_MAP, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise SystemExit("building the map failed:\n" + p.stderr)
    last = [ln for ln in p.stdout.splitlines() if ln.strip()][-1]
    nodes, edges = (int(x) for x in last.split())
    return nodes, edges, bounds


def new_database(admin, name):
    """A fresh migrated database (lib.Server not started) and a read token for it."""
    srv = lib.Server(name, admin=admin)
    lib.psql(admin, 'CREATE DATABASE "%s"' % srv.dbname)
    p = srv.cmdbd("migrate")
    if p.returncode != 0:
        raise SystemExit("migrate failed: " + p.stderr)
    return srv, srv.create_token("bench", "read")


def admin_or_private_cluster():
    """(admin conninfo, cluster): CMDB_TEST_ADMIN_URL's cluster, or a private one started
    here (cluster is then the PrivateCluster for the caller to destroy; else None)."""
    admin = os.environ.get("CMDB_TEST_ADMIN_URL")
    if admin:
        return admin, None
    cluster = lib.PrivateCluster().init()
    cluster.start()
    return cluster.conninfo, cluster


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024.0
    return float("nan")


class Client:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, port, token, fresh=False):
        self.port, self.token, self.fresh = port, token, fresh
        self.conn = None

    def call(self, method, path, body=None):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                hdrs = {"Authorization": "Bearer " + self.token}
                data = None
                if body is not None:
                    data = json.dumps(body).encode()
                    hdrs["Content-Type"] = "application/json"
                t0 = time.perf_counter()
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                payload = r.read()
                dt = time.perf_counter() - t0
                if self.fresh or r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, payload, dt
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def bench(client, name, make_request, n):
    times, sizes, counts, bad = [], [], [], 0
    for i in range(n):
        method, path, body = make_request(i)
        st, payload, dt = client.call(method, path, body)
        if st != 200:
            bad += 1
            continue
        times.append(dt * 1000)
        sizes.append(len(payload))
        doc = json.loads(payload)
        counts.append(doc["count"] if "count" in doc else
                      len(doc.get("candidates", doc.get("owners", []))))
    if not times:
        print("%-34s no 200 answers (%d failed)" % (name, bad))
        return
    times.sort()
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    print("%-34s n=%-4d median %8.2f ms  p99 %8.2f ms  max %8.2f ms  avg found %8.0f  "
          "avg body %7.1f KiB%s"
          % (name, len(times), statistics.median(times), p99, times[-1],
             statistics.mean(counts), statistics.mean(sizes) / 1024.0,
             "  (%d non-200)" % bad if bad else ""), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=100000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--keep", action="store_true", help="leave the server's log directory")
    ap.add_argument("--fresh", action="store_true",
                    help="a new connection per request (default: one keep-alive connection)")
    a = ap.parse_args()

    admin, cluster = admin_or_private_cluster()
    srv = None
    try:
        srv, token = new_database(admin, "bench")
        t0 = time.monotonic()
        nodes, edges, b = build_map(srv.db_url, a.nodes, a.seed)
        print("map: %d nodes, %d edges, built in PostgreSQL in %.1f s (database %s)"
              % (nodes, edges, time.monotonic() - t0, srv.dbname), flush=True)

        port = lib.free_port()
        log = open(srv.log_path, "ab")
        t0 = time.monotonic()
        srv.proc = subprocess.Popen([lib.CMDBD_BIN, "serve", "--listen", "127.0.0.1:%d" % port],
                                    env=srv._env(), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log, preexec_fn=lib._pdeathsig)
        srv.port, srv.url = port, "http://127.0.0.1:%d" % port
        with lib._live_lock:
            lib._live.add(srv)
        srv.wait_ready(timeout=600)
        ready = time.monotonic() - t0
        m = re.search(r"event=graph_loaded .*?ms=(\d+)", open(srv.log_path).read())
        print("ready: %.2f s from exec to /readyz 200; server log graph_loaded ms=%s; RSS %.0f MiB"
              % (ready, m.group(1) if m else "?", rss_mib(srv.proc.pid)), flush=True)

        rng = random.Random(a.seed)
        c = Client(port, token, a.fresh)
        tier = b["tier"]

        def ref(n):
            kind = ("service" if n <= b["svc"] else "host" if n <= b["host"] else
                    "container" if n <= b["ctr"] else "database" if n <= b["db"] else
                    "queue" if n <= b["q"] else "system" if n <= b["sys"] else "team")
            return "%s/%s-%06d" % (kind, kind, n)

        def path_of(n, what, q=""):
            kind, name = ref(n).split("/", 1)
            return "/v1/nodes/%s/%s/%s%s" % (kind, name, what, q)

        N = a.requests
        roots = {
            "dependents database (hub-ish)": lambda i: rng.randint(b["ctr"] + 1, b["db"]),
            "dependents service tier 3": lambda i: rng.randint(3 * tier + 1, 4 * tier),
            "dependents service tier 1": lambda i: rng.randint(tier + 1, 2 * tier),
            "dependents host": lambda i: rng.randint(b["svc"] + 1, b["host"]),
        }
        for name, pick in roots.items():
            bench(c, name, lambda i, pick=pick: ("GET", path_of(pick(i), "dependents"), None), N)
        bench(c, "dependents host depth=2",
              lambda i: ("GET", path_of(rng.randint(b["svc"] + 1, b["host"]), "dependents",
                                        "?depth=2"), None), N)
        bench(c, "dependents host limit=100000",
              lambda i: ("GET", path_of(rng.randint(b["svc"] + 1, b["host"]), "dependents",
                                        "?limit=100000"), None), max(10, N // 10))
        bench(c, "dependencies service tier 0",
              lambda i: ("GET", path_of(rng.randint(1, tier), "dependencies"), None), N)
        bench(c, "dependencies service tier 2",
              lambda i: ("GET", path_of(rng.randint(2 * tier + 1, 3 * tier), "dependencies"),
                         None), N)
        bench(c, "owners host",
              lambda i: ("GET", path_of(rng.randint(b["svc"] + 1, b["host"]), "owners"), None), N)
        for depth in (2, 4, 16):
            bench(c, "rootcause 3 failing max_depth=%d" % depth,
                  lambda i, d=depth: ("POST", "/v1/rootcause",
                                      {"failing": [ref(rng.randint(1, b["svc"])) for _ in range(3)],
                                       "max_depth": d}),
                  N if depth < 16 else max(10, N // 10))
        print("RSS after the run: %.0f MiB" % rss_mib(srv.proc.pid))
    finally:
        if srv is not None and srv.proc is not None:
            srv.stop(timeout=60)
        if cluster is not None:
            cluster.destroy()
        if srv is not None and not a.keep:
            import shutil
            shutil.rmtree(srv._logdir, ignore_errors=True)


if __name__ == "__main__":
    main()
