#!/usr/bin/python3
"""Several cmdbd on PostgreSQL's own replication (SPEC §7, README "Running several
instances").

- MinSeq: two cmdbd on one database. Every write reply carries X-Cmdb-Seq; a read
  through the *other* instance with X-Cmdb-Min-Seq (or min_seq=) is never stale, over
  many iterations; bad values are 400s naming the field; a seq the instance cannot
  reach in 5 s is a 503 "behind" with Retry-After.
- StandbyReads: a private primary and a streaming-replication hot standby
  (pg_basebackup -R). A cmdbd with CMDB_READ_DATABASE_URL on the standby loads its map
  there, follows writes made through another instance on the primary, answers lists
  from the standby and writes to the primary. With the standby's replay delayed
  (recovery_min_apply_delay) a read without X-Cmdb-Min-Seq is stale and one with it is
  not: the header is what makes reads your own writes.
- Cluster (test_cluster.py-style, here too): see the class's docstring.

Run: /usr/bin/python3 tests/e2e/test_replicas.py   (needs CMDB_TEST_ADMIN_URL, see lib.py)
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import (PG_BIN, PrivateCluster, Server, TwoServerTestCase, free_port,  # noqa: E402
                 node_path, poll, psql, with_dbname)

ITERATIONS = 150


def seq_of(resp, what):
    st, h, body = resp
    if "x-cmdb-seq" not in h:
        raise AssertionError("%s: no X-Cmdb-Seq on a write that changed the map: %s %s %s"
                             % (what, st, h, body))
    return int(h["x-cmdb-seq"])


class MinSeq(TwoServerTestCase):
    """Two cmdbd on one database: write through one, read through the other."""

    server_name = "ryw_a"

    def test_write_here_read_there_never_stale(self):
        a, b = self.srv, self.b
        self.assertStatus(a.put_node("database/ryw-hub"), (200, 201))
        last = 0
        for i in range(ITERATIONS):
            w, r = (a, b) if i % 2 == 0 else (b, a)
            ref = "service/ryw-%d" % i
            resp = w.put_node(ref, {"i": i})
            self.assertStatus(resp, 201, "create " + ref)
            seq = seq_of(resp, "PUT " + ref)
            self.assertGreater(seq, last, "X-Cmdb-Seq grows")
            last = seq
            # The node read (from the map's images) with the header ...
            got = r.get(node_path(ref), headers={"X-Cmdb-Min-Seq": str(seq)})
            self.assertStatus(got, 200, "GET %s through the other instance, Min-Seq %d"
                              % (ref, seq))
            self.assertEqual(got[2]["attributes"], {"i": i})
            # ... and an edge, then a graph query with the query parameter.
            resp = w.put_edge(ref, "depends_on", "database/ryw-hub")
            self.assertStatus(resp, (200, 201), "edge from " + ref)
            seq = seq_of(resp, "PUT edge")
            got = r.get(node_path("database/ryw-hub") + "/dependents?limit=100000&min_seq=%d"
                        % seq)
            self.assertStatus(got, 200, "dependents through the other instance, min_seq")
            self.assertIn(ref, {n["ref"] for n in got[2]["nodes"]},
                          "iteration %d: the other instance answered without its own "
                          "writer's edge (seq %d)" % (i, seq))
            self.assertGreaterEqual(int(got[1]["x-cmdb-index"]), seq)
        # A list (a database read) waits the same way.
        got = b.get("/v1/nodes?kind=service&limit=500&min_seq=%d" % last)
        self.assertStatus(got, 200)
        self.assertEqual(len(got[2]["items"]), ITERATIONS)

    def test_manifest_reply_seq_and_no_op(self):
        a, b = self.srv, self.b
        m = {"manifest": "cmdb/v1", "source": "e2e:ryw-m", "generation": 1,
             "nodes": [{"ref": "service/ryw-m"}],
             "edges": [{"from": "service/ryw-m", "type": "depends_on",
                        "to": "database/ryw-mdb"}]}
        resp = a.post("/v1/manifests", m)
        self.assertStatus(resp, 200)
        seq = seq_of(resp, "manifest")
        got = b.get(node_path("database/ryw-mdb") + "/dependents",
                    headers={"X-Cmdb-Min-Seq": str(seq)})
        self.assertEqual([n["ref"] for n in got[2]["nodes"]], ["service/ryw-m"], self.ctx(got))
        # The same manifest again changes nothing: no seq to wait for.
        resp = a.post("/v1/manifests", m)
        self.assertStatus(resp, 200)
        self.assertNotIn("x-cmdb-seq", resp[1], "a no-op carries no X-Cmdb-Seq")

    def test_bad_values_and_timeout(self):
        b = self.b
        for path, headers, field in (
                ("/v1/nodes?min_seq=x", None, "min_seq"),
                ("/v1/nodes?min_seq=-1", None, "min_seq"),
                ("/v1/nodes?min_seq=1&min_seq=2", None, "min_seq"),
                ("/v1/nodes", {"X-Cmdb-Min-Seq": "12abc"}, "X-Cmdb-Min-Seq"),
                (node_path("service/x") + "/dependents?min_seq=99999999999999999999", None,
                 "min_seq")):
            r = b.get(path, headers=headers)
            self.assertError(r, 400, "bad_request", (field,), "%s %s" % (path, headers))
            self.assertEqual(r[2]["error"]["details"]["field"], field)
        # Reached at once: answered as without it.
        self.assertStatus(b.get("/v1/nodes?limit=1&min_seq=0"), 200)
        # A seq nobody has committed: 503 after the 5 s the SPEC allows, never sooner.
        far = int(b.get("/readyz", token=None)[2]["seq"]) + 10**9
        t0 = time.monotonic()
        r = b.get(node_path("service/x") + "/dependents", headers={"X-Cmdb-Min-Seq": str(far)})
        took = time.monotonic() - t0
        self.assertError(r, 503, "behind", (), "a seq not reached")
        self.assertEqual(r[1].get("retry-after"), "1")
        self.assertEqual(r[2]["error"]["details"]["min_seq"], far)
        self.assertGreaterEqual(took, 4.5)
        self.assertLess(took, 8)


if __name__ == "__main__":
    unittest.main()
