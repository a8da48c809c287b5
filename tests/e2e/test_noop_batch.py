#!/usr/bin/python3
"""Identical re-posts in shared commits (SPEC §3 no-op; issue 7; cmdbd/noop.h).

A re-post of the manifest a source applied last is a no-op that still answers 200 with
its own deployment. cmdbd sends the re-posts it knows to be no-ops (by the fingerprint,
or by the very bytes, of the source's last manifest) together, one statement and one
commit for a batch; the database checks each again. Checked here, through the real
server and PostgreSQL:

- many concurrent identical re-posts from several sources: every one answers 200 with
  a deployment id of its own, every deployments row is there, last_seen_at moves, and
  they shared commits (fewer commits than re-posts; batches of more than one);
- a batched reply is the reply the single path gives (deployment id aside), and the
  sighting reaches the in-memory map at once (read-your-writes of last_seen_at);
- a re-post known by its bytes still needs a token allowed to write its source (403);
  another spelling of the same manifest is batched too, by its fingerprint;
- dry runs and Idempotency-Key posts are never batched;
- a re-post racing a newer generation applied through another cmdbd (this one's memory
  stale) is refused by the batch and answered 409 by the full path (SPEC §3);
- a re-post after the source expired (SPEC §5 ttl) is applied in full again.

Run: /usr/bin/python3 tests/e2e/test_noop_batch.py   (needs CMDB_TEST_ADMIN_URL, see lib.py)
"""

import collections
import http.client
import json
import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import TwoServerTestCase, node_path, poll, psql  # noqa: E402

SOURCES = 6
THREADS = 12
PER_THREAD = 25


def manifest(source, generation=1, version="1.0", extra_edges=0, ttl=None):
    """A deploy manifest of source: its service, a team, a shared hub and extra edges."""
    svc = "service/" + source.split(":", 1)[1]
    m = {"manifest": "cmdb/v1", "source": source, "generation": generation,
         "deployment": {"node": svc, "version": version, "actor": "deploy-bot"},
         "nodes": [{"ref": svc, "labels": {"tier": "1"}, "attributes": {"v": version}},
                   {"ref": "team/nb-team"}],
         "edges": [{"from": svc, "type": "depends_on", "to": "service/nb-dns"},
                   {"from": svc, "type": "owned_by", "to": "team/nb-team"}]
         + [{"from": svc, "type": "depends_on", "to": "service/nb-x%d" % i}
            for i in range(extra_edges)]}
    if ttl:
        m["ttl"] = ttl
    return m


def metrics(srv):
    st, _, text = srv.get("/metrics", token=None)
    assert st == 200, "GET /metrics → %s" % st
    out = collections.defaultdict(int)  # a counter not shown (yet) is 0
    for line in text.splitlines():
        m = re.match(r"^(cmdb_noop_[a-z_]+|cmdb_manifests_total\{outcome=\"[a-z_]+\"\}) (\d+)$",
                     line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


class Client:
    """One keep-alive connection to srv (the load a deploy fleet puts on cmdbd)."""

    def __init__(self, srv, token="admin"):
        self.conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        self.auth = "Bearer " + srv.token(token)

    def post(self, raw):
        self.conn.request("POST", "/v1/manifests", body=raw,
                          headers={"Authorization": self.auth,
                                   "Content-Type": "application/json"})
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")

    def close(self):
        self.conn.close()


class NoopBatch(TwoServerTestCase):
    server_name = "noop_a"

    def post(self, srv, m, **kw):
        return srv.post("/v1/manifests", m, **kw)

    def node(self, srv, ref):
        return self.assertStatus(srv.get(node_path(ref)), 200, "GET " + ref)

    def test_concurrent_reposts_share_commits(self):
        a = self.srv
        sources = ["cap:nb-c%d" % i for i in range(SOURCES)]
        bodies = {s: json.dumps(manifest(s, extra_edges=3)).encode() for s in sources}
        for s in sources:
            body = self.assertStatus(a.post("/v1/manifests", raw=bodies[s]), 200, "apply " + s)
            self.assertIsNotNone(body["seq"], "first post applies")
        seen_before = {s: self.node(a, "service/" + s.split(":")[1])["last_seen_at"]
                       for s in sources}
        before = {s: int(psql(a.db_url, "SELECT count(*) FROM deployments WHERE source = '%s'"
                              % s).strip()) for s in sources}
        m0 = metrics(a)
        time.sleep(0.01)

        results, errors = [], []
        lock = threading.Lock()
        start = threading.Barrier(THREADS)

        def worker(k):
            c = Client(a)
            try:
                start.wait()
                for i in range(PER_THREAD):
                    s = sources[(k + i) % SOURCES]
                    st, body = c.post(bodies[s])
                    with lock:
                        results.append((s, st, body))
            except Exception as e:  # noqa: BLE001 (reported below)
                with lock:
                    errors.append(repr(e))
            finally:
                c.close()

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(results), THREADS * PER_THREAD)
        bad = [(s, st, b) for s, st, b in results if st != 200]
        self.assertEqual(bad[:3], [], "every re-post answers 200")
        ids = [b["deployment_id"] for _, _, b in results]
        self.assertEqual(len(set(ids)), len(ids), "a deployment id each")
        for s, _, b in results:
            self.assertIsNone(b["seq"], "a no-op logs no change")
            self.assertEqual(b["nodes"], {"created": 0, "updated": 0, "unchanged": 6})
            self.assertEqual(b["edges"], {"created": 0, "updated": 0, "removed": 0,
                                          "unchanged": 5})
            self.assertEqual(b["orphaned"], [])

        # Every deployments row is there, each with its source and no seq.
        rows = psql(a.db_url, "SELECT id, source, seq IS NULL, version, actor FROM deployments"
                              " WHERE id IN (%s)" % ",".join("'%s'" % i for i in ids))
        got = {}
        for line in rows.split():
            i, s, noseq, version, actor = line.split("|")
            got[i] = (s, noseq, version, actor)
        self.assertEqual(len(got), len(ids), "a deployments row per reply")
        for s, _, b in results:
            self.assertEqual(got[b["deployment_id"]], (s, "t", "1.0", "deploy-bot"))
        for s in sources:
            n = sum(1 for r in results if r[0] == s)
            self.assertEqual(int(psql(a.db_url, "SELECT count(*) FROM deployments WHERE "
                                                "source = '%s'" % s).strip()), before[s] + n)

        # last_seen_at moved: in memory (GET) and in the database.
        for s in sources:
            ref = "service/" + s.split(":")[1]
            self.assertGreater(self.node(a, ref)["last_seen_at"], seen_before[s], ref)
            self.assertGreater(psql(a.db_url, "SELECT cmdb_ts(cmdb_node_last_seen(n)) FROM nodes n"
                                              " WHERE kind = 'service' AND name = '%s'"
                                              % s.split(":")[1]).strip(), seen_before[s])

        # They shared commits (the transactions that wrote the rows: their xmin), in
        # batches.
        commits = int(psql(a.db_url, "SELECT count(DISTINCT xmin::text) FROM deployments"
                                     " WHERE id IN (%s)" % ",".join("'%s'" % i for i in ids)))
        m1 = metrics(a)
        n = len(results)
        batches = m1["cmdb_noop_batches_total"] - m0["cmdb_noop_batches_total"]
        batched = m1["cmdb_noop_batched_total"] - m0["cmdb_noop_batched_total"]
        self.assertLess(commits, n, "fewer commits than re-posts (%d commits, %d batches, %d "
                                    "re-posts)" % (commits, batches, n))
        self.assertLessEqual(commits, batches, "one commit a batch")
        self.assertEqual(batched, n, "every re-post was batched")
        self.assertEqual(m1["cmdb_noop_refused_total"], m0["cmdb_noop_refused_total"])
        self.assertEqual(m1["cmdb_noop_known_bytes_total"] - m0["cmdb_noop_known_bytes_total"], n,
                         "known by their bytes: not parsed")
        self.assertLess(batches, n, "some batches hold more than one re-post")
        self.assertEqual(m1['cmdb_manifests_total{outcome="noop"}']
                         - m0['cmdb_manifests_total{outcome="noop"}'], n, "counted as no-ops")

    def test_batched_reply_is_the_single_reply(self):
        a = self.srv
        m = manifest("cap:nb-same", extra_edges=1)
        self.assertStatus(self.post(a, m), 200, "apply")
        # The single path: a keyed post is never batched (its no-op is decided in full).
        m0 = metrics(a)
        single = self.assertStatus(self.post(a, m, headers={"Idempotency-Key": "nb-k1"}), 200)
        plan = self.assertStatus(a.post("/v1/manifests?dry_run=true", m), 200)
        m1 = metrics(a)
        self.assertEqual(m1["cmdb_noop_batched_total"], m0["cmdb_noop_batched_total"],
                         "keyed posts and dry runs are not batched")
        self.assertIsNone(plan["deployment_id"])
        t0 = self.node(a, "service/nb-same")["last_seen_at"]
        resp = self.post(a, m)
        batched = self.assertStatus(resp, 200)
        self.assertEqual(metrics(a)["cmdb_noop_batched_total"], m1["cmdb_noop_batched_total"] + 1,
                         "the re-post was batched")
        self.assertNotIn("x-cmdb-seq", resp[1], "a no-op has no seq")
        self.assertNotEqual(batched["deployment_id"], single["deployment_id"])
        self.assertEqual(list(batched), list(single), "the same keys, in the same order")
        for k in single:
            if k != "deployment_id":
                self.assertEqual(batched[k], single[k], k)
        # The sighting is in the map before the reply (read-your-writes of last_seen_at).
        t1 = self.node(a, "service/nb-same")["last_seen_at"]
        self.assertGreater(t1, t0)
        self.assertEqual(t1, psql(a.db_url, "SELECT cmdb_ts(last_applied_at) FROM source_state"
                                            " WHERE source = 'cap:nb-same'").strip())

    def test_known_bytes_need_the_right_token_and_other_spellings_batch(self):
        a = self.srv
        m = manifest("cap:nb-bytes")
        raw = json.dumps(m).encode()
        self.assertStatus(a.post("/v1/manifests", raw=raw), 200, "apply")
        a.create_token("nb-other", "write", source_glob="other:*")
        m0 = metrics(a)
        self.assertError(a.post("/v1/manifests", raw=raw, token="nb-other"), 403, "forbidden")
        self.assertEqual(metrics(a)["cmdb_noop_batched_total"], m0["cmdb_noop_batched_total"])
        # The same manifest spelled otherwise (key order, white space): the same
        # fingerprint, so batched; not known by its bytes.
        other = json.dumps(m, indent=2, sort_keys=True).encode()
        self.assertNotEqual(other, raw)
        body = self.assertStatus(a.post("/v1/manifests", raw=other), 200)
        self.assertIsNone(body["seq"])
        m1 = metrics(a)
        self.assertEqual(m1["cmdb_noop_batched_total"], m0["cmdb_noop_batched_total"] + 1)
        self.assertEqual(m1["cmdb_noop_known_bytes_total"], m0["cmdb_noop_known_bytes_total"])
        # The bytes remembered are the last seen: the first spelling by its fingerprint
        # once more, then by its bytes.
        self.assertStatus(a.post("/v1/manifests", raw=raw), 200)
        self.assertStatus(a.post("/v1/manifests", raw=raw), 200)
        m2 = metrics(a)
        self.assertEqual(m2["cmdb_noop_batched_total"], m1["cmdb_noop_batched_total"] + 2)
        self.assertEqual(m2["cmdb_noop_known_bytes_total"], m1["cmdb_noop_known_bytes_total"] + 1)
        # A broken body is still a 400 (the bytes are looked at first, then parsed).
        self.assertError(a.post("/v1/manifests", raw=b'{"manifest": "cmdb/v1",'), 400)

    def test_repost_racing_a_newer_generation_elsewhere(self):
        """A's memory says generation 1 while B has applied generation 2: A batches the
        re-post, the database refuses it, and the full path answers 409. A's sightings
        poll (every second) may learn generation 2 first, in which case A does not batch
        at all: so a few sources, and the refusal must be seen at least once."""
        a, b = self.srv, self.b
        refused = 0
        for k in range(5):
            src = "cap:nb-race%d" % k
            g1, g2 = manifest(src, 1, "1.0"), manifest(src, 2, "2.0")
            self.assertStatus(self.post(a, g1), 200, "gen 1 through A")
            m0 = metrics(a)
            self.assertIsNone(self.assertStatus(self.post(a, g1), 200)["seq"])
            self.assertEqual(metrics(a)["cmdb_noop_batched_total"],
                             m0["cmdb_noop_batched_total"] + 1, "A knows generation 1")
            self.assertIsNotNone(self.assertStatus(self.post(b, g2), 200, "gen 2 through B")["seq"])
            m1 = metrics(a)
            err = self.assertError(self.post(a, g1), 409, "conflict")
            self.assertEqual(err["details"]["current_generation"], 2, "generation 2 stays")
            m2 = metrics(a)
            refused += m2["cmdb_noop_refused_total"] - m1["cmdb_noop_refused_total"]
            # A converges: generation 2's re-post through A is a no-op.
            body = self.assertStatus(self.post(a, g2), 200)
            self.assertIsNone(body["seq"])
            self.assertEqual(self.node(a, "service/" + src.split(":")[1])["attributes"],
                             {"v": "2.0"})
            if refused:
                break
        self.assertGreater(refused, 0, "the batch refused a stale no-op at least once")

    def test_repost_after_expiry(self):
        a = self.srv
        m = manifest("cap:nb-ttl", ttl="2s")
        self.assertStatus(self.post(a, m), 200, "apply")
        self.assertIsNone(self.assertStatus(self.post(a, m), 200)["seq"], "a no-op")

        def expired():
            st, _, body = a.get("/v1/sources?limit=1000")
            return [s for s in body["items"] if s["source"] == "cap:nb-ttl"][0]["expired"]

        self.assertTrue(poll(expired, bool, 15), "the sweeper expires the source")
        self.assertTrue(self.node(a, "service/nb-ttl")["orphan"], "expiry orphaned the node")
        body = self.assertStatus(self.post(a, m), 200, "re-post after expiry")
        self.assertIsNotNone(body["seq"], "applied in full, not a no-op")
        self.assertFalse(self.node(a, "service/nb-ttl")["orphan"], "asserted again")
        self.assertFalse(expired(), "no longer expired")
        self.assertIsNone(self.assertStatus(self.post(a, m), 200)["seq"], "a no-op again")


if __name__ == "__main__":
    unittest.main()
