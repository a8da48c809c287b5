#!/usr/bin/python3
"""Black-box tests of the edge API (SPEC §1 Edge, §2 Nodes and edges)."""

import os
import sys
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import EDGE_TYPES, ServerTestCase, node_path  # noqa: E402


def edge_query(frm, typ, to):
    return "/v1/edges?" + urllib.parse.urlencode({"from": frm, "type": typ, "to": to})


class Edges(ServerTestCase):
    server_name = "edges"
    longMessage = True
    maxDiff = 2000

    def nodes(self, *refs):
        for ref in refs:
            self.assertStatus(self.srv.put_node(ref), (200, 201), "create " + ref)

    def test_put_edge_create_update(self):
        s = self.srv
        self.nodes("service/e-a", "database/e-db:5432")
        r = s.put_edge("service/e-a", "depends_on", "database/e-db:5432", {"port": 5432})
        e = self.assertStatus(r, 201)
        self.assertEdgeShape(e)
        self.assertEqual((e["from"], e["type"], e["to"]),
                         ("service/e-a", "depends_on", "database/e-db:5432"))
        self.assertEqual(e["attributes"], {"port": 5432})
        self.assertIn("api:admin", e["sources"])

        r = s.put_edge("service/e-a", "depends_on", "database/e-db:5432",
                       {"port": 5432, "protocol": "tcp"}, token="write")
        e2 = self.assertStatus(r, 200, "same (from, to, type) again updates")
        self.assertEdgeShape(e2)
        self.assertEqual(e2["attributes"].get("protocol"), "tcp")
        self.assertEqual(e2["created_at"], e["created_at"])
        self.assertIn("api:write", e2["sources"], "the writer's source joins the edge's sources")

        # Another type between the same nodes is another edge.
        r = s.put_edge("service/e-a", "connects_to", "database/e-db:5432")
        self.assertStatus(r, 201)
        edges = self.assertStatus(s.get(node_path("service/e-a") + "/edges?direction=out"), 200)
        self.assertEqual(sorted(x["type"] for x in edges["edges"]), ["connects_to", "depends_on"])

    def test_all_five_types(self):
        self.nodes("service/t-a", "service/t-b")
        for t in EDGE_TYPES:
            with self.subTest(type=t):
                self.assertStatus(self.srv.put_edge("service/t-a", t, "service/t-b"), 201)

    def test_unknown_type_lists_the_five(self):
        self.nodes("service/u-a", "service/u-b")
        for t in ("uses", "DEPENDS_ON", ""):
            with self.subTest(type=t):
                r = self.srv.put_edge("service/u-a", t, "service/u-b")
                self.assertError(r, 400, None, ["type"] + list(EDGE_TYPES))
                self.assertEqual(r[2]["error"]["details"],
                                 {"field": "type", "allowed": list(EDGE_TYPES)})

    def test_missing_endpoints_422(self):
        self.nodes("service/m-a")
        r = self.srv.put_edge("service/m-a", "depends_on", "database/m-nowhere")
        self.assertError(r, 422, None, ["database/m-nowhere"])
        r = self.srv.put_edge("service/m-x", "depends_on", "database/m-y")
        self.assertError(r, 422, None, ["service/m-x", "database/m-y"])
        self.assertEqual(self.srv.get(node_path("service/m-x"))[0], 404,
                         "PUT /v1/edges creates no node")

    def test_body_validation(self):
        self.nodes("service/v-a", "service/v-b")
        base = {"from": "service/v-a", "type": "depends_on", "to": "service/v-b"}
        cases = [
            (dict(base, extra=1), "extra"),
            ({"type": "depends_on", "to": "service/v-b"}, "from"),
            ({"from": "service/v-a", "to": "service/v-b"}, "type"),
            ({"from": "service/v-a", "type": "depends_on"}, "to"),
            (dict(base, **{"from": "noslash"}), "from"),
            (dict(base, **{"from": "Bad/x"}), "from"),
            (dict(base, to="service/"), "to"),
            (dict(base, to=5), "to"),
            (dict(base, attributes=[1]), "attributes"),
        ]
        for body, field in cases:
            with self.subTest(body=body):
                self.assertError(self.srv.put("/v1/edges", body), 400, None, [field])

    def test_self_edge_is_a_client_error(self):
        self.nodes("service/self")
        r = self.srv.put_edge("service/self", "depends_on", "service/self")
        self.assertError(r, (400, 422))

    def test_edge_listing_direction_and_type(self):
        s = self.srv
        self.nodes("service/l-mid", "service/l-up", "host/l-h", "database/l-db", "team/l-t")
        for f, t, to in (("service/l-up", "depends_on", "service/l-mid"),
                         ("service/l-mid", "runs_on", "host/l-h"),
                         ("service/l-mid", "depends_on", "database/l-db"),
                         ("service/l-mid", "owned_by", "team/l-t")):
            self.assertStatus(s.put_edge(f, t, to), 201)
        base = node_path("service/l-mid") + "/edges"

        def triples(q):
            body = self.assertStatus(s.get(base + q), 200, "GET edges" + q)
            self.assertEqual(set(body), {"edges"})
            for e in body["edges"]:
                self.assertEdgeShape(e)
            return sorted((e["from"], e["type"], e["to"]) for e in body["edges"])

        out = [("service/l-mid", "depends_on", "database/l-db"),
               ("service/l-mid", "owned_by", "team/l-t"),
               ("service/l-mid", "runs_on", "host/l-h")]
        inn = [("service/l-up", "depends_on", "service/l-mid")]
        self.assertEqual(triples("?direction=out"), out)
        self.assertEqual(triples("?direction=in"), inn)
        self.assertEqual(triples("?direction=both"), sorted(out + inn))
        self.assertEqual(triples("?direction=both&type=depends_on"),
                         sorted([out[0]] + inn))
        self.assertEqual(triples("?direction=out&type=runs_on"), [out[2]])
        self.assertEqual(triples("?direction=in&type=runs_on"), [])
        self.assertEqual(triples(""), sorted(out + inn), "direction defaults to both")

        for q, param in (("?direction=sideways", "direction"), ("?type=uses", "type")):
            with self.subTest(q=q):
                self.assertError(s.get(base + q), 400, None, [param])
        self.assertError(s.get(node_path("service/l-none") + "/edges"), 404, "not_found")

    def test_delete_edge(self):
        s = self.srv
        self.nodes("service/d-a", "service/d-b")
        self.assertStatus(s.put_edge("service/d-a", "depends_on", "service/d-b"), 201)
        r = s.delete(edge_query("service/d-a", "depends_on", "service/d-b"))
        self.assertStatus(r, 204)
        self.assertIn(r[2], (None, ""))
        body = self.assertStatus(s.get(node_path("service/d-a") + "/edges"), 200)
        self.assertEqual(body["edges"], [])
        self.assertError(s.delete(edge_query("service/d-a", "depends_on", "service/d-b")),
                         404, "not_found")
        # Both nodes stay.
        self.assertStatus(s.get(node_path("service/d-a")), 200)
        self.assertStatus(s.get(node_path("service/d-b")), 200)

    def test_delete_edge_bad_query(self):
        for q, param in (("/v1/edges?from=service/a&type=depends_on", "to"),
                         ("/v1/edges?from=service/a&to=service/b", "type"),
                         ("/v1/edges?from=service/a&type=uses&to=service/b", "type"),
                         ("/v1/edges?from=bad&type=depends_on&to=service/b", "from")):
            with self.subTest(q=q):
                self.assertError(self.srv.delete(q), 400, None, [param])

    def test_delete_edge_read_token_forbidden(self):
        self.nodes("service/ro-a", "service/ro-b")
        self.assertStatus(self.srv.put_edge("service/ro-a", "depends_on", "service/ro-b"), 201)
        self.assertError(self.srv.delete(edge_query("service/ro-a", "depends_on", "service/ro-b"),
                                         token="read"), 403)
        self.assertError(self.srv.put_edge("service/ro-a", "runs_on", "service/ro-b",
                                           token="read"), 403)

    def test_deleting_node_removes_its_edges(self):
        s = self.srv
        self.nodes("service/n-a", "service/n-b", "host/n-h")
        self.assertStatus(s.put_edge("service/n-a", "depends_on", "service/n-b"), 201)
        self.assertStatus(s.put_edge("service/n-b", "runs_on", "host/n-h"), 201)
        self.assertEqual(s.get(node_path("service/n-b"))[2]["edges"], {"in": 1, "out": 1})
        self.assertStatus(s.delete(node_path("service/n-b")), 204)
        self.assertEqual(self.assertStatus(s.get(node_path("service/n-a") + "/edges"), 200)["edges"],
                         [])
        self.assertEqual(self.assertStatus(s.get(node_path("host/n-h") + "/edges"), 200)["edges"],
                         [])
        self.assertEqual(s.get(node_path("host/n-h"))[2]["edges"], {"in": 0, "out": 0})
        self.assertError(s.delete(edge_query("service/n-a", "depends_on", "service/n-b")), 404)
        # Re-creating the node does not bring the edges back.
        self.assertStatus(s.put_node("service/n-b"), 201)
        self.assertEqual(s.get(node_path("service/n-b"))[2]["edges"], {"in": 0, "out": 0})

    def test_graph_reads_see_own_writes(self):
        # Every write's reply comes after the graph queries can see it (read-your-writes):
        # repeated, because a race shows only now and then.
        s = self.srv
        stale = []
        for i in range(25):
            a, b, h = "service/ryw%d-a" % i, "service/ryw%d-b" % i, "host/ryw%d-h" % i
            for ref in (a, b, h):
                self.assertStatus(s.put_node(ref), 201)
            self.assertStatus(s.put_edge(a, "depends_on", b), 201)
            self.assertStatus(s.put_edge(b, "runs_on", h), 201)
            deps = s.get(node_path(a) + "/dependencies")[2]
            if [n["ref"] for n in deps["nodes"]] != [b, h]:
                stale.append(("after PUT edges", i, deps))
            self.assertStatus(s.delete(edge_query(b, "runs_on", h)), 204)
            deps = s.get(node_path(a) + "/dependencies")[2]
            if [n["ref"] for n in deps["nodes"]] != [b]:
                stale.append(("after DELETE edge", i, deps))
            self.assertStatus(s.put_edge(b, "runs_on", h), 201)
            self.assertStatus(s.delete(node_path(b)), 204)
            deps = s.get(node_path(a) + "/dependencies")[2]
            counts = s.get(node_path(h))[2]["edges"]
            if deps["count"] != 0 or counts != {"in": 0, "out": 0}:
                stale.append(("after DELETE node", i, deps, counts))
        kinds = {}
        for x in stale:
            kinds[x[0]] = kinds.get(x[0], 0) + 1
        self.assertFalse(stale, "graph reads lagged behind acknowledged writes in %s of 25 "
                         "rounds; first: %r" % (kinds, stale[:1]))


if __name__ == "__main__":
    unittest.main()
