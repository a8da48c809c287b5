#!/usr/bin/python3
"""Black-box tests of the node API (SPEC §1 Node, §2 Nodes and edges, input rules).

One server for the module; each test uses its own kinds or names so tests do not see
each other's nodes."""

import os
import sys
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import ServerTestCase, node_path, parse_time, quote  # noqa: E402


class NodeCrud(ServerTestCase):
    server_name = "nodes"

    def test_put_create_then_update(self):
        r = self.srv.put_node("service/crud-a", {"repo": "git@x:a.git", "n": 1}, {"tier": "1"})
        node = self.assertStatus(r, 201, "first PUT creates")
        self.assertNodeShape(node, "service/crud-a")
        self.assertEqual(node["kind"], "service")
        self.assertEqual(node["name"], "crud-a")
        self.assertEqual(node["attributes"], {"repo": "git@x:a.git", "n": 1})
        self.assertEqual(node["labels"], {"tier": "1"})
        self.assertEqual(node["health"], "unknown", "health defaults to unknown")
        self.assertIsNone(node["health_at"])
        self.assertFalse(node["orphan"])
        self.assertIn("api:admin", node["sources"], "hand edit is recorded under api:<token>")
        v1 = node["version"]

        r = self.srv.put_node("service/crud-a", {"repo": "git@x:b.git", "n": 2}, {"tier": "2"})
        node2 = self.assertStatus(r, 200, "second PUT updates")
        self.assertNodeShape(node2, "service/crud-a")
        self.assertEqual(node2["id"], node["id"], "id is stable for the node's life")
        self.assertEqual(node2["attributes"]["repo"], "git@x:b.git")
        self.assertEqual(node2["attributes"]["n"], 2)
        self.assertEqual(node2["labels"]["tier"], "2")
        self.assertGreater(node2["version"], v1, "version is bumped on every change")
        self.assertEqual(node2["created_at"], node["created_at"])
        self.assertGreaterEqual(parse_time(node2["updated_at"]), parse_time(node["updated_at"]))

    def test_put_with_write_token_source(self):
        node = self.assertStatus(self.srv.put_node("service/by-write", {}, token="write"), 201)
        self.assertEqual(node["sources"], ["api:write"])

    def test_get_has_owners_and_edge_counts(self):
        s = self.srv
        self.assertStatus(s.put_node("service/get-a"), 201)
        self.assertStatus(s.put_node("host/get-h1"), 201)
        self.assertStatus(s.put_node("database/get-db"), 201)
        self.assertStatus(s.put_node("team/get-team", {"email": "t@example.com"}), 201)
        self.assertStatus(s.put_node("service/get-b"), 201)
        self.assertStatus(s.put_edge("service/get-a", "runs_on", "host/get-h1"), 201)
        self.assertStatus(s.put_edge("service/get-a", "depends_on", "database/get-db"), 201)
        self.assertStatus(s.put_edge("service/get-a", "owned_by", "team/get-team"), 201)
        self.assertStatus(s.put_edge("service/get-b", "depends_on", "service/get-a"), 201)

        r = s.get(node_path("service/get-a"))
        node = self.assertStatus(r, 200)
        self.assertNodeShape(node, "service/get-a")
        self.assertEqual(node["edges"], {"in": 1, "out": 3}, "edges in/out counts")
        self.assertIsInstance(node["owners"], list)
        self.assertEqual([o["ref"] for o in node["owners"]], ["team/get-team"])
        self.assertEqual(node["owners"][0].get("rule"), "direct")

        r = s.get(node_path("host/get-h1"))
        node = self.assertStatus(r, 200)
        self.assertEqual(node["edges"], {"in": 1, "out": 0})

    def test_etag_and_conditionals(self):
        s = self.srv
        node = self.assertStatus(s.put_node("service/etag-a", {"x": 1}), 201)
        st, h, body = r = s.get(node_path("service/etag-a"))
        self.assertStatus(r, 200)
        self.assertIn("etag", h, "GET of a node sets ETag")
        self.assertEqual(h["etag"], '"%d"' % body["version"], "ETag is the version, quoted")

        r = s.get(node_path("service/etag-a"), headers={"If-None-Match": h["etag"]})
        self.assertEqual(r[0], 304, "If-None-Match with the current ETag" + self.ctx(r))
        self.assertIn(r[2], (None, ""), "304 has no body")

        r = s.get(node_path("service/etag-a"), headers={"If-None-Match": '"999999"'})
        self.assertStatus(r, 200, "If-None-Match with another ETag")

        stale = '"%d"' % node["version"]
        r = s.put(node_path("service/etag-a"), {"attributes": {"x": 2}},
                  headers={"If-Match": stale})
        cur = self.assertStatus(r, 200, "If-Match with the current version")
        self.assertGreater(cur["version"], node["version"])

        r = s.put(node_path("service/etag-a"), {"attributes": {"x": 3}},
                  headers={"If-Match": stale})
        self.assertError(r, 412, "precondition_failed")
        got = self.assertStatus(s.get(node_path("service/etag-a")), 200)
        self.assertEqual(got["attributes"]["x"], 2, "a failed If-Match changes nothing")
        self.assertEqual(got["version"], cur["version"])

    def test_if_match_on_missing_node(self):
        r = self.srv.put(node_path("service/etag-missing"), {}, headers={"If-Match": '"1"'})
        self.assertIn(r[0], (404, 412), "If-Match on a node that does not exist" + self.ctx(r))
        self.assertEqual(self.srv.get(node_path("service/etag-missing"))[0], 404)

    def test_delete(self):
        s = self.srv
        self.assertStatus(s.put_node("service/del-a"), 201)
        r = s.delete(node_path("service/del-a"))
        self.assertStatus(r, 204)
        self.assertIn(r[2], (None, ""), "204 has no body")
        err = self.assertError(s.get(node_path("service/del-a")), 404, "not_found",
                               ["service/del-a"])
        self.assertIn("service/del-a", err["message"])
        self.assertError(s.delete(node_path("service/del-a")), 404, "not_found")
        # A deleted node can be made again, as a new node.
        self.assertStatus(s.put_node("service/del-a"), 201)

    def test_get_missing(self):
        self.assertError(self.srv.get(node_path("service/never-was")), 404, "not_found",
                         ["service/never-was"])

    def test_names_with_colon_and_slash(self):
        s = self.srv
        r = s.put("/v1/nodes/database/pg-main%3A5432", {"attributes": {"port": 5432}})
        node = self.assertStatus(r, 201)
        self.assertEqual(node["ref"], "database/pg-main:5432")
        self.assertEqual(node["name"], "pg-main:5432")
        got = self.assertStatus(s.get("/v1/nodes/database/pg-main%3A5432"), 200)
        self.assertEqual(got["id"], node["id"])

        r = s.put("/v1/nodes/storage/bucket%2Fprod%2Flogs", {})
        node = self.assertStatus(r, 201)
        self.assertEqual(node["ref"], "storage/bucket/prod/logs")
        self.assertEqual(node["kind"], "storage")
        self.assertEqual(node["name"], "bucket/prod/logs")
        got = self.assertStatus(s.get("/v1/nodes/storage/bucket%2Fprod%2Flogs"), 200)
        self.assertEqual(got["ref"], "storage/bucket/prod/logs")
        self.assertStatus(s.delete("/v1/nodes/storage/bucket%2Fprod%2Flogs"), 204)

    def test_unicode_name(self):
        name = "caf\u00e9-\u6771\u4eac"
        node = self.assertStatus(self.srv.put("/v1/nodes/service/" + quote(name), {}), 201)
        self.assertEqual(node["name"], name)

    def test_name_length_bounds(self):
        ok = "n" * 255
        self.assertStatus(self.srv.put("/v1/nodes/service/" + ok, {}), 201, "255-byte name")
        long_ = "n" * 256
        self.assertError(self.srv.put("/v1/nodes/service/" + long_, {}), 400, None, ["name"])
        # 128 two-byte characters = 256 bytes: the limit is in bytes.
        self.assertError(self.srv.put("/v1/nodes/service/" + quote("\u00e9" * 128), {}),
                         400, None, ["name"])

    def test_invalid_kind(self):
        for kind in ("Service", "1svc", "svc-x", "k" * 33, "s%C3%A9"):
            with self.subTest(kind=kind):
                r = self.srv.put("/v1/nodes/%s/x" % kind, {})
                self.assertError(r, 400, None, ["kind"])
        self.assertStatus(self.srv.put("/v1/nodes/%s/x" % ("k" * 32), {}), 201, "32-char kind")

    def test_invalid_name(self):
        for enc in ("bad%01name", "bad%7Fname", "bad%0Aname", "bad%FFname", "%C3%28"):
            with self.subTest(name=enc):
                r = self.srv.put("/v1/nodes/service/" + enc, {})
                self.assertError(r, 400, None, ["name"])
        r = self.srv.get("/v1/nodes/service/bad%01name")
        self.assertError(r, 400, None, ["name"], "GET validates the name too")

    def test_invalid_percent_encoding(self):
        r = self.srv.put("/v1/nodes/service/bad%zzname", {})
        self.assertError(r, 400)

    def test_body_validation(self):
        p = node_path("service/body-v")
        cases = [
            ({"attributes": {}, "bogus": 1}, "bogus"),
            ({"attributes": []}, "attributes"),
            ({"attributes": "x"}, "attributes"),
            ({"labels": {"a": 1}}, "labels"),
            ({"labels": ["a"]}, "labels"),
            ({"labels": {"a": None}}, "labels"),
            ({"id": "00000000-0000-0000-0000-000000000000"}, "id"),
        ]
        for body, field in cases:
            with self.subTest(body=body):
                self.assertError(self.srv.put(p, body), 400, None, [field])
        self.assertEqual(self.srv.get(p)[0], 404, "rejected PUTs create nothing")

    def test_empty_object_body_creates(self):
        node = self.assertStatus(self.srv.put(node_path("service/empty-obj"), {}), 201)
        self.assertEqual(node["attributes"], {})
        self.assertEqual(node["labels"], {})

    def test_attributes_size_limit(self):
        big = {"blob": "x" * (65 * 1024)}
        r = self.srv.put(node_path("service/big-attrs"), {"attributes": big})
        self.assertError(r, (400, 413), None, ["attributes"])
        fits = {"blob": "x" * (60 * 1024)}
        self.assertStatus(self.srv.put(node_path("service/big-attrs"), {"attributes": fits}), 201)


class NodeHealth(ServerTestCase):
    server_name = "health"

    def test_health_put(self):
        s = self.srv
        created = self.assertStatus(s.put_node("service/hl-a", token="write"), 201)
        r = s.put(node_path("service/hl-a") + "/health", {"state": "down", "reason": "disk full"})
        self.assertStatus(r, 200)
        node = self.assertStatus(s.get(node_path("service/hl-a")), 200)
        self.assertEqual(node["health"], "down")
        self.assertEqual(node["health_reason"], "disk full")
        self.assertTime(node["health_at"], "health_at")
        self.assertEqual(node["sources"], created["sources"],
                         "a health update is status, not an assertion: sources unchanged")

        for state in ("ok", "degraded", "unknown", "down"):
            with self.subTest(state=state):
                r = s.put(node_path("service/hl-a") + "/health", {"state": state})
                self.assertStatus(r, 200)
                self.assertEqual(s.get(node_path("service/hl-a"))[2]["health"], state)

    def test_health_validation(self):
        s = self.srv
        self.assertStatus(s.put_node("service/hl-v"), 201)
        p = node_path("service/hl-v") + "/health"
        for body, field in (({"state": "broken"}, "state"), ({"state": "DOWN"}, "state"),
                            ({}, "state"), ({"state": 1}, "state"),
                            ({"state": "ok", "reason": 5}, "reason"),
                            ({"state": "ok", "extra": 1}, "extra")):
            with self.subTest(body=body):
                self.assertError(s.put(p, body), 400, None, [field])
        # A state outside the vocabulary: the 400 lists the states (model.h).
        r = s.put(p, {"state": "broken"})
        self.assertEqual(r[2]["error"]["details"],
                         {"field": "state", "allowed": ["ok", "degraded", "down", "unknown"]})
        self.assertEqual(s.get(node_path("service/hl-v"))[2]["health"], "unknown")

    def test_health_missing_node(self):
        r = self.srv.put(node_path("service/hl-none") + "/health", {"state": "ok"})
        self.assertError(r, 404, "not_found", ["service/hl-none"])

    def test_health_read_token_forbidden(self):
        self.assertStatus(self.srv.put_node("service/hl-ro"), 201)
        r = self.srv.put(node_path("service/hl-ro") + "/health", {"state": "ok"}, token="read")
        self.assertError(r, 403)


class NodeList(ServerTestCase):
    server_name = "list"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.srv
        for ref, labels in (("lsa/app-1", {"env": "prod", "tier": "1"}),
                            ("lsa/app-2", {"env": "dev"}),
                            ("lsa/db-1", {"env": "prod"}),
                            ("lsb/app-3", {"env": "prod"}),
                            ("team/ls-owners", {}),
                            ("team/ls-other", {})):
            st = s.put_node(ref, {}, labels)[0]
            assert st == 201, (ref, st)
        for frm, to in (("lsa/app-1", "team/ls-owners"), ("lsb/app-3", "team/ls-owners"),
                        ("lsa/db-1", "team/ls-other")):
            st = s.put_edge(frm, "owned_by", to)[0]
            assert st == 201, (frm, to, st)

    def list_refs(self, query, token="admin"):
        r = self.srv.get("/v1/nodes?" + query, token=token)
        body = self.assertStatus(r, 200, "GET /v1/nodes?" + query)
        self.assertEqual(set(body), {"items", "next_cursor"}, "list shape")
        for n in body["items"]:
            self.assertNodeShape(n)
        return [n["ref"] for n in body["items"]]

    def test_filter_kind(self):
        self.assertEqual(self.list_refs("kind=lsa"), ["lsa/app-1", "lsa/app-2", "lsa/db-1"])

    def test_filter_label(self):
        self.assertEqual(self.list_refs("kind=lsa&label=env:prod"), ["lsa/app-1", "lsa/db-1"])
        self.assertEqual(self.list_refs("label=tier:1"), ["lsa/app-1"])
        self.assertEqual(self.list_refs("label=env:nowhere"), [])
        # Repeated label filters all apply (AND); other parameters may not repeat.
        self.assertEqual(self.list_refs("label=env:prod&label=tier:1"), ["lsa/app-1"])
        self.assertEqual(self.list_refs("label=tier:1&label=env:prod"), ["lsa/app-1"])
        self.assertError(self.srv.get("/v1/nodes?kind=lsa&kind=service"), 400, None, ["kind"])
        self.assertError(self.srv.get("/v1/nodes?label=env:prod&label=env:dev"), 400, None,
                         ["label"])

    def test_filter_owner(self):
        self.assertEqual(self.list_refs("owner=team/ls-owners"), ["lsa/app-1", "lsb/app-3"])
        self.assertEqual(self.list_refs("owner=team/ls-owners&kind=lsb"), ["lsb/app-3"])

    def test_filter_q_prefix(self):
        # SPEC: q=prefix. Taken as a prefix of the ref (the listing is by ref).
        self.assertEqual(self.list_refs("q=lsa/app"), ["lsa/app-1", "lsa/app-2"])
        self.assertEqual(self.list_refs("q=" + urllib.parse.quote("lsa/", safe="")),
                         ["lsa/app-1", "lsa/app-2", "lsa/db-1"])

    def test_filter_health(self):
        self.assertStatus(self.srv.put_node("lsh/h-1"), 201)
        self.assertStatus(self.srv.put_node("lsh/h-2"), 201)
        self.assertStatus(self.srv.put(node_path("lsh/h-2") + "/health", {"state": "down"}), 200)
        self.assertEqual(self.list_refs("kind=lsh&health=down"), ["lsh/h-2"])
        self.assertEqual(self.list_refs("kind=lsh&health=unknown"), ["lsh/h-1"])

    def test_filter_orphan(self):
        s = self.srv
        m = {"manifest": "cmdb/v1", "source": "e2e:orphans",
             "nodes": [{"ref": "lso/keep"}, {"ref": "lso/drop"}]}
        self.assertStatus(s.post("/v1/manifests", m), 200)
        self.assertStatus(s.put_node("lso/by-hand"), 201)
        self.assertEqual(self.list_refs("kind=lso&orphan=true"), [])
        m["nodes"] = [{"ref": "lso/keep"}]
        self.assertStatus(s.post("/v1/manifests", m), 200)
        self.assertEqual(self.list_refs("kind=lso&orphan=true"), ["lso/drop"])
        self.assertEqual(self.list_refs("kind=lso&orphan=false"), ["lso/by-hand", "lso/keep"])
        got = self.assertStatus(s.get(node_path("lso/drop")), 200)
        self.assertTrue(got["orphan"])
        # A hand edit asserts the node again and clears orphan.
        edited = self.assertStatus(s.put_node("lso/drop", {"x": 1}), 200)
        self.assertFalse(edited["orphan"])
        self.assertIn("api:admin", edited["sources"])

    def test_read_token_can_list(self):
        self.assertEqual(self.list_refs("kind=lsb", token="read"), ["lsb/app-3"])

    def test_bad_filters(self):
        for q, param in (("kind=Bad", "kind"), ("label=nocolon", "label"),
                         ("label=" + urllib.parse.quote(":v"), "label"),
                         ("owner=notaref", "owner"), ("health=broken", "health"),
                         ("orphan=maybe", "orphan"), ("limit=1001", "limit"),
                         ("limit=abc", "limit"), ("limit=-1", "limit"),
                         ("cursor=%21%21not-a-cursor", "cursor")):
            with self.subTest(q=q):
                self.assertError(self.srv.get("/v1/nodes?" + q), 400, None, [param])

    def test_limit_1000_ok(self):
        self.assertStatus(self.srv.get("/v1/nodes?limit=1000"), 200)

    def test_keyset_pagination_byte_order(self):
        s = self.srv
        names = ["a", "B", "b", "Z", "a-b", "a/b", "a:b", "a_b", "a.b", "0", "9z", "~",
                 "\u00e9", "\u00e9t\u00e9", "e", "zz", "z", "A", "aa", "ab", "a b", "a%b",
                 "\u6771", "y", "x", "w", "v"]
        for n in names:
            self.assertStatus(s.put("/v1/nodes/pgn/" + quote(n), {}), 201, "create pgn/" + n)
        expect = sorted(("pgn/" + n for n in names), key=lambda r: r.encode("utf-8"))

        seen = []
        cursor = None
        pages = 0
        while True:
            q = "kind=pgn&limit=4" + ("&cursor=" + urllib.parse.quote(cursor, safe="")
                                      if cursor else "")
            body = self.assertStatus(s.get("/v1/nodes?" + q), 200)
            self.assertLessEqual(len(body["items"]), 4)
            seen += [n["ref"] for n in body["items"]]
            pages += 1
            self.assertLess(pages, 20, "pagination does not end")
            cursor = body["next_cursor"]
            if cursor is None:
                break
            self.assertIsInstance(cursor, str)
        self.assertEqual(len(seen), len(set(seen)), "no duplicates across pages")
        self.assertEqual(seen, expect, "every node once, in byte order of the ref")
        self.assertGreaterEqual(pages, 7)

        one = self.assertStatus(s.get("/v1/nodes?kind=pgn&limit=1000"), 200)
        self.assertEqual([n["ref"] for n in one["items"]], expect)
        self.assertIsNone(one["next_cursor"], "next_cursor is null on the last page")


if __name__ == "__main__":
    unittest.main()
