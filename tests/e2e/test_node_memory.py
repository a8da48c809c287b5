#!/usr/bin/python3
"""GET /v1/nodes/{kind}/{name} answers from memory (issue 7) — and says what the database says.

The answer is built from the node image the tailer keeps, with last_seen_at derived
(the image's, or the latest manifest of one of the node's sources, whichever is later).
Here it is compared, field for field, with the node as GET /v1/nodes?q=REF lists it (a
database read) plus owners and edge counts from their own endpoints, after: manifests,
hand edits (changing and not), health updates (changing and not), identical re-posts
from this process and from a second cmdbd on the same database (no change row: the
second learns of it by polling source_state), deletes, and a restart (the start-up load
builds the images itself). Also: ETag, If-None-Match → 304, the 404 body.

Run: /usr/bin/python3 tests/e2e/test_node_memory.py   (needs CMDB_TEST_ADMIN_URL, see lib.py)
"""

import os
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import TwoServerTestCase, node_path  # noqa: E402

SEEN_WITHIN = 4.0  # seconds: the poll runs every second

MANIFEST = {
    "manifest": "cmdb/v1",
    "source": "ci:memory",
    "generation": 1,
    "nodes": [
        {"ref": "service/mem-api", "labels": {"tier": "1", "é": "ü"},
         "attributes": {"port": 8080, "ratio": 1.50, "big": 12345678901234, "neg": -0.25,
                        "text": "quote \" backslash \\ tab \t ctl \u001f slash / é 😀",
                        "nested": {"a": [1, 2.0, None, True, {"b": "c"}]}}},
        {"ref": "host/mem-01", "attributes": {"ip": "10.0.0.5"}},
        {"ref": "team/mem-team", "attributes": {"email": "team@example.com"}},
        {"ref": "system/mem-sys"},
    ],
    "edges": [
        {"from": "service/mem-api", "type": "runs_on", "to": "host/mem-01"},
        {"from": "service/mem-api", "type": "owned_by", "to": "team/mem-team"},
        {"from": "service/mem-api", "type": "part_of", "to": "system/mem-sys"},
        {"from": "service/mem-api", "type": "depends_on", "to": "database/mem:5432"},
    ],
}
REFS = ["service/mem-api", "host/mem-01", "team/mem-team", "system/mem-sys",
        "database/mem:5432"]


class NodeFromMemory(TwoServerTestCase):
    server_name = "node_memory"

    # -- what the database says

    def db_view(self, ref):
        """The node as the SQL paths show it, shaped like GET's answer, or None."""
        st, _, body = self.srv.get("/v1/nodes?" + urllib.parse.urlencode({"q": ref, "limit": 1000}))
        self.assertEqual(st, 200, body)
        items = [n for n in body["items"] if n["ref"] == ref]
        if not items:
            return None
        node = dict(items[0])
        st, _, owners = self.srv.get(node_path(ref) + "/owners")
        self.assertEqual(st, 200, owners)
        node["owners"] = owners["owners"]
        st, _, edges = self.srv.get(node_path(ref) + "/edges?direction=both")
        self.assertEqual(st, 200, edges)
        node["edges"] = {"in": sum(1 for e in edges["edges"] if e["to"] == ref),
                         "out": sum(1 for e in edges["edges"] if e["from"] == ref)}
        return node

    def mem_view(self, srv, ref):
        resp = srv.get(node_path(ref))
        if resp[0] == 404:
            return None, resp
        self.assertStatus(resp, 200, "GET " + ref)
        self.assertEqual(resp[1].get("etag"), '"%d"' % resp[2]["version"], "ETag = version")
        return resp[2], resp

    def assertSame(self, ref, srv=None, within=0.0, ignore=()):
        """GET of ref on srv (default: the first process) equals the database's view,
        now or, for `within` seconds, eventually; keys in `ignore` are not compared."""
        srv = srv or self.srv
        deadline = time.monotonic() + within
        while True:
            want = self.db_view(ref)
            got, resp = self.mem_view(srv, ref)
            for k in ignore:
                for d in (got, want):
                    if d is not None:
                        d.pop(k, None)
            if got == want:
                return
            if time.monotonic() >= deadline:
                diff = {k: (got.get(k) if got else None, want.get(k) if want else None)
                        for k in set(got or {}) | set(want or {})
                        if (got or {}).get(k) != (want or {}).get(k)}
                self.fail("GET %s differs from the database: %s%s" % (ref, diff, self.ctx(resp)))
            time.sleep(0.1)

    def assertAllSame(self, srv=None, within=0.0, ignore=()):
        for ref in REFS:
            self.assertSame(ref, srv, within, ignore)

    # -- the story

    def test_node_answers_equal_the_database(self):
        st, _, body = self.srv.post("/v1/manifests", MANIFEST)
        self.assertEqual(st, 200, body)
        self.assertAllSame()
        self.assertAllSame(self.b, within=SEEN_WITHIN)

        # Hand edits: one that changes the node, then the same again (no change row,
        # but the database refreshes last_seen_at).
        api = "service/mem-api"
        self.assertStatus(self.srv.put_node(api, attributes={"port": 9090, "x": 0.1}), 200)
        self.assertSame(api)
        time.sleep(0.02)
        resp = self.srv.put_node(api, attributes={"port": 9090, "x": 0.1})
        self.assertStatus(resp, 200)
        self.assertNotIn("x-cmdb-seq", resp[1], "a no-op hand edit logs no change")
        self.assertSame(api)

        # Health: a change, then the same state again (health_at refreshed).
        path = node_path(api) + "/health"
        self.assertStatus(self.srv.put(path, {"state": "down", "reason": "disk"}), 200)
        self.assertSame(api)
        time.sleep(0.02)
        self.assertStatus(self.srv.put(path, {"state": "down", "reason": "disk"}), 200)
        self.assertSame(api)

        # An identical re-post here: its sighting moves last_seen_at at once.
        before = self.mem_view(self.srv, "host/mem-01")[0]["last_seen_at"]
        time.sleep(0.02)
        st, _, body = self.srv.post("/v1/manifests", MANIFEST)
        self.assertEqual(st, 200, body)
        self.assertIsNone(body["seq"], "an identical re-post is a no-op")
        self.assertAllSame()
        self.assertGreater(self.mem_view(self.srv, "host/mem-01")[0]["last_seen_at"], before)

        # An identical re-post through the second process: no change row; the first
        # learns of it from its poll of source_state.
        time.sleep(0.02)
        st, _, body = self.b.post("/v1/manifests", MANIFEST)
        self.assertEqual(st, 200, body)
        self.assertIsNone(body["seq"])
        self.assertAllSame(within=SEEN_WITHIN)
        # Known gap: a hand edit or health update that changes nothing refreshes
        # last_seen_at / health_at without a change row; only the process that made it
        # sees that (from its reply). The manifest sighting above covers last_seen_at
        # here; health_at of the no-op health update stays unseen by the second process.
        self.assertAllSame(self.b, ignore=("health_at",))

        # The next generation drops an edge and a node: sources, orphan, counts.
        m2 = dict(MANIFEST, generation=2, nodes=MANIFEST["nodes"][:3],
                  edges=MANIFEST["edges"][:2])
        st, _, body = self.srv.post("/v1/manifests", m2)
        self.assertEqual(st, 200, body)
        self.assertAllSame()
        self.assertAllSame(self.b, within=SEEN_WITHIN, ignore=("health_at",))
        # A health update that changes something is logged: both agree again.
        self.assertStatus(self.srv.put(path, {"state": "ok"}), 200)
        self.assertAllSame()
        self.assertAllSame(self.b, within=SEEN_WITHIN)

        # ETag and If-None-Match.
        got, resp = self.mem_view(self.srv, api)
        etag = resp[1]["etag"]
        st, h, _ = self.srv.get(node_path(api), headers={"If-None-Match": etag})
        self.assertEqual(st, 304)
        self.assertEqual(h.get("etag"), etag)
        st, _, _ = self.srv.get(node_path(api), headers={"If-None-Match": 'W/"1", ' + etag})
        self.assertEqual(st, 304)
        st, _, body = self.srv.get(node_path(api), headers={"If-None-Match": '"0"'})
        self.assertEqual((st, body), (200, got))

        # Deletes, and the 404 the database path gave.
        self.assertStatus(self.srv.delete(node_path("host/mem-01")), 204)
        resp = self.srv.get(node_path("host/mem-01"))
        self.assertError(resp, 404, "not_found")
        self.assertEqual(resp[2]["error"]["message"], "node host/mem-01 not found")
        self.assertEqual(resp[2]["error"]["details"], {"ref": "host/mem-01"})
        self.assertAllSame()
        self.assertAllSame(self.b, within=SEEN_WITHIN)

        # A restart: the start-up load builds every image itself.
        self.srv.restart()
        self.assertAllSame()


if __name__ == "__main__":
    unittest.main()
