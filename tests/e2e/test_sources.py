"""SPEC §5, drift and staleness, end to end through the real cmdbd and cmdb.

- GET /v1/drift: undeclared and unobserved edges, the "an observer only speaks for what
  it instruments" rule, the observer and types parameters, per-source assertion times.
- GET /v1/sources: shape, TTLs (the server's and a manifest's), pagination; the manifest
  `ttl` field and its validation.
- Expiry with --source-ttl and a manifest ttl, with TWO cmdbd on one database: the
  source's assertions are withdrawn once (change rows by actor cmdbd, source the expired
  one, each exactly once), the map and orphan flags follow on both instances, and the
  next manifest of the source applies in full.
- --orphan-purge-after: orphans past it are deleted (history keeps them), once.
- cmdb sources, cmdb drift.
- examples/jaeger: Jaeger's /api/dependencies reply (a HotROD fixture in exactly the
  format jaeger-query serves) -> observed:jaeger manifest -> cmdb push -> /v1/drift.
"""

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

import lib
from lib import ServerTestCase, TwoServerTestCase, node_path


def manifest(source, edges=(), nodes=(), **extra):
    m = {"manifest": "cmdb/v1", "source": source,
         "nodes": [{"ref": r} for r in nodes],
         "edges": [{"from": f, "type": t, "to": d} for f, t, d in edges]}
    m.update(extra)
    return m


def edge_keys(edges):
    return [(e["from"], e["type"], e["to"]) for e in edges]


def log_count(srv, text):
    """How many times text occurs in a server's log."""
    with open(srv.log_path, errors="replace") as f:
        return f.read().count(text)


def swept(srv, action):
    """cmdb_sweep_total{action=...} from the server's /metrics."""
    st, _, text = srv.get("/metrics", token=None)
    assert st == 200, text
    for line in text.splitlines():
        if line.startswith('cmdb_sweep_total{action="%s"} ' % action):
            return float(line.split()[-1])
    raise AssertionError("no cmdb_sweep_total for %s in /metrics" % action)


def wait_for(what, fn, timeout=15.0, step=0.1):
    """Poll fn() until it returns something true; return it, or fail saying what."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


class DriftTest(ServerTestCase):
    """The map declared by a deploy tool and the edges two tracing systems saw."""

    DECLARED = [
        ("service/web", "depends_on", "service/api"),     # declared and observed
        ("service/web", "connects_to", "service/api"),    # declared, not observed
        ("service/web", "depends_on", "cache/redis"),     # declared, not observed
        ("service/api", "depends_on", "database/pg"),     # pg is not instrumented
        ("service/legacy", "depends_on", "service/api"),  # legacy is not instrumented
        ("service/web", "runs_on", "host/h1"),            # not instrumented, not checked
    ]
    JAEGER = [
        ("service/web", "depends_on", "service/api"),
        ("service/api", "depends_on", "cache/redis"),     # undeclared
        ("service/web", "depends_on", "service/auth"),    # declared by a hand edit
    ]
    TEMPO = [
        ("service/web", "depends_on", "service/api"),
        ("service/api", "depends_on", "queue/jobs"),      # undeclared
    ]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for m in (manifest("capistrano:shop", cls.DECLARED),
                  manifest("observed:jaeger", cls.JAEGER),
                  manifest("observed:tempo", cls.TEMPO)):
            st, _, body = cls.srv.post("/v1/manifests", m)
            assert st == 200, body
        st, _, body = cls.srv.put_edge("service/web", "depends_on", "service/auth")
        assert st in (200, 201), body

    def drift(self, query=""):
        return self.assertStatus(self.srv.get("/v1/drift" + query), 200)

    def test_undeclared_and_unobserved(self):
        d = self.drift()
        self.assertEqual(set(d), {"observers", "undeclared", "unobserved"})
        # (test_follows_the_observer adds observed:netflow, which ends up asserting nothing)
        self.assertEqual([o for o in d["observers"] if o != "observed:netflow"],
                         ["observed:jaeger", "observed:tempo"])
        # Seen on the wire, asserted by no other source (a hand edit declares too).
        self.assertEqual(edge_keys(d["undeclared"]),
                         [("service/api", "depends_on", "cache/redis"),
                          ("service/api", "depends_on", "queue/jobs")])
        # Declared, of the default types, both ends instrumented, seen by no observer.
        # Not listed: api -> database/pg and legacy -> api (an end no observer sees), web
        # runs_on host/h1 (its type and its host), web -> api depends_on (observed).
        self.assertEqual(edge_keys(d["unobserved"]),
                         [("service/web", "connects_to", "service/api"),
                          ("service/web", "depends_on", "cache/redis")])
        for e in d["undeclared"] + d["unobserved"]:
            self.assertEdgeShape(e)
            self.assertEqual(sorted(e["last_asserted"]), e["sources"],
                             "a time for each of the edge's sources: %r" % e)
            for at in e["last_asserted"].values():
                self.assertTime(at)

    def test_times_are_each_sources_last_apply(self):
        sources = {s["source"]: s for s in self.assertStatus(self.srv.get("/v1/sources"), 200)["items"]}
        d = self.drift()
        for e in d["undeclared"] + d["unobserved"]:
            for src, at in e["last_asserted"].items():
                self.assertEqual(at, sources[src]["last_applied_at"], "%s on %r" % (src, e))

    def test_one_observer(self):
        d = self.drift("?observer=observed:tempo")
        self.assertEqual(d["observers"], ["observed:tempo"])
        self.assertEqual(edge_keys(d["undeclared"]),
                         [("service/api", "depends_on", "queue/jobs")])
        # Tempo instruments web, api and queue/jobs only: redis is not its business.
        self.assertEqual(edge_keys(d["unobserved"]),
                         [("service/web", "connects_to", "service/api")])
        d = self.drift("?observer=observed:jaeger")
        self.assertEqual(edge_keys(d["undeclared"]),
                         [("service/api", "depends_on", "cache/redis")])

    def test_types(self):
        d = self.drift("?types=depends_on")
        self.assertEqual(edge_keys(d["unobserved"]),
                         [("service/web", "depends_on", "cache/redis")])
        d = self.drift("?types=connects_to")
        self.assertEqual(edge_keys(d["unobserved"]),
                         [("service/web", "connects_to", "service/api")])
        # types narrows `unobserved` only (SPEC §5); undeclared is every observed edge.
        self.assertEqual(len(d["undeclared"]), 2)

    def test_bad_parameters(self):
        for q, field in (("?observer=capistrano:shop", "observer"),
                         ("?observer=Observed:X", "observer"),
                         ("?types=depends_on,calls", "types"),
                         ("?types=", "types"),
                         ("?types=depends_on,", "types"),
                         ("?since=1", "since")):
            self.assertError(self.srv.get("/v1/drift" + q), 400, "bad_request", [field], q)
        self.assertError(self.srv.get("/v1/drift?observer=observed:zipkin"), 404, "not_found",
                         ["observed:zipkin"])
        self.assertError(self.srv.get("/v1/drift", token=None), 401)

    def test_follows_the_observer(self):
        """An observer's next manifest replaces what it saw: drift follows."""
        src = "observed:netflow"
        self.assertStatus(self.srv.post("/v1/manifests", manifest(
            src, [("service/legacy", "depends_on", "service/api"),
                  ("service/legacy", "connects_to", "database/pg")])), 200)
        d = self.drift("?observer=" + src)
        self.assertEqual(edge_keys(d["undeclared"]),
                         [("service/legacy", "connects_to", "database/pg")])
        # legacy, api and pg are instrumented now: api -> pg was declared, not seen.
        self.assertEqual(edge_keys(d["unobserved"]),
                         [("service/api", "depends_on", "database/pg")])
        self.assertStatus(self.srv.post("/v1/manifests", manifest(src, [])), 200)
        d = self.drift("?observer=" + src)
        self.assertEqual((d["undeclared"], d["unobserved"]), ([], []))

    def test_cli(self):
        p = self.srv.cmdb("drift")
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertRegex(lines[0], r"^observers: observed:jaeger, (observed:netflow, )?observed:tempo$")
        self.assertRegex(lines[1], r"^DRIFT\s+FROM\s+TYPE\s+TO\s+SOURCES\s+LAST ASSERTED$")
        rows = [l.split()[:5] for l in lines[2:]]
        self.assertIn(["undeclared", "service/api", "depends_on", "cache/redis",
                       "observed:jaeger"], rows)
        self.assertIn(["unobserved", "service/web", "connects_to", "service/api",
                       "capistrano:shop"], rows)
        p = self.srv.cmdb("drift", "--observer", "observed:tempo", "--types", "depends_on",
                          "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout), self.drift("?observer=observed:tempo&types=depends_on"))
        p = self.srv.cmdb("drift", "--observer", "observed:nobody")
        self.assertEqual(p.returncode, 1, "not found: exit 1")
        p = self.srv.cmdb("drift", "--types", "bogus")
        self.assertEqual(p.returncode, 2, "bad request: exit 2")


class SourcesTest(ServerTestCase):
    """GET /v1/sources and the manifest ttl, with --source-ttl 1h on the server."""

    server_args = ("--source-ttl", "1h")

    def test_shape_ttls_and_pagination(self):
        names = ["deploy:%02d" % i for i in range(5)]
        for i, n in enumerate(names):
            extra = {"ttl": "90m"} if i == 1 else {}
            self.assertStatus(self.srv.post("/v1/manifests", manifest(
                n, [("service/s%d" % i, "depends_on", "database/shared")],
                nodes=["team/t%d" % i], generation=7, **extra)), 200)
        got, cursor, pages = [], None, 0
        while True:
            body = self.assertStatus(self.srv.get(
                "/v1/sources?limit=2" + ("&cursor=" + cursor if cursor else "")), 200)
            self.assertEqual(set(body), {"items", "next_cursor"})
            self.assertLessEqual(len(body["items"]), 2)
            got += body["items"]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(pages, (len(got) + 1) // 2)
        self.assertEqual(len({s["source"] for s in got}), len(got), "no source twice")
        mine = [s for s in got if s["source"] in names]
        self.assertEqual([s["source"] for s in mine], names, "byte order, each once")
        for i, s in enumerate(mine):
            self.assertEqual(set(s), {"source", "generation", "last_applied_at", "ttl",
                                      "expires_at", "expired", "nodes", "edges"})
            self.assertEqual(s["generation"], 7)
            self.assertEqual((s["nodes"], s["edges"]), (3, 1))
            self.assertIs(s["expired"], False)
            self.assertTime(s["last_applied_at"])
            ttl = 90 * 60 if i == 1 else 3600
            self.assertEqual(s["ttl"], "90m" if i == 1 else "1h")
            self.assertAlmostEqual((lib.parse_time(s["expires_at"])
                                   - lib.parse_time(s["last_applied_at"])).total_seconds(),
                                   ttl, delta=0.001)

    def test_latest_manifest_ttl_wins(self):
        src = "deploy:ttl"
        self.assertStatus(self.srv.post("/v1/manifests", manifest(src, nodes=["service/t"],
                                                                  ttl="7d")), 200)
        # The identical re-post is the fast no-op: the ttl stays.
        r = self.assertStatus(self.srv.post("/v1/manifests", manifest(src, nodes=["service/t"],
                                                                      ttl="7d")), 200)
        self.assertIsNone(r["seq"], "a no-op")
        self.assertEqual(self.source(src)["ttl"], "7d")
        self.assertStatus(self.srv.post("/v1/manifests", manifest(src, nodes=["service/t"],
                                                                  ttl="36h")), 200)
        self.assertEqual(self.source(src)["ttl"], "36h")
        # None given: the server's default applies again.
        self.assertStatus(self.srv.post("/v1/manifests", manifest(src, nodes=["service/t"])), 200)
        self.assertEqual(self.source(src)["ttl"], "1h")
        # A plan stores nothing.
        self.assertStatus(self.srv.post("/v1/manifests?dry_run=true", manifest(
            src, nodes=["service/t"], ttl="2d")), 200)
        self.assertEqual(self.source(src)["ttl"], "1h")

    def source(self, name):
        for s in self.assertStatus(self.srv.get("/v1/sources?limit=1000"), 200)["items"]:
            if s["source"] == name:
                return s
        self.fail("no source %s" % name)

    def test_bad_ttl(self):
        for ttl in ("", "36", "1h30m", "0s", "-1h", "1w", "36 h", 36, None, {"h": 36}):
            resp = self.srv.post("/v1/manifests", manifest("deploy:bad", nodes=["service/x"],
                                                           ttl=ttl))
            self.assertError(resp, 400, "bad_request", ["ttl"], repr(ttl))
        st, _, body = self.srv.get("/v1/sources")
        self.assertNotIn("deploy:bad", [s["source"] for s in body["items"]], "nothing written")

    def test_bad_parameters(self):
        for q, field in (("?limit=0", "limit"), ("?limit=1001", "limit"), ("?limit=x", "limit"),
                         ("?cursor=zz", "cursor"), ("?source=x", "source")):
            self.assertError(self.srv.get("/v1/sources" + q), 400, "bad_request", [field], q)

    def test_cli(self):
        self.assertStatus(self.srv.post("/v1/manifests", manifest(
            "deploy:cli", nodes=["service/cli"], ttl="2d")), 200)
        p = self.srv.cmdb("sources", "--all")
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertRegex(lines[0], r"^SOURCE\s+GENERATION\s+LAST APPLIED\s+TTL\s+EXPIRES\s+"
                                   r"NODES\s+EDGES\s+STATE$")
        row = [l.split() for l in lines if l.startswith("deploy:cli ")]
        self.assertEqual(len(row), 1, p.stdout)
        self.assertEqual(row[0][0:2] + row[0][3:4] + row[0][5:], ["deploy:cli", "-", "2d", "1", "0", "live"])
        p = self.srv.cmdb("sources", "--limit", "1", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(json.loads(p.stdout)["items"]), 1)


class ExpiryTest(TwoServerTestCase):
    """--source-ttl 2s on two cmdbd sharing a database: one sweeps, the map follows."""

    server_args = ("--source-ttl", "2s")

    def changes_of(self, source):
        rows, since = [], 0
        while True:
            body = self.assertStatus(self.srv.get("/v1/changes?limit=1000&since=%d" % since), 200)
            rows += [c for c in body["changes"] if c["source"] == source]
            if not body["changes"]:
                return rows
            since = body["next"]

    def source(self, name):
        for s in self.assertStatus(self.b.get("/v1/sources?limit=1000"), 200)["items"]:
            if s["source"] == name:
                return s
        return None

    def test_expiry(self):
        short, long_ = "cron:short", "ci:long"
        self.assertStatus(self.srv.post("/v1/manifests", manifest(
            short, [("service/batch", "depends_on", "database/shared"),
                    ("service/batch", "runs_on", "host/b1")], generation=3)), 200)
        self.assertStatus(self.b.post("/v1/manifests", manifest(
            long_, [("service/api", "depends_on", "database/shared")], ttl="1h")), 200)
        s = self.source(short)
        self.assertEqual((s["ttl"], s["expired"], s["edges"]), ("2s", False, 2))
        self.assertEqual(self.source(long_)["ttl"], "1h")

        s = wait_for("cron:short to expire", lambda: (self.source(short) or {}).get("expired") and self.source(short))
        self.assertGreaterEqual(time.time(), lib.parse_time(s["expires_at"]).timestamp())
        self.assertEqual((s["nodes"], s["edges"], s["generation"]), (0, 0, 3))
        self.assertIs(self.source(long_)["expired"], False, "a manifest ttl of 1h wins")

        # The change log: the expiry once (two sweepers), by cmdbd, under the source.
        rows = [c for c in self.changes_of(short) if c["actor"] == "cmdbd"]
        got = sorted((c["op"], c["ref"]) for c in rows)
        self.assertEqual(got, [
            ("edge.deleted", "service/batch depends_on database/shared"),
            ("edge.deleted", "service/batch runs_on host/b1"),
            ("node.updated", "database/shared"),
            ("node.updated", "host/b1"),
            ("node.updated", "service/batch"),
        ], "each change exactly once: %r" % rows)
        logged = sum(log_count(s, "event=source_expired source=cron:short")
                     for s in (self.srv, self.b))
        self.assertEqual(logged, 1, "one instance expired it")
        self.assertEqual(sum(swept(s, "source_expired") for s in (self.srv, self.b)), 1,
                         "cmdb_sweep_total counts it once, on the instance that did it")

        # The map, on both instances: batch and h1 are orphans, shared is not.
        for srv in (self.srv, self.b):
            for ref, orphan, sources in (("service/batch", True, []), ("host/b1", True, []),
                                         ("database/shared", False, [long_])):
                node = wait_for("%s on %s" % (ref, srv.name), lambda: (lambda r: r[0] == 200 and r[2]["sources"] == sources and r[2])(srv.get(node_path(ref))))
                self.assertIs(node["orphan"], orphan, "%s on %s" % (ref, srv.name))
            st, _, body = srv.get(node_path("service/batch") + "/edges")
            self.assertEqual(body["edges"], [])
        orphans = self.assertStatus(self.srv.get("/v1/nodes?orphan=true"), 200)["items"]
        self.assertEqual(sorted(n["ref"] for n in orphans), ["host/b1", "service/batch"])

        # Nothing more happens on later sweeps.
        n = len(self.changes_of(short))
        time.sleep(2.5)
        self.assertEqual(len(self.changes_of(short)), n)

        # The same manifest again: applied in full (not the no-op), the source is live.
        r = self.assertStatus(self.b.post("/v1/manifests", manifest(
            short, [("service/batch", "depends_on", "database/shared"),
                    ("service/batch", "runs_on", "host/b1")], generation=3)), 200)
        self.assertIsNotNone(r["seq"], "re-applied, not a no-op: %r" % r)
        self.assertEqual(r["edges"]["created"], 2)
        s = self.source(short)
        self.assertEqual((s["expired"], s["edges"]), (False, 2))
        node = self.assertStatus(self.b.get(node_path("service/batch")), 200)
        self.assertIs(node["orphan"], False)
        wait_for("the other instance to follow", lambda: self.srv.get(
            node_path("service/batch"))[2]["orphan"] is False)

    def test_manifest_ttl_shorter_than_the_servers(self):
        src = "observed:blip"
        self.assertStatus(self.srv.post("/v1/manifests", manifest(
            src, [("service/x", "depends_on", "service/y")], ttl="1s")), 200)
        t0 = time.monotonic()
        wait_for("observed:blip to expire", lambda: (self.source(src) or {}).get("expired"))
        self.assertLess(time.monotonic() - t0, 1.9 + 1.5, "expired by its own 1s ttl")

    def test_identical_reposts_keep_a_source_alive(self):
        """The fast no-op re-post is the source's latest manifest too: it moves the
        expiry. Once the re-posts stop, the source expires."""
        src = "cron:heartbeat"
        m = manifest(src, [("service/hb", "depends_on", "service/hb-db")], ttl="2s")
        t_end = time.monotonic() + 4.5
        while time.monotonic() < t_end:
            r = self.assertStatus((self.srv, self.b)[int(time.monotonic()) % 2].post(
                "/v1/manifests", m), 200)
            s = self.source(src)
            self.assertIs(s["expired"], False, "re-posted every 0.5 s with a 2 s ttl")
            time.sleep(0.5)
        self.assertIsNone(r["seq"], "the re-posts are no-ops")
        self.assertEqual(self.source(src)["edges"], 1)
        wait_for("cron:heartbeat to expire", lambda: (self.source(src) or {}).get("expired"))

    def psql_session(self):
        """A psql session fed statements one at a time through its stdin."""
        return subprocess.Popen([lib.PSQL, "-X", "-q", "-d", self.srv.db_url],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)

    def activity(self, where):
        return int(self.srv.psql("SELECT count(*) FROM pg_stat_activity WHERE " + where).strip())

    def test_repost_while_expiring_wins(self):
        """A no-op re-post touches only the source's row, without the source's lock. One
        that commits while the sweeper is expiring the source must win: the expiry is
        rolled back, the map keeps what the source asserts."""
        src = "cron:race"
        lock = "hashtextextended('cmdb.sweep', 0)"
        holder, poster = self.psql_session(), self.psql_session()
        try:
            # No sweeps while the stage is set.
            holder.stdin.write("SELECT pg_advisory_lock(%s);\n" % lock)
            holder.stdin.flush()
            wait_for("the sweep lock", lambda: self.activity(
                "state = 'idle' AND query LIKE '%%pg_advisory_lock(%s)%%'" % lock.replace("'", "''")) == 1)
            self.assertStatus(self.srv.post("/v1/manifests", manifest(
                src, [("service/r1", "depends_on", "service/r2")], ttl="1s")), 200)
            time.sleep(1.5)
            # The re-post: what cmdb_manifest_noop writes, held open.
            poster.stdin.write("BEGIN;\nUPDATE source_state SET last_applied_at = clock_timestamp(),"
                               " ttl = interval '1 hour' WHERE source = '%s';\n" % src)
            poster.stdin.flush()
            wait_for("the re-post to hold the row", lambda: self.activity(
                "state = 'idle in transaction' AND query LIKE 'UPDATE source_state%'") == 1)
            holder.stdin.write("SELECT pg_advisory_unlock(%s);\n" % lock)
            holder.stdin.close()
            # A sweeper expires the source and waits for its row inside the expiry.
            wait_for("a sweep waiting on the row", lambda: self.activity(
                "wait_event_type = 'Lock' AND query LIKE '%cmdb_sweep%'") == 1)
            poster.stdin.write("COMMIT;\n")
            poster.stdin.close()
            wait_for("the sweep to finish", lambda: self.activity(
                "wait_event_type = 'Lock' AND query LIKE '%cmdb_sweep%'") == 0)
        finally:
            for p in (holder, poster):
                if not p.stdin.closed:
                    p.stdin.close()
                p.wait(timeout=10)
        time.sleep(1.5)   # and a sweep or two more
        s = self.source(src)
        self.assertEqual((s["expired"], s["ttl"], s["edges"]), (False, "1h", 1))
        self.assertEqual([c for c in self.changes_of(src) if c["actor"] == "cmdbd"], [])
        self.assertEqual(sum(log_count(x, "event=source_expired source=cron:race")
                             for x in (self.srv, self.b)), 0)

    def test_one_sweeper_at_a_time(self):
        """The instances sweep through one lock: while someone else holds it, neither
        sweeps; once it is free, one of them does."""
        src = "cron:locked"
        holder = subprocess.Popen(
            [lib.PSQL, "-X", "-q", "-d", self.srv.db_url, "-c",
             "SELECT pg_advisory_lock(hashtextextended('cmdb.sweep', 0)), pg_sleep(4)"],
            stdout=subprocess.DEVNULL)
        try:
            wait_for("the lock to be held", lambda: self.srv.psql(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted"
                " AND a.query LIKE '%pg_advisory_lock%'").strip() == "1")
            self.assertStatus(self.srv.post("/v1/manifests", manifest(
                src, [("service/l", "depends_on", "service/m")], ttl="1s")), 200)
            time.sleep(2.5)
            self.assertIs(self.source(src)["expired"], False, "nobody sweeps while it is held")
        finally:
            holder.wait(timeout=10)
        wait_for("cron:locked to expire", lambda: (self.source(src) or {}).get("expired"))


class OrphanPurgeTest(TwoServerTestCase):
    """--orphan-purge-after 2s (sources expire by their manifests' ttl)."""

    server_args = ("--orphan-purge-after", "2s")

    def test_purge(self):
        purged_before = sum(swept(s, "orphan_purged") for s in (self.srv, self.b))
        self.assertStatus(self.srv.post("/v1/manifests", manifest(
            "deploy:gone", [("service/old", "depends_on", "database/kept")])), 200)
        self.assertStatus(self.srv.post("/v1/manifests", manifest(
            "deploy:stays", [("service/new", "depends_on", "database/kept")])), 200)
        # An orphan that someone edits by hand stops being one: never purged.
        self.assertStatus(self.srv.post("/v1/manifests", manifest(
            "deploy:gone", [], nodes=["service/rescued"])), 200)
        self.assertStatus(self.srv.post("/v1/manifests", manifest("deploy:gone", [])), 200)
        self.assertStatus(self.srv.put_node("service/rescued", {"owner": "me"}), 200)
        node = self.assertStatus(self.srv.get(node_path("service/old")), 200)
        self.assertIs(node["orphan"], True)

        wait_for("service/old to be purged",
                 lambda: self.b.get(node_path("service/old"))[0] == 404, timeout=10)
        for srv in (self.srv, self.b):
            self.assertEqual(srv.get(node_path("service/old"))[0], 404)
            self.assertStatus(srv.get(node_path("database/kept")), 200)
            self.assertStatus(srv.get(node_path("service/rescued")), 200)
        # History keeps it: one node.deleted by cmdbd, with the whole node before.
        rows, since = [], 0
        while True:
            body = self.assertStatus(self.srv.get("/v1/changes?limit=1000&since=%d" % since), 200)
            rows += [c for c in body["changes"] if c["ref"] == "service/old"]
            if not body["changes"]:
                break
            since = body["next"]
        deleted = [c for c in rows if c["op"] == "node.deleted"]
        self.assertEqual(len(deleted), 1, rows)
        self.assertEqual((deleted[0]["actor"], deleted[0]["source"]),
                         ("cmdbd", "cmdbd:orphan-purge"))
        self.assertIs(deleted[0]["before"]["orphan"], True)
        self.assertIsNone(deleted[0]["after"])
        self.assertGreaterEqual((lib.parse_time(deleted[0]["at"]) -
                                 max(lib.parse_time(c["at"]) for c in rows
                                     if c["op"] == "node.updated")).total_seconds(), 2.0,
                                "purged no sooner than 2 s after it became an orphan")
        logged = sum(log_count(s, "event=orphan_purged ref=service/old")
                     for s in (self.srv, self.b))
        self.assertEqual(logged, 1)
        self.assertEqual(sum(swept(s, "orphan_purged") for s in (self.srv, self.b)),
                         purged_before + 1)

    def test_expired_source_then_purge(self):
        """A manifest ttl expires the source; its orphans are purged after that."""
        self.assertStatus(self.srv.post("/v1/manifests", manifest(
            "cron:once", [("job/nightly", "depends_on", "database/kept2")], ttl="1s")), 200)
        wait_for("job/nightly to be purged",
                 lambda: self.srv.get(node_path("job/nightly"))[0] == 404, timeout=15)
        wait_for("database/kept2 to be purged",
                 lambda: self.b.get(node_path("database/kept2"))[0] == 404, timeout=15)


ADAPTER = os.path.join(lib.REPO, "examples", "jaeger", "jaeger-deps-to-manifest")
FIXTURE = os.path.join(lib.REPO, "examples", "jaeger", "hotrod-dependencies.json")


class JaegerAdapterTest(ServerTestCase):
    """examples/jaeger end to end: Jaeger's dependency links, as jaeger-query serves
    them, become observed:jaeger; drift compares them with a deploy tool's manifest."""

    DECLARED = [
        ("service/frontend", "depends_on", "service/customer"),
        ("service/frontend", "depends_on", "service/driver"),
        ("service/frontend", "depends_on", "service/route"),
        ("service/customer", "depends_on", "database/mysql"),
        ("service/route", "depends_on", "database/mysql"),        # never seen in traces
        ("service/frontend", "connects_to", "load_balancer/edge"),  # lb not traced
    ]

    def adapter(self, *args, input=None):
        p = subprocess.run([sys.executable, ADAPTER] + list(args), capture_output=True,
                           text=True, timeout=60, input=input)
        return p

    def test_fixture_to_drift(self):
        self.assertStatus(self.srv.post("/v1/manifests",
                                        manifest("capistrano:hotrod", self.DECLARED)), 200)
        p = self.adapter("--file", FIXTURE, "--map", "mysql=database/mysql",
                         "--map", "redis-manual=cache/redis", "--ttl", "3h")
        self.assertEqual(p.returncode, 0, p.stderr)
        m = json.loads(p.stdout)
        self.assertEqual(m["source"], "observed:jaeger")
        self.assertEqual(m["ttl"], "3h")
        self.assertIsInstance(m["generation"], int)
        # frontend -> frontend (a service calling itself) is left out: no self-edges.
        self.assertEqual(edge_keys(m["edges"]), [
            ("service/customer", "depends_on", "database/mysql"),
            ("service/driver", "depends_on", "cache/redis"),
            ("service/frontend", "depends_on", "service/customer"),
            ("service/frontend", "depends_on", "service/driver"),
            ("service/frontend", "depends_on", "service/route"),
        ])
        push = self.srv.cmdb("push", "-", input=p.stdout)
        self.assertEqual(push.returncode, 0, push.stderr)

        d = self.assertStatus(self.srv.get("/v1/drift?observer=observed:jaeger"), 200)
        self.assertEqual(edge_keys(d["undeclared"]),
                         [("service/driver", "depends_on", "cache/redis")])
        self.assertEqual(edge_keys(d["unobserved"]),
                         [("service/route", "depends_on", "database/mysql")])
        src = [s for s in self.assertStatus(self.srv.get("/v1/sources"), 200)["items"]
               if s["source"] == "observed:jaeger"]
        self.assertEqual((src[0]["ttl"], src[0]["edges"]), ("3h", 5))

        # The next run sees the same links: nothing on the map changes.
        seq = self.assertStatus(self.srv.get("/v1/changes?since=0&limit=1000"), 200)["next"]
        again = self.adapter("--file", FIXTURE, "--map", "mysql=database/mysql",
                             "--map", "redis-manual=cache/redis", "--ttl", "3h")
        r = self.assertStatus(self.srv.post("/v1/manifests", json.loads(again.stdout)), 200)
        self.assertIsNone(r["seq"], "no change logged: %r" % r)
        self.assertEqual(self.srv.get("/v1/changes?since=%d" % seq)[2]["changes"], [])

    def test_from_a_url(self):
        """--url asks /api/dependencies with endTs and lookback in milliseconds."""
        asked = []
        with open(FIXTURE, "rb") as f:
            reply = f.read()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                asked.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *a):
                pass

        httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        t = threading.Thread(target=httpd.serve_forever, daemon=True)
        t.start()
        try:
            before = int(time.time() * 1000)
            p = self.adapter("--url", "http://127.0.0.1:%d/" % httpd.server_address[1],
                             "--lookback", "2h")
        finally:
            httpd.shutdown()
            httpd.server_close()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(asked), 1)
        u = urllib.parse.urlsplit(asked[0])
        q = dict(urllib.parse.parse_qsl(u.query))
        self.assertEqual(u.path, "/api/dependencies")
        self.assertEqual(q["lookback"], str(2 * 3600 * 1000))
        self.assertGreaterEqual(int(q["endTs"]), before)
        from_file = json.loads(self.adapter("--file", FIXTURE).stdout)
        self.assertEqual(json.loads(p.stdout)["edges"], from_file["edges"])
        self.assertIn(("service/driver", "depends_on", "service/redis-manual"),
                      edge_keys(from_file["edges"]), "unmapped: KIND/NAME")

    def test_bad_input(self):
        for text in ('{"data":[{"parent":"a","child":"b","callCount":-1}]}',
                     '{"data":[{"parent":"a","child":""}]}',
                     '{"data":{"parent":"a"}}',
                     '{"result":[]}',
                     '{"data":null,"errors":[{"code":500,"msg":"storage down"}]}',
                     'not json'):
            p = self.adapter("--file", "-", input=text)
            self.assertEqual(p.returncode, 2, text)
            self.assertTrue(p.stderr.strip(), "says why: " + text)
            self.assertEqual(p.stdout, "", "no manifest for bad input")
        p = self.adapter("--file", FIXTURE, "--source", "jaeger")
        self.assertEqual(p.returncode, 2, "the source must be observed:")
        p = self.adapter("--url", "http://127.0.0.1:%d" % lib.free_port(), "--timeout", "5")
        self.assertEqual(p.returncode, 3, "Jaeger unreachable")


if __name__ == "__main__":
    unittest.main()
