#!/usr/bin/python3
"""History (SPEC §5 "As of" and "Diff") against an independent model of the change feed.

The random map of test_graph_oracle.py (a few thousand nodes, several manifest sources,
hand edges, deletions, re-adds, withdrawals = replaced edges, health changes) is written
through the API in several rounds, so the change log holds thousands of rows. The test
then reads the whole feed (GET /v1/changes), replays it into a separate model up to
random seqs and asks every as_of endpoint at those seqs: dependents, dependencies,
owners, path, rootcause and graph are compared with the networkx oracle
(tests/e2e/oracle.py) built from the replayed map; the node GET and the edges of a node
with the images the feed says they had. as_of=TIME resolves to the greatest seq whose
`at` is at or before it. Then diffs (between seqs, of a deployment, and the reach) are
compared with the first/last change of every ref in the range, and the CLI is driven.

Run: /usr/bin/python3 tests/e2e/test_history.py   (needs CMDB_TEST_ADMIN_URL, see lib.py)
"""

import json
import os
import random
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import ServerTestCase, node_path  # noqa: E402
from oracle import IMPACT_TYPES, Oracle, byte_key  # noqa: E402
from test_graph_oracle import Checker, MapModel, generate  # noqa: E402

SEED = int(os.environ.get("CMDB_HISTORY_SEED") or random.SystemRandom().randrange(1, 10**9))
MAX_REPORTED = 25


def qs(**params):
    return urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})


def with_param(path, key, value):
    return path + ("&" if "?" in path else "?") + qs(**{key: value})


class Feed:
    """The change feed, replayed: the map as of any seq, from the feed alone."""

    def __init__(self, changes):
        self.changes = changes  # in seq order
        self.latest = changes[-1]["seq"] if changes else 0

    def state(self, seq):
        nodes, edges, node_img, edge_img = {}, set(), {}, {}
        for c in self.changes:
            if c["seq"] > seq:
                break
            img = c["after"]
            if c["op"].startswith("node."):
                ref = c["ref"]
                if img is None:
                    nodes.pop(ref, None)
                    node_img.pop(ref, None)
                else:
                    nodes[ref] = {"health": img["health"], "attributes": img["attributes"]}
                    node_img[ref] = img
            else:
                img = img or c["before"]
                key = (img["from"], img["type"], img["to"])
                if c["after"] is None:
                    edges.discard(key)
                    edge_img.pop(key, None)
                else:
                    edges.add(key)
                    edge_img[key] = c["after"]
        return nodes, edges, node_img, edge_img

    def seq_at(self, t):
        """The greatest seq whose at <= t (times in one fixed format compare as strings)."""
        best = 0
        for c in self.changes:
            if c["at"] <= t:
                best = max(best, c["seq"])
        return best

    def at_of(self, seq):
        for c in self.changes:
            if c["seq"] == seq:
                return c["at"]
        return None

    def diff(self, lo, hi):
        """SPEC §5 diff from the feed: first and last change of every ref in (lo, hi]."""
        first, last = {}, {}
        for c in self.changes:
            if lo < c["seq"] <= hi:
                key = (c["op"].startswith("node."), c["ref"])
                first.setdefault(key, c["before"])
                last[key] = c["after"]
        out = {"nodes": {"added": [], "removed": [], "changed": []},
               "edges": {"added": [], "removed": [], "changed": []}}
        for key in first:
            b, a = first[key], last[key]
            part = out["nodes"] if key[0] else out["edges"]
            if b is None and a is not None:
                part["added"].append(key[1] if key[0] else a)
            elif b is not None and a is None:
                part["removed"].append(key[1] if key[0] else b)
            elif b is not None and a != b:
                if key[0]:
                    fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                    part["changed"].append({"ref": key[1], "fields": fields})
                else:
                    part["changed"].append(a)
        ekey = lambda e: (byte_key(e["from"]), byte_key(e["type"]), byte_key(e["to"]))  # noqa
        out["nodes"]["added"].sort(key=byte_key)
        out["nodes"]["removed"].sort(key=byte_key)
        out["nodes"]["changed"].sort(key=lambda x: byte_key(x["ref"]))
        for k in ("added", "removed", "changed"):
            out["edges"][k].sort(key=ekey)
        return out


class AsOfServer:
    """Stands in for the Server in a Checker: every graph request carries as_of=SEQ (a
    query parameter, or the rootcause body field); each reply must carry the expected
    "as_of" (or the dot comment line), which is checked and stripped."""

    def __init__(self, srv, as_of, want_seq, want_at, problems):
        self.srv, self.as_of, self.want = srv, as_of, {"seq": want_seq, "at": want_at}
        self.problems = problems

    def _check(self, what, resp):
        st, h, body = resp
        if st != 200:
            return resp
        if isinstance(body, dict):
            got = body.pop("as_of", None)
            if got != self.want:
                self.problems.append("%s\n    expected: as_of %s\n    got:      %s"
                                     % (what, self.want, got))
        elif isinstance(body, str):
            first, _, rest = body.partition("\n")
            want = "// as_of seq=%d at=%s" % (self.want["seq"], self.want["at"] or "null")
            if first != want:
                self.problems.append("%s\n    expected first line %r\n    got: %r"
                                     % (what, want, first))
            body = rest
        return st, h, body

    def get(self, path, **kw):
        p = with_param(path, "as_of", self.as_of)
        return self._check("GET " + p, self.srv.get(p, **kw))

    def post(self, path, body, **kw):
        body = dict(body, as_of=self.as_of)
        return self._check("POST %s %s" % (path, json.dumps(body)[:200]),
                           self.srv.post(path, body, **kw))


class History(ServerTestCase):
    server_name = "history"

    # -- the writes

    def write_history(self, rng):
        """The oracle test's writers, in rounds; returns (model, refs, by_source, declared)."""
        refs, by_source, declared = generate(rng)
        model = MapModel(self.srv)
        for src in sorted(by_source):
            model.manifest(src, by_source[src], declared.get(src, {}))
        everything = sorted(model.nodes)
        for _ in range(100):
            a, b = rng.sample(everything, 2)
            model.put_edge((a, rng.choice(("depends_on", "connects_to", "part_of",
                                            "owned_by")), b))
        for r in rng.sample(everything, 120):
            model.health(r, rng.choice(("down", "degraded", "ok")))
        hubs = sorted(model.nodes, key=lambda r: -sum(1 for e in model.edges if r in (e[0], e[2])))
        doomed = list(dict.fromkeys(rng.sample(hubs[:60], 5) + rng.sample(everything, 15)))
        for r in doomed:
            model.delete_node(r)
        for r in rng.sample(doomed, 10):  # re-added, with new edges
            model.put_node(r)
            model.put_edge((rng.choice(sorted(model.nodes)), "depends_on", r))
        for src in ("deploy:team-1", "catalog:backstage"):  # replaced edges (withdrawal)
            keep = [e for e in by_source[src] if rng.random() < 0.7]
            model.manifest(src, keep, declared.get(src, {}))
        for e in rng.sample(sorted(model.edges), 30):
            model.delete_edge(e)
        for r in rng.sample(sorted(model.nodes), 60):
            model.health(r, rng.choice(("down", "ok", "unknown", "degraded")))
        model.manifest("deploy:team-1", by_source["deploy:team-1"],
                       declared.get("deploy:team-1", {}))
        self.assertEqual(model.problems, [], "the writes are accepted")
        return model, refs, by_source, declared

    def feed(self):
        out, since = [], 0
        while True:
            st, _, body = self.srv.get("/v1/changes?since=%d&limit=1000" % since)
            self.assertEqual(st, 200, body)
            out += body["changes"]
            if not body["changes"]:
                return Feed(out)
            since = body["next"]

    # -- as_of against the model

    def check_point(self, feed, seq, rng, n_roots, as_of=None):
        """Every endpoint as of `seq` (asked as `as_of`, default the seq itself)."""
        nodes, edges, node_img, edge_img = feed.state(seq)
        problems = []
        proxy = AsOfServer(self.srv, seq if as_of is None else as_of, seq, feed.at_of(seq),
                           problems)
        o = Oracle(nodes, edges)
        c = Checker(proxy, o, rng)
        refs = sorted(nodes, key=byte_key)
        if not refs:
            return problems
        deg = sorted(refs, key=lambda r: -(o.impact.in_degree(r) + o.impact.out_degree(r)))
        roots = list(dict.fromkeys(deg[:5] + rng.sample(refs, min(len(refs), n_roots))))
        for r in roots[:n_roots]:
            for d in ("dependents", "dependencies"):
                c.walk(r, d)
                c.walk(r, d, depth=rng.choice((1, 2, 3)),
                       types=rng.sample(IMPACT_TYPES, rng.randint(1, 3)), limit=rng.choice((None, 5)))
            c.owners(r)
        infra = [r for r in refs if r.split("/")[0] in ("host", "vm", "container")]
        for r in rng.sample(infra, min(len(infra), 10)):
            c.owners(r)
        for r in rng.sample(refs, min(len(refs), 15)):
            deps = o.distances(r, "dependencies")
            to = rng.choice(sorted(deps, key=byte_key)) if deps and rng.random() < 0.8 \
                else rng.choice(refs)
            if to != r:
                c.path(r, to)
        for _ in range(8):
            f = rng.choice(refs)
            dep = sorted(o.distances(f, "dependents"), key=byte_key)
            fail = [f] + rng.sample(dep, min(2, len(dep))) + rng.sample(refs, 2)
            c.rootcause(list(dict.fromkeys(fail)), rng.choice((1, 3, 16)))
        for r in rng.sample(roots, min(len(roots), 6)):
            c.graph(r, rng.choice((1, 2)), rng.choice(("dependents", "dependencies", "both")))
        # The node and its edges: the images the feed says they had then.
        for r in rng.sample(refs, min(len(refs), 12)):
            c.node_owners(r)
            st, _, body = proxy.get(node_path(r))
            want = dict(node_img[r])
            got = {k: v for k, v in body.items() if k not in ("owners", "edges")} \
                if st == 200 else None
            n_in = sum(1 for e in edges if e[2] == r)
            n_out = sum(1 for e in edges if e[0] == r)
            if got != want or body.get("edges") != {"in": n_in, "out": n_out}:
                problems.append("GET %s as_of=%s\n    expected: %s, edges in %d out %d\n"
                                "    got: %s %s" % (r, seq, json.dumps(want)[:400], n_in, n_out,
                                                    st, json.dumps(body)[:400]))
            direction = rng.choice(("in", "out", "both"))
            st, _, body = proxy.get(node_path(r) + "/edges?direction=" + direction)
            want_e = sorted((edge_img[e] for e in edges
                             if (direction != "in" and e[0] == r) or
                             (direction != "out" and e[2] == r)),
                            key=lambda x: (byte_key(x["from"]), x["type"], byte_key(x["to"])))
            if st != 200 or body.get("edges") != want_e:
                problems.append("GET %s/edges?direction=%s as_of=%s\n    expected: %s\n"
                                "    got: %s %s" % (r, direction, seq, json.dumps(want_e)[:400],
                                                    st, json.dumps(body)[:400]))
        # A node that did not exist then is not found then.
        later = [ch["ref"] for ch in feed.changes if ch["seq"] > seq and
                 ch["op"] == "node.created" and ch["ref"] not in nodes]
        for r in later[:3]:
            for suffix in ("", "/dependents", "/owners", "/edges"):
                st, _, body = self.srv.get(with_param(node_path(r) + suffix, "as_of", seq))
                if st != 404:
                    problems.append("GET %s%s?as_of=%d: %s did not exist then\n    expected:"
                                    " 404\n    got: %s %s" % (node_path(r), suffix, seq, r, st,
                                                             json.dumps(body)[:200]))
        print("seed=%d as_of=%s (seq %d): nodes=%d edges=%d requests=%d problems=%d"
              % (SEED, as_of if as_of is not None else seq, seq, len(nodes), len(edges),
                 c.requests, len(problems) + len(c.failures)), flush=True)
        return problems + c.failures

    def test_as_of_matches_replayed_feed(self):
        print("seed=%d (replay with CMDB_HISTORY_SEED=%d)" % (SEED, SEED), flush=True)
        rng = random.Random(SEED)
        t0 = time.monotonic()
        self.write_history(rng)
        feed = self.feed()
        print("seed=%d: %d change rows written and read in %.1fs"
              % (SEED, len(feed.changes), time.monotonic() - t0), flush=True)
        self.assertGreater(len(feed.changes), 3000, "thousands of changes")
        ops = {c["op"] for c in feed.changes}
        self.assertTrue({"node.deleted", "edge.deleted", "node.updated"} <= ops, ops)
        failures = []
        # Random points, including one near the start (replayed forward from nothing),
        # the latest and one past it (answers for the latest).
        points = sorted(rng.sample(range(1, feed.latest), 4)) + [rng.randint(1, 50)]
        for seq in points:
            failures += self.check_point(feed, seq, rng, 10)
        failures += self.check_point(feed, feed.latest, rng, 4, as_of=feed.latest + 1000)
        # as_of=TIME: an at in the log, a moment between two, and one in the future.
        for c in rng.sample(feed.changes, 2):
            want = feed.seq_at(c["at"])
            failures += self.check_point(feed, want, rng, 3, as_of=c["at"])
        failures += self.check_point(feed, feed.latest, rng, 2, as_of="2999-01-01T00:00:00Z")
        failures += self.check_point(feed, 0, rng, 2, as_of="2000-01-01T00:00:00+02:00")
        if failures:
            self.fail("seed %d: %d failures (first %d):\n  %s\nserver log tail:\n%s"
                      % (SEED, len(failures), min(len(failures), MAX_REPORTED),
                         "\n  ".join(failures[:MAX_REPORTED]), self.srv.log_tail(10)))

    # -- errors

    def test_as_of_errors(self):
        s = self.srv
        self.assertStatus(s.put_node("service/hist-err", {"a": 1}), (200, 201))
        p = node_path("service/hist-err")
        for bad in ("abc", "-1", "1.5", "", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                    "2026-11-21 10:00:00", "2026-11-21T10:00:00", "99999999999999999999"):
            for path in (p, p + "/dependents", p + "/owners", p + "/edges",
                         "/v1/graph?root=service/hist-err",
                         "/v1/path?from=service/hist-err&to=service/hist-err"):
                self.assertError(s.get(with_param(path, "as_of", bad)), 400, "bad_request",
                                 mentions=["as_of"], what="as_of=%r on %s" % (bad, path))
        for bad in (-1, 1.5, True, "x", {"seq": 1}):
            self.assertError(s.post("/v1/rootcause", {"failing": ["service/hist-err"],
                                                      "as_of": bad}),
                             400, mentions=["as_of"], what="rootcause as_of=%r" % (bad,))
        # Before the node existed → 404; at seq 0 (the empty map) nothing exists.
        st, _, body = s.get("/v1/changes?since=0&limit=1")
        self.assertEqual(st, 200)
        created = [c["seq"] for c in self.feed().changes
                   if c["ref"] == "service/hist-err" and c["op"] == "node.created"]
        self.assertTrue(created)
        self.assertError(s.get(with_param(p, "as_of", created[0] - 1)), 404, "not_found")
        self.assertError(s.get(with_param(p + "/dependents", "as_of", 0)), 404, "not_found")
        self.assertError(s.post("/v1/rootcause", {"failing": ["service/hist-err"], "as_of": 0}),
                         404)
        st, _, body = s.get(with_param(p, "as_of", created[0]))
        self.assertEqual(st, 200, body)
        self.assertEqual(body["as_of"]["seq"], created[0])
        self.assertTime(body["as_of"]["at"], "as_of.at")
        st, _, body = s.post("/v1/rootcause", {"failing": ["service/hist-err"],
                                               "as_of": created[0]})
        self.assertEqual((st, body["as_of"]["seq"]), (200, created[0]), body)

    def test_as_of_time_with_a_late_commit(self):
        """`at` is a transaction's start and seq its commit order: a transaction that
        started before TIME and commits later moves "the greatest seq whose at <= TIME"
        — also when the answer for that TIME was asked (and kept) before."""
        import subprocess
        from lib import PSQL
        s = self.srv
        self.assertStatus(s.put_node("service/late-a"), (200, 201))
        late = subprocess.Popen([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                 "-d", s.db_url], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        try:
            late.stdin.write("BEGIN;\nSELECT cmdb_ts(now());\n")
            late.stdin.flush()
            t_late = late.stdout.readline().strip()  # the late transaction's at
            time.sleep(0.05)
            st, _, body = s.get("/v1/changes?since=0&limit=1")
            self.assertStatus(s.put_node("service/late-b"), (200, 201))
            feed = self.feed()
            t_mid = feed.changes[-1]["at"]  # after t_late: service/late-b's
            self.assertLess(t_late, t_mid)
            want_before = feed.seq_at(t_mid)
            self.assertEqual(want_before, feed.latest)
            p = node_path("service/late-a") + "/dependents?" + qs(as_of=t_mid)
            st, _, body = s.get(p)
            self.assertEqual((st, body["as_of"]["seq"]), (200, want_before), body)
            # Now the late transaction writes and commits: its row has the greatest seq
            # and an at before t_mid, so it is part of the map "as of t_mid".
            late.stdin.write("SELECT cmdb_node_put('service', 'late-c', NULL, NULL, NULL, "
                             "'late', 'api:late');\nCOMMIT;\n\\echo done\n")
            late.stdin.flush()
            while late.stdout.readline().strip() != "done":
                pass
        finally:
            late.stdin.close()
            late.wait(timeout=30)
            late.stdout.close()
        feed = self.feed()
        c = feed.changes[-1]
        self.assertEqual((c["ref"], c["at"] <= t_mid), ("service/late-c", True), c)
        self.assertEqual(feed.seq_at(t_mid), c["seq"])
        deadline = time.monotonic() + 5
        while True:  # the server applies the late row (NOTIFY), then answers with it
            st, _, body = s.get(p)
            if body["as_of"]["seq"] == c["seq"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(body["as_of"], {"seq": c["seq"], "at": c["at"]})
        st, _, body = s.get(node_path("service/late-c") + "?" + qs(as_of=t_mid))
        self.assertEqual(st, 200, body)

    # -- diff

    def manifest(self, source, edges, nodes=(), gen=None):
        body = {"manifest": "cmdb/v1", "source": source,
                "deployment": {"node": "service/hd-api", "version": "1"},
                "nodes": [{"ref": r} for r in nodes],
                "edges": [{"from": f, "type": t, "to": to} for f, t, to in edges]}
        st, _, rep = self.srv.post("/v1/manifests", body)
        self.assertEqual(st, 200, rep)
        return rep

    def test_diff(self):
        s = self.srv
        rep1 = self.manifest("deploy:hd", [("service/hd-api", "depends_on", "service/hd-auth"),
                                           ("service/hd-web", "depends_on", "service/hd-api")])
        base = rep1["seq"]
        self.assertStatus(s.put(node_path("service/hd-auth") + "/health",
                                {"state": "down", "reason": "x"}), 200)
        rep2 = self.manifest("deploy:hd", [("service/hd-api", "depends_on", "database/hd-db"),
                                           ("service/hd-web", "depends_on", "service/hd-api"),
                                           ("service/hd-batch", "depends_on", "service/hd-api")])
        self.assertStatus(s.delete(node_path("service/hd-auth")), 204)
        feed = self.feed()

        st, _, d = s.get("/v1/diff?" + qs(**{"from": base}))
        self.assertEqual(st, 200, d)
        want = feed.diff(base, feed.latest)
        self.assertEqual(d["from"], {"seq": base, "at": feed.at_of(base)})
        self.assertEqual(d["to"], {"seq": feed.latest, "at": feed.at_of(feed.latest)})
        self.assertEqual(d["nodes"], want["nodes"])
        self.assertEqual(d["edges"], want["edges"])
        self.assertIn("database/hd-db", d["nodes"]["added"])
        self.assertIn("service/hd-batch", d["nodes"]["added"])
        self.assertIn("service/hd-auth", d["nodes"]["removed"])
        self.assertEqual([(e["from"], e["type"], e["to"]) for e in d["edges"]["removed"]],
                         [("service/hd-api", "depends_on", "service/hd-auth")])
        # Between two arbitrary seqs of the big history too, and by time.
        for lo, hi in ((1, feed.latest // 2), (feed.latest // 3, feed.latest - 5)):
            st, _, d = s.get("/v1/diff?" + qs(**{"from": lo, "to": hi}))
            self.assertEqual(st, 200, d)
            want = feed.diff(lo, hi)
            self.assertEqual((d["nodes"], d["edges"]), (want["nodes"], want["edges"]),
                             "diff %d..%d" % (lo, hi))
        st, _, d = s.get("/v1/diff?" + qs(**{"from": feed.at_of(base), "to": feed.at_of(base)}))
        self.assertEqual((st, d["from"]["seq"], d["to"]["seq"]),
                         (200, feed.seq_at(feed.at_of(base)), feed.seq_at(feed.at_of(base))), d)

        # A deployment's diff: exactly its own changes, and the reach it changed.
        dep = rep2["deployment_id"]
        st, _, d = s.get("/v1/deployments/%s/diff" % dep)
        self.assertEqual(st, 200, d)
        mine = [c["seq"] for c in feed.changes if base < c["seq"] <= rep2["seq"]
                and c["source"] == "deploy:hd"]
        self.assertEqual((d["from"]["seq"], d["to"]["seq"]), (min(mine) - 1, rep2["seq"]))
        want = feed.diff(min(mine) - 1, rep2["seq"])
        self.assertEqual((d["nodes"], d["edges"]), (want["nodes"], want["edges"]))
        self.assertEqual(sorted((e["from"], e["type"], e["to"]) for e in d["edges"]["added"]),
                         [("service/hd-api", "depends_on", "database/hd-db"),
                          ("service/hd-batch", "depends_on", "service/hd-api")])
        st, _, d2 = s.get("/v1/diff?" + qs(**{"from": "deployment:" + dep,
                                              "to": "deployment:" + dep}))
        self.assertEqual(d2, d)
        st, _, d = s.get("/v1/deployments/%s/diff?root=database/hd-db&direction=dependents" % dep)
        self.assertEqual(st, 200, d)
        self.assertEqual(d["reach"]["added"], ["service/hd-api", "service/hd-batch",
                                               "service/hd-web"])
        self.assertEqual(d["reach"]["removed"], [])
        st, _, d = s.get("/v1/deployments/%s/diff?root=service/hd-api&direction=dependencies"
                         % dep)
        self.assertEqual((d["reach"]["added"], d["reach"]["removed"]),
                         (["database/hd-db"], ["service/hd-auth"]), d)
        st, _, d = s.get("/v1/deployments/%s/diff?root=service/hd-api&direction=dependents&depth=1"
                         % dep)
        self.assertEqual((d["reach"]["added"], d["reach"]["removed"]), (["service/hd-batch"], []))
        # Errors.
        self.assertError(s.get("/v1/diff"), 400, mentions=["from"])
        self.assertError(s.get("/v1/diff?from=yesterday"), 400, mentions=["from"])
        self.assertError(s.get("/v1/diff?from=1&to=deployment:nope"), 400, mentions=["to"])
        self.assertError(s.get("/v1/diff?from=5&to=2"), 400, mentions=["from"])
        self.assertError(s.get("/v1/diff?from=1&direction=dependents"), 400, mentions=["root"])
        self.assertError(s.get("/v1/diff?from=1&root=service/hd-api&direction=up"), 400,
                         mentions=["direction"])
        self.assertError(s.get("/v1/deployments/00000000-0000-4000-8000-000000000000/diff"),
                         404, "not_found")
        self.assertError(s.get("/v1/deployments/xyz/diff"), 400, mentions=["id"])
        self.assertError(s.get("/v1/diff?from=1&root=service/never-was"), 404, "not_found")

        # The CLI: --as-of on the queries, and diff.
        r = s.cmdb("dependents", "database/hd-db", "--as-of", str(base), "--json")
        self.assertEqual(r.returncode, 1, r.stderr + r.stdout)  # did not exist then
        r = s.cmdb("dependents", "service/hd-auth", "--as-of", str(base), "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual((out["as_of"]["seq"], [n["ref"] for n in out["nodes"]]),
                         (base, ["service/hd-api", "service/hd-web"]))
        r = s.cmdb("get", "service/hd-auth", "--as-of", str(base))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("as of seq %d" % base, r.stdout)
        for args, text in ((("rootcause", "service/hd-auth"), "service/hd-auth"),
                           (("graph", "service/hd-api"), "// as_of seq=%d" % base),
                           (("path", "service/hd-web", "service/hd-auth"),
                            "service/hd-web --depends_on--> service/hd-api --depends_on--> "
                            "service/hd-auth"),
                           (("owners", "service/hd-api"), "no owners"),
                           (("edges", "service/hd-auth"), "service/hd-api")):
            r = s.cmdb(*args, "--as-of", str(base))
            self.assertEqual(r.returncode, 0, "%s: %s" % (args, r.stderr))
            self.assertIn(text, r.stdout, args)
            if args[0] != "graph":
                self.assertIn("as of seq %d" % base, r.stdout, args)
        r = s.cmdb("rootcause", "service/hd-auth", "--as-of", feed.at_of(base), "--json")
        self.assertEqual((r.returncode, json.loads(r.stdout)["as_of"]["seq"]),
                         (0, feed.seq_at(feed.at_of(base))), r.stderr)
        r = s.cmdb("path", "service/hd-web", "service/hd-auth")
        self.assertEqual(r.returncode, 1, "no such node now: " + r.stdout)
        r = s.cmdb("get", "service/hd-api", "--as-of", "yesterday")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("as_of", r.stderr)
        r = s.cmdb("diff", "deployment:" + dep, "deployment:" + dep, "--root", "database/hd-db",
                   "--direction", "dependents")
        self.assertEqual(r.returncode, 0, r.stderr)
        for text in ("+ node database/hd-db", "+ edge service/hd-batch depends_on service/hd-api",
                     "reach", "+ service/hd-web"):
            self.assertIn(text, r.stdout)
        r = s.cmdb("diff", str(base), "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("service/hd-auth", json.loads(r.stdout)["nodes"]["removed"])
        r = s.cmdb("diff", "soon")
        self.assertEqual(r.returncode, 2, r.stderr)


if __name__ == "__main__":
    unittest.main()
