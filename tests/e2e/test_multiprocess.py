#!/usr/bin/python3
"""Two cmdbd processes on ONE database (SPEC §1 Change log, §2 Graph queries).

Each process keeps its graph in memory, fed by the change log. So:
- a write answered by A is visible in B's graph answers soon (here: within a second),
  and the other way round;
- a write answered by a process is visible in that same process's very next read
  (read-your-writes), checked over many iterations on both;
- after both write at the same time and things settle, both graphs equal the stored
  map (checked against the oracle of tests/e2e/oracle.py) and each other.

Run: /usr/bin/python3 tests/e2e/test_multiprocess.py   (needs CMDB_TEST_ADMIN_URL, see lib.py)
"""

import json
import os
import random
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import TwoServerTestCase, node_path  # noqa: E402
from oracle import Oracle  # noqa: E402

VISIBLE_WITHIN = 1.0  # seconds: the bound this test holds the cross-process lag to
SEED = int(os.environ.get("CMDB_ORACLE_SEED") or random.SystemRandom().randrange(1, 10**9))


def refs_of(resp):
    st, _, body = resp
    if st != 200 or not isinstance(body, dict):
        raise AssertionError("expected 200 with a walk, got %s %s" % (st, body))
    return {n["ref"] for n in body["nodes"]}


def edge_q(frm, typ, to):
    return "/v1/edges?" + urllib.parse.urlencode({"from": frm, "type": typ, "to": to})


class TwoServers(TwoServerTestCase):
    server_name = "mp_a"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a = cls.srv

    def nodes(self, srv, *refs):
        for r in refs:
            self.assertStatus(srv.put_node(r), (200, 201), "create " + r)

    def wait_for(self, srv, path, pred, what):
        """Poll srv until pred(response) holds; return the seconds it took; fail after
        VISIBLE_WITHIN with the last answer. An answer pred cannot judge (a 404 while the
        node has not arrived yet) counts as not yet visible."""
        t0 = time.monotonic()
        while True:
            resp = srv.get(path)
            try:
                if pred(resp):
                    return time.monotonic() - t0
            except (AssertionError, KeyError, TypeError):
                pass
            if time.monotonic() - t0 > VISIBLE_WITHIN:
                self.fail("%s: not visible on %s within %.1f s; last answer %s %s\n"
                          "log of the polled server:\n%s"
                          % (what, srv.url, VISIBLE_WITHIN, resp[0],
                             json.dumps(resp[2])[:500], srv.log_tail(10)))
            time.sleep(0.01)

    def test_writes_cross_over(self):
        """Hand edges, deletions and manifests through one server reach the other's graph."""
        pairs = [(self.a, self.b, "A->B"), (self.b, self.a, "B->A")]
        lags = []
        for i in range(20):
            w, r, name = pairs[i % 2]
            x, y = "service/x-%d" % i, "database/y-%d:5432" % i
            self.nodes(w, x, y)
            self.assertStatus(w.put_edge(x, "depends_on", y), 201)
            lags.append(self.wait_for(r, node_path(y) + "/dependents",
                                      lambda resp, x=x: x in refs_of(resp),
                                      "%s: PUT %s depends_on %s" % (name, x, y)))
            self.assertStatus(w.delete(edge_q(x, "depends_on", y)), 204)
            lags.append(self.wait_for(r, node_path(y) + "/dependents",
                                      lambda resp, x=x: x not in refs_of(resp),
                                      "%s: DELETE edge %s depends_on %s" % (name, x, y)))
            self.assertStatus(w.put_edge(x, "depends_on", y), 201)
            self.assertStatus(w.delete(node_path(x)), 204)
            lags.append(self.wait_for(r, node_path(y) + "/dependents",
                                      lambda resp: resp[2]["count"] == 0,
                                      "%s: DELETE node %s" % (name, x)))
        for i, (w, r, name) in enumerate(pairs):
            m = {"manifest": "cmdb/v1", "source": "mp:src-%d" % i,
                 "edges": [{"from": "service/m%d-%d" % (i, k), "type": "runs_on",
                            "to": "host/mh-%d" % i} for k in range(30)]}
            self.assertStatus(w.post("/v1/manifests", m), 200)
            want = {"service/m%d-%d" % (i, k) for k in range(30)}
            lags.append(self.wait_for(r, node_path("host/mh-%d" % i) + "/dependents",
                                      lambda resp, want=want: refs_of(resp) == want,
                                      "%s: manifest %s" % (name, m["source"])))
            m["edges"] = m["edges"][:10]  # withdraw 20 edges
            self.assertStatus(w.post("/v1/manifests", m), 200)
            want = {"service/m%d-%d" % (i, k) for k in range(10)}
            lags.append(self.wait_for(r, node_path("host/mh-%d" % i) + "/dependents",
                                      lambda resp, want=want: refs_of(resp) == want,
                                      "%s: smaller manifest %s" % (name, m["source"])))
        lags.sort()
        print("cross-process lag over %d writes: median %.1f ms, max %.1f ms"
              % (len(lags), 1000 * lags[len(lags) // 2], 1000 * lags[-1]), flush=True)

    def test_read_your_writes(self):
        """The very next read on the server that answered a write already reflects it."""
        rng = random.Random(SEED)
        pool = ["service/r-%02d" % i for i in range(40)]
        self.nodes(self.a, *pool)
        misses = []
        checks = 0
        for i in range(300):
            s = self.a if i % 2 == 0 else self.b
            x, y = rng.sample(pool, 2)
            typ = rng.choice(("depends_on", "runs_on", "connects_to"))
            r = s.put_edge(x, typ, y)
            self.assertStatus(r, (200, 201))
            checks += 2
            if x not in refs_of(s.get(node_path(y) + "/dependents?depth=1&limit=100000")):
                misses.append("%s: PUT %s %s %s answered %d, next GET %s/dependents lacks %s"
                              % (s.name, x, typ, y, r[0], y, x))
            self.assertStatus(s.delete(edge_q(x, typ, y)), 204)
            got = s.get(node_path(y) + "/dependents?depth=1&limit=100000")[2]
            if any(n["via"] == {"from": x, "type": typ, "to": y} for n in got["nodes"]):
                misses.append("%s: DELETE %s %s %s answered 204, next GET %s/dependents still "
                              "uses that edge" % (s.name, x, typ, y, y))
            if i % 25 == 0:  # a manifest, then its withdrawal
                checks += 2
                src = {"manifest": "cmdb/v1", "source": "ryw:%s" % s.name,
                       "edges": [{"from": x, "type": "part_of", "to": "system/ryw"}]}
                self.assertStatus(s.post("/v1/manifests", src), 200)
                if x not in refs_of(s.get(node_path("system/ryw") + "/dependencies")):
                    misses.append("%s: manifest with %s part_of system/ryw answered, next GET "
                                  "system/ryw/dependencies lacks it" % (s.name, x))
                src["edges"] = []
                self.assertStatus(s.post("/v1/manifests", src), 200)
                if x in refs_of(s.get(node_path("system/ryw") + "/dependencies")):
                    misses.append("%s: empty manifest answered, next GET system/ryw/"
                                  "dependencies still lists %s" % (s.name, x))
        if misses:
            self.fail("read-your-writes broken in %d of %d checks (SEED=%d), e.g.:\n  %s"
                      % (len(misses), checks, SEED, "\n  ".join(misses[:10])))

    def test_concurrent_writers_converge(self):
        """Both write at once; once settled, both graphs are the stored map."""
        rng = random.Random(SEED + 1)
        pool = ["service/c-%03d" % i for i in range(120)] + ["host/c-%02d" % i for i in range(20)]
        self.nodes(self.a, *pool)
        errors = []

        def writer(s, seed):
            g = random.Random(seed)
            try:
                for _ in range(120):
                    x, y = g.sample(pool, 2)
                    typ = g.choice(("depends_on", "connects_to", "part_of", "runs_on"))
                    if g.random() < 0.25:
                        st = s.delete(edge_q(x, typ, y))[0]
                        ok = (204, 404)
                    else:
                        st = s.put_edge(x, typ, y)[0]
                        ok = (200, 201)
                    if st not in ok:
                        errors.append("%s: %s %s %s -> %d" % (s.name, x, typ, y, st))
            except Exception as e:  # reported by the main thread
                errors.append("%s: %r" % (s.name, e))

        threads = [threading.Thread(target=writer, args=(s, rng.random()))
                   for s in (self.a, self.b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertFalse(errors, errors[:5])
        nodes = self.a.psql_json(
            "SELECT json_object_agg(kind || '/' || name, json_build_object('health', health, "
            "'attributes', attributes)) FROM nodes")
        edges = self.a.psql_json(
            "SELECT coalesce(json_agg(json_build_array(f.kind || '/' || f.name, e.type, "
            "t.kind || '/' || t.name)), '[]') FROM edges e JOIN nodes f ON f.id = e.from_id "
            "JOIN nodes t ON t.id = e.to_id")
        o = Oracle(nodes, [tuple(e) for e in edges])
        time.sleep(VISIBLE_WITHIN)
        for ref in pool:
            for d in ("dependents", "dependencies"):
                want = o.walk(ref, d, limit=100000)["nodes"]
                for s in (self.a, self.b):
                    st, _, body = s.get(node_path(ref) + "/%s?limit=100000" % d)
                    got = [(n["ref"], n["depth"]) for n in body["nodes"]] if st == 200 else body
                    self.assertEqual(got, want, "%s %s/%s after concurrent writes (SEED=%d)"
                                     % (s.name, ref, d, SEED))


if __name__ == "__main__":
    unittest.main()
